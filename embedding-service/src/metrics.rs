//! Prometheus metrics of the embedding service (`GET /metrics`): the
//! `embed_*` families below, `embed_build_info{version}` (always 1), and
//! on Linux the standard `process_*` families (CPU seconds, resident and
//! virtual memory, open and maximum file descriptors, start time).

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
    pub batch_size: Histogram,
    pub batch_tokens: Histogram,
    pub queue_seconds: Histogram,
    pub inference_seconds: Histogram,
    pub tokenize_seconds: Histogram,
    pub tokens: IntCounter,
    pub texts: IntCounter,
    pub in_flight: IntGauge,
    pub queue_size: IntGauge,
    /// `embed_build_info{version}`: 1.
    pub build_info: IntGaugeVec,
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
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("embed_batch_size", "Texts per forward pass")
                .buckets(exp_buckets(1.0, 2.0, 12)),
        )
        .unwrap();
        let batch_tokens = Histogram::with_opts(
            HistogramOpts::new("embed_batch_tokens", "Real tokens per forward pass")
                .buckets(exp_buckets(16.0, 2.0, 12)),
        )
        .unwrap();
        let queue_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "embed_queue_duration_seconds",
                "Time a text waits for its batch",
            )
            .buckets(exp_buckets(0.0005, 2.0, 16)),
        )
        .unwrap();
        let inference_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "embed_inference_duration_seconds",
                "Forward pass time per batch",
            )
            .buckets(exp_buckets(0.001, 2.0, 16)),
        )
        .unwrap();
        let tokenize_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "embed_tokenization_duration_seconds",
                "Tokenization time per request",
            )
            .buckets(exp_buckets(0.00005, 2.0, 16)),
        )
        .unwrap();
        let tokens = IntCounter::new("embed_tokens_total", "Tokens embedded").unwrap();
        let texts = IntCounter::new("embed_texts_total", "Texts embedded").unwrap();
        let in_flight = IntGauge::new(
            "embed_requests_in_flight",
            "Requests admitted and not finished",
        )
        .unwrap();
        let queue_size = IntGauge::new("embed_queue_size", "Texts waiting for a batch").unwrap();
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
