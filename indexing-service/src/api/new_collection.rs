//! The settings of a new collection, built in one place for every way a
//! collection comes to be (`POST /collections`, and the default collection
//! created on first use by `/embed` and `/search`).
//!
//! Invariant: a value the request gives wins; else the service config's
//! (`wal.fsync`, `wal.fsync_interval_ms`, `flush_threshold.vectors`,
//! `flush_threshold.bytes`, `embedding_model`); else the built-in default (metric cosine, the
//! default index settings). So a collection made implicitly and one made
//! through `POST /collections` with no settings are configured alike.

use super::handlers::CreateCollectionRequest;
use crate::collection::{CollectionConfig, FlushThreshold};
use crate::index::segment_index::IndexSettings;
use shared::config::IndexingConfig;

/// The index settings a create request asks for (defaults where absent).
pub(super) fn requested_index(req: &CreateCollectionRequest) -> IndexSettings {
    let mut index = IndexSettings::default();
    if let Some(k) = req.index {
        index.kind = k;
    }
    if let Some(h) = req.hnsw {
        index.hnsw = h;
    }
    if let Some(i) = req.ivf {
        index.ivf = i;
    }
    if let Some(q) = req.quantization {
        index.quantization = q;
    }
    index
}

/// The request for a collection named `name` with every setting left to
/// the service config and the defaults (what `/embed` and `/search` create).
pub(super) fn defaults_for(name: &str) -> CreateCollectionRequest {
    CreateCollectionRequest {
        name: name.to_string(),
        dimension: None,
        metric: None,
        index: None,
        hnsw: None,
        ivf: None,
        quantization: None,
        flush_threshold: None,
        fsync: None,
        idle_indexing: None,
        max_segment_size: None,
        embedding_model: None,
        text_index: None,
    }
}

/// The config of a new collection from the service config `svc` and the
/// request `req` (its values win where given, see the module docs).
/// `model_dimension` is used when the request gives no `dimension`. The
/// bounds are checked elsewhere (`check_create`, then the storage layer's
/// `validate` when the collection is created).
pub(super) fn collection_config(
    svc: &IndexingConfig,
    req: &CreateCollectionRequest,
    model_dimension: usize,
) -> CollectionConfig {
    let dimension = req.dimension.unwrap_or(model_dimension);
    let mut cfg = CollectionConfig::new(&req.name, dimension, req.metric.unwrap_or_default());
    cfg.index = requested_index(req);
    cfg.fsync = req.fsync.unwrap_or(svc.wal.fsync);
    cfg.fsync_interval_ms = svc.wal.fsync_interval_ms;
    let t = req.flush_threshold;
    cfg.flush_threshold = FlushThreshold {
        vectors: t
            .and_then(|t| t.vectors)
            .unwrap_or(svc.flush_threshold.vectors),
        bytes: t.and_then(|t| t.bytes).unwrap_or(svc.flush_threshold.bytes),
    };
    cfg.idle_indexing = req.idle_indexing.unwrap_or_default();
    if let Some(s) = req.max_segment_size {
        cfg.max_segment_size = s;
    }
    cfg.text_index = req.text_index.clone().unwrap_or_default();
    cfg.embedding_model = req
        .embedding_model
        .clone()
        .or_else(|| svc.embedding_model.clone());
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::segment_index::{HnswSettings, IndexKind, IvfSettings, Quantization};
    use shared::config::{FsyncMode, WalConfig};
    use shared::wire::indexing::{FlushThresholdInput, Metric};

    /// A service config whose every relevant value differs from the
    /// built-in defaults, so a value taken from the wrong place shows.
    fn service() -> IndexingConfig {
        let svc = IndexingConfig {
            wal: WalConfig {
                fsync: FsyncMode::Interval,
                fsync_interval_ms: 1234,
            },
            flush_threshold: FlushThreshold {
                vectors: 777,
                bytes: 99_999,
            },
            ..Default::default()
        };
        let builtin = CollectionConfig::new("x", 1, Metric::Cosine);
        assert_ne!(svc.wal.fsync, builtin.fsync);
        assert_ne!(svc.wal.fsync_interval_ms, builtin.fsync_interval_ms);
        assert_ne!(svc.flush_threshold, builtin.flush_threshold);
        svc
    }

    #[test]
    fn without_settings_every_field_comes_from_the_service_config_or_defaults() {
        let svc = service();
        let cfg = collection_config(&svc, &defaults_for("documents"), 384);
        assert_eq!(cfg.name, "documents");
        assert_eq!(cfg.dimension, 384, "the model's dimension");
        assert_eq!(cfg.metric, Metric::Cosine);
        assert_eq!(cfg.index, IndexSettings::default());
        assert_eq!(cfg.fsync, FsyncMode::Interval);
        assert_eq!(cfg.fsync_interval_ms, 1234);
        assert_eq!(cfg.flush_threshold.vectors, 777);
        assert_eq!(cfg.flush_threshold.bytes, 99_999);
        // Everything else is the storage layer's default.
        let mut expected = CollectionConfig::new("documents", 384, Metric::Cosine);
        expected.fsync = FsyncMode::Interval;
        expected.fsync_interval_ms = 1234;
        expected.flush_threshold = svc.flush_threshold.clone();
        assert_eq!(cfg, expected);
    }

    #[test]
    fn request_values_win_field_by_field() {
        let svc = service();
        let hnsw = HnswSettings {
            m: 8,
            ef_construction: 40,
            ef: 20,
        };
        let ivf = IvfSettings {
            nlist: 16,
            nprobe: 4,
        };
        let quantization = Quantization::None;
        let req = CreateCollectionRequest {
            dimension: Some(8),
            metric: Some(Metric::Euclidean),
            index: Some(IndexKind::IvfPq),
            hnsw: Some(hnsw),
            ivf: Some(ivf),
            quantization: Some(quantization),
            flush_threshold: Some(FlushThresholdInput {
                vectors: Some(5),
                bytes: Some(6),
            }),
            fsync: Some(FsyncMode::Never),
            max_segment_size: Some(4096),
            ..defaults_for("c")
        };
        let cfg = collection_config(&svc, &req, 384);
        assert_eq!(cfg.max_segment_size, 4096);
        assert_eq!(cfg.max_segment_points(), 4096 * 1024 / 32);
        assert_eq!(cfg.dimension, 8, "the request's dimension wins");
        assert_eq!(cfg.metric, Metric::Euclidean);
        assert_eq!(cfg.index.kind, IndexKind::IvfPq);
        assert_eq!(cfg.index.hnsw, hnsw);
        assert_eq!(cfg.index.ivf, ivf);
        assert_eq!(cfg.index.quantization, quantization);
        assert_eq!(cfg.fsync, FsyncMode::Never);
        assert_eq!(cfg.fsync_interval_ms, 1234, "no per-collection override");
        assert_eq!(
            cfg.flush_threshold,
            FlushThreshold {
                vectors: 5,
                bytes: 6
            }
        );

        // One threshold given: the other from the service config.
        for (t, want) in [
            (
                FlushThresholdInput {
                    vectors: Some(5),
                    bytes: None,
                },
                (5, 99_999),
            ),
            (
                FlushThresholdInput {
                    vectors: None,
                    bytes: Some(6),
                },
                (777, 6),
            ),
            (
                FlushThresholdInput {
                    vectors: None,
                    bytes: None,
                },
                (777, 99_999),
            ),
        ] {
            let req = CreateCollectionRequest {
                flush_threshold: Some(t),
                ..defaults_for("c")
            };
            let f = collection_config(&svc, &req, 384).flush_threshold;
            assert_eq!((f.vectors, f.bytes), want, "{t:?}");
        }
        // Each index part alone leaves the others at their defaults.
        let req = CreateCollectionRequest {
            hnsw: Some(hnsw),
            ..defaults_for("c")
        };
        let i = collection_config(&svc, &req, 384).index;
        assert_eq!(
            i,
            IndexSettings {
                hnsw,
                ..Default::default()
            }
        );
        let req = CreateCollectionRequest {
            fsync: Some(FsyncMode::Always),
            ..defaults_for("c")
        };
        assert_eq!(collection_config(&svc, &req, 384).fsync, FsyncMode::Always);
    }

    #[test]
    fn embedding_model_from_the_request_else_the_service_config() {
        let mut svc = service();
        let model = |req: &CreateCollectionRequest, svc: &IndexingConfig| {
            collection_config(svc, req, 384).embedding_model
        };
        assert_eq!(
            model(&defaults_for("c"), &svc),
            None,
            "the service's default"
        );
        svc.embedding_model = Some("minilm".into());
        assert_eq!(model(&defaults_for("c"), &svc).as_deref(), Some("minilm"));
        let req = CreateCollectionRequest {
            embedding_model: Some("xlmr".into()),
            ..defaults_for("c")
        };
        assert_eq!(model(&req, &svc).as_deref(), Some("xlmr"));
    }
}
