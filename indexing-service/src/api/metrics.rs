//! Prometheus metrics of the indexing service (`GET /metrics`): the
//! `index_*` families below, `index_build_info{version}` (always 1), and
//! on Linux the standard `process_*` families (CPU seconds, resident and
//! virtual memory, open and maximum file descriptors, start time).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The registry of the service and its families; `/metrics` renders it.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub embed_calls: HistogramVec,
    /// `index_search_duration_seconds`: one collection search (every
    /// segment, top-k merged, hits copied), without HTTP, JSON or queueing.
    pub search: prometheus::Histogram,
    pub embed_errors: IntCounterVec,
    pub points: IntGauge,
    pub segments: IntGauge,
    pub wal_bytes: IntGauge,
    pub collections: IntGauge,
    /// Collections not opened because their files are damaged.
    pub collections_damaged: IntGauge,
    /// `index_build_info{version}`: 1.
    pub build_info: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let b = prometheus::exponential_buckets(0.0005, 2.0, 16).unwrap();
        let requests = IntCounterVec::new(
            Opts::new(
                "index_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )
        .unwrap();
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "index_http_request_duration_seconds",
                "HTTP latency by route",
            )
            .buckets(b.clone()),
            &["route"],
        )
        .unwrap();
        let embed_calls = HistogramVec::new(
            HistogramOpts::new(
                "index_embedding_call_duration_seconds",
                "Calls to the embedding service",
            )
            .buckets(b),
            &["outcome"],
        )
        .unwrap();
        let search = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "index_search_duration_seconds",
                "Time of one collection search alone (no HTTP, JSON or queueing)",
            )
            .buckets(prometheus::exponential_buckets(0.000_05, 2.0, 16).unwrap()),
        )
        .unwrap();
        let embed_errors = IntCounterVec::new(
            Opts::new(
                "index_embedding_errors_total",
                "Failed embedding calls by kind",
            ),
            &["kind"],
        )
        .unwrap();
        let points = IntGauge::new("index_points", "Points in all collections").unwrap();
        let segments = IntGauge::new("index_segments", "Segments in all collections").unwrap();
        let wal_bytes = IntGauge::new("index_wal_bytes", "Bytes in WAL files").unwrap();
        let collections = IntGauge::new("index_collections", "Collections").unwrap();
        let collections_damaged = IntGauge::new(
            "index_collections_damaged",
            "Collections not opened because their files are damaged",
        )
        .unwrap();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "index_build_info",
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
            Box::new(latency.clone()),
            Box::new(embed_calls.clone()),
            Box::new(search.clone()),
            Box::new(embed_errors.clone()),
            Box::new(points.clone()),
            Box::new(segments.clone()),
            Box::new(wal_bytes.clone()),
            Box::new(collections.clone()),
            Box::new(collections_damaged.clone()),
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
            latency,
            embed_calls,
            search,
            embed_errors,
            points,
            segments,
            wal_bytes,
            collections,
            collections_damaged,
            build_info,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encode metrics");
        String::from_utf8(buf).expect("UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
