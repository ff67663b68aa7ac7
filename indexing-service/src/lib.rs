//! indexing-service: collections of vectors with payloads on disk, HNSW /
//! PQ / IVF-PQ indexes and filtered top-k search, over HTTP.
//!
//! Layers, depending one way: `storage` (files: WAL, segments, atomic
//! writes) → `index` (distance kernels, filters, HNSW, PQ) → `collection`
//! (write path, read path, flush, vacuum, restart) → `api` (HTTP only);
//! `replication` (roles on one data directory, write forwarding,
//! read-your-writes) sits beside `api` and wraps its router.

pub mod api;
pub mod collection;
pub mod index;
pub mod lock_order;
pub mod replication;
pub mod snapshot;
pub mod storage;
pub mod text;

use shared::client::EmbeddingClient;
use shared::config::IndexingConfig;
use std::sync::Arc;
use std::time::Duration;

/// The router over opened storage, for tests that drive it without a
/// socket; the replication middleware (forwarding on a follower,
/// read-your-writes waits) is part of it (see `api::router`).
pub fn app(state: api::AppState) -> axum::Router {
    api::router(state)
}

/// Opens the data directory as the writer when its lock is free, else as
/// a follower of the process holding it (see `replication`), and builds
/// the handler state. A follower's thread starts here.
pub fn state(config: IndexingConfig) -> anyhow::Result<api::AppState> {
    let storage = collection::Storage::open_replica(&config.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot open data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let storage = Arc::new(storage);
    let config = Arc::new(config);
    let replica = replication::Replica::new(storage.clone(), config.clone())?;
    replica.start()?;
    let embedder = EmbeddingClient::new(
        &config.embedding_service_url,
        config.embedding_api_key.clone(),
        Duration::from_millis(config.embedding_timeout_ms),
        config.embedding_retries,
    )
    .map_err(|e| anyhow::anyhow!("embedding client: {e}"))?;
    Ok(api::AppState {
        storage,
        embedder,
        config,
        metrics: Arc::new(api::metrics::Metrics::new()),
        replica,
    })
}

/// Serves until SIGTERM/SIGINT within the connection limits of
/// `config.http` (see `shared::http::serve`): stops accepting, drains
/// in-flight requests, then closes every collection (workers stopped, WALs
/// synced). Errors: the data directory cannot be opened or the port bound.
pub async fn run(config: IndexingConfig) -> anyhow::Result<()> {
    let addr = format!("{}:{}", config.host, config.port);
    let limits = shared::http::ServerLimits::from(&config.http);
    let st = tokio::task::spawn_blocking(move || state(config)).await??;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind {addr}: {e}"))?;
    tracing::info!("listening on {addr}");
    shared::http::serve(
        listener,
        app(st.clone()),
        limits,
        shared::http::shutdown_signal(),
    )
    .await;
    let storage = st.storage.clone();
    let replica = st.replica.clone();
    tokio::task::spawn_blocking(move || {
        replica.shutdown();
        storage.close()
    })
    .await?;
    tracing::info!("stopped");
    Ok(())
}
