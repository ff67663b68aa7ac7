//! Prometheus metrics of the embedding service (`GET /metrics`): the
//! `embed_*` families below, `embed_build_info{version}` (always 1), and
//! on Linux the standard `process_*` families (CPU seconds, resident and
//! virtual memory, open and maximum file descriptors, start time).
//!
//! The families of the inference runtime (batches, queue, forward passes,
//! tokens, texts, requests in flight) carry a `model` label: the served
//! model's alias, one series per model ([`Metrics::for_model`]).
//! `embed_model_info{model, model_id, device, dtype, backend}` is 1 per
//! loaded model.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The registry of the service and its families; `/metrics` renders it.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub errors: IntCounterVec,
    pub batch_size: HistogramVec,
    pub batch_tokens: HistogramVec,
    pub queue_seconds: HistogramVec,
    pub inference_seconds: HistogramVec,
    pub tokenize_seconds: HistogramVec,
    pub tokens: IntCounterVec,
    pub texts: IntCounterVec,
    pub in_flight: IntGaugeVec,
    pub queue_size: IntGaugeVec,
    /// `embed_build_info{version}`: 1.
    pub build_info: IntGaugeVec,
    /// `embed_model_info{model, model_id, device, dtype, backend}`: 1 per
    /// loaded model.
    pub model_info: IntGaugeVec,
}

/// The series of one served model (label `model` = its alias), as the
/// runtime of that model records them.
pub struct ModelMetrics {
    /// Texts per forward pass.
    pub batch_size: Histogram,
    /// Real tokens per forward pass.
    pub batch_tokens: Histogram,
    /// Seconds a text waits for its batch.
    pub queue_seconds: Histogram,
    /// Seconds of one forward pass.
    pub inference_seconds: Histogram,
    /// Seconds tokenising one request.
    pub tokenize_seconds: Histogram,
    pub tokens: IntCounter,
    pub texts: IntCounter,
    /// Requests admitted and not finished.
    pub in_flight: IntGauge,
    /// Texts waiting for a batch.
    pub queue_size: IntGauge,
}

fn exp_buckets(start: f64, factor: f64, n: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, n).expect("valid buckets")
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "embed_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )
        .unwrap();
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "embed_http_request_duration_seconds",
                "HTTP latency by route",
            )
            .buckets(exp_buckets(0.001, 2.0, 16)),
            &["route"],
        )
        .unwrap();
        let errors = IntCounterVec::new(
            Opts::new("embed_errors_total", "Error responses by error code"),
            &["code"],
        )
        .unwrap();
        let by_model = |name: &str, help: &str, buckets: Vec<f64>| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &["model"]).unwrap()
        };
        let batch_size = by_model(
            "embed_batch_size",
            "Texts per forward pass",
            exp_buckets(1.0, 2.0, 12),
        );
        let batch_tokens = by_model(
            "embed_batch_tokens",
            "Real tokens per forward pass",
            exp_buckets(16.0, 2.0, 12),
        );
        let queue_seconds = by_model(
            "embed_queue_duration_seconds",
            "Time a text waits for its batch",
            exp_buckets(0.0005, 2.0, 16),
        );
        let inference_seconds = by_model(
            "embed_inference_duration_seconds",
            "Forward pass time per batch",
            exp_buckets(0.001, 2.0, 16),
        );
        let tokenize_seconds = by_model(
            "embed_tokenization_duration_seconds",
            "Tokenization time per request",
            exp_buckets(0.00005, 2.0, 16),
        );
        let tokens = IntCounterVec::new(
            Opts::new("embed_tokens_total", "Tokens embedded"),
            &["model"],
        )
        .unwrap();
        let texts =
            IntCounterVec::new(Opts::new("embed_texts_total", "Texts embedded"), &["model"])
                .unwrap();
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "embed_requests_in_flight",
                "Requests admitted and not finished",
            ),
            &["model"],
        )
        .unwrap();
        let queue_size = IntGaugeVec::new(
            Opts::new("embed_queue_size", "Texts waiting for a batch"),
            &["model"],
        )
        .unwrap();
        let model_info = IntGaugeVec::new(
            Opts::new(
                "embed_model_info",
                "Always 1 per loaded model; the labels describe it",
            ),
            &["model", "model_id", "device", "dtype", "backend"],
        )
        .unwrap();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "embed_build_info",
                "Always 1; the labels name the running build",
            ),
            &["version"],
        )
        .unwrap();
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(errors.clone()),
            Box::new(batch_size.clone()),
            Box::new(batch_tokens.clone()),
            Box::new(queue_seconds.clone()),
            Box::new(inference_seconds.clone()),
            Box::new(tokenize_seconds.clone()),
            Box::new(tokens.clone()),
            Box::new(texts.clone()),
            Box::new(in_flight.clone()),
            Box::new(queue_size.clone()),
            Box::new(build_info.clone()),
            Box::new(model_info.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric names");
        Self {
            registry,
            requests,
            request_seconds,
            errors,
            batch_size,
            batch_tokens,
            queue_seconds,
            inference_seconds,
            tokenize_seconds,
            tokens,
            texts,
            in_flight,
            queue_size,
            build_info,
            model_info,
        }
    }

    /// The series of the model served as `alias`.
    pub fn for_model(&self, alias: &str) -> ModelMetrics {
        let l = [alias];
        ModelMetrics {
            batch_size: self.batch_size.with_label_values(&l),
            batch_tokens: self.batch_tokens.with_label_values(&l),
            queue_seconds: self.queue_seconds.with_label_values(&l),
            inference_seconds: self.inference_seconds.with_label_values(&l),
            tokenize_seconds: self.tokenize_seconds.with_label_values(&l),
            tokens: self.tokens.with_label_values(&l),
            texts: self.texts.with_label_values(&l),
            in_flight: self.in_flight.with_label_values(&l),
            queue_size: self.queue_size.with_label_values(&l),
        }
    }

    /// Counts an error answer in `embed_errors_total` under its error code
    /// (`empty_input`, `not_found`, ...: the `code` of the JSON error body,
    /// which `ErrorBody` and the framework-error middleware attach to the
    /// response). Answers without an error body are not counted: successes,
    /// and `/health`'s 503 while the model loads (a probe's answer, not an
    /// error).
    pub fn count_error(&self, resp: &axum::response::Response) {
        let Some(code) = resp.extensions().get::<shared::ErrorCode>() else {
            return;
        };
        let code = code.as_str();
        self.errors.with_label_values(&[code]).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encoding metrics to a Vec cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
