//! embedding-service: sentence-transformer embeddings over HTTP.
//!
//! Layers, depending one way: `model` (files, pipeline, encoders) →
//! `batching` (tokenizer pool, queue, model thread) → `registry` (the
//! served models, by name) → `api` (HTTP only). `run` binds the port first
//! (so `/health` answers 503 while loading), loads and warms every model
//! at once on blocking threads, then serves until SIGTERM, when it stops
//! accepting, finishes what is in flight, and stops the threads.

pub mod api;
pub mod batching;
pub mod metrics;
pub mod model;
pub mod registry;

use metrics::Metrics;
use registry::Models;
use shared::config::EmbeddingConfig;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Shared state of the handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<EmbeddingConfig>,
    /// Set once every model is loaded and warmed up.
    pub models: Arc<OnceLock<Arc<Models>>>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(config: EmbeddingConfig) -> Self {
        Self {
            config: Arc::new(config),
            models: Arc::new(OnceLock::new()),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Loads every served model at once and starts their runtimes
    /// (blocking); `/health` turns 200 when this returns. Errors: as
    /// [`registry::load_all`].
    pub fn load_blocking(&self) -> anyhow::Result<Arc<Models>> {
        let t0 = std::time::Instant::now();
        let models = Arc::new(registry::load_all(&self.config, &self.metrics)?);
        tracing::info!(
            models = ?models.aliases(),
            "every model loaded in {:.2}s", t0.elapsed().as_secs_f64()
        );
        let _ = self.models.set(models.clone());
        Ok(models)
    }
}

/// The router, for tests that drive it without a socket.
pub fn app(state: AppState) -> axum::Router {
    api::router(state)
}

/// Serves until SIGTERM/SIGINT within the connection limits of
/// `config.http` (see `shared::http::serve`). A model that fails to load
/// stops the service.
pub async fn run(config: EmbeddingConfig) -> anyhow::Result<()> {
    let addr = format!("{}:{}", config.host, config.port);
    let limits = shared::http::ServerLimits::from(&config.http);
    let shutdown_timeout = Duration::from_secs(config.shutdown_timeout_secs);
    let state = AppState::new(config);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind {addr}: {e}"))?;
    tracing::info!("listening on {addr} (model loading)");
    let loader = {
        let st = state.clone();
        tokio::task::spawn_blocking(move || st.load_blocking())
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = shared::http::serve(listener, app(state.clone()), limits, async move {
        shared::http::shutdown_signal().await;
        let _ = stop_tx.send(());
    });
    let server = tokio::spawn(server);
    match loader.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e.context("a model failed to load")),
        Err(e) => return Err(anyhow::anyhow!("model loader panicked: {e}")),
    }
    let mut server = server;
    tokio::select! {
        r = &mut server => { r?; }
        _ = async { let _ = stop_rx.await; tokio::time::sleep(shutdown_timeout).await } => {
            tracing::warn!("shutdown timeout of {shutdown_timeout:?} reached with requests in flight");
        }
    }
    if let Some(models) = state.models.get() {
        let models = models.clone();
        tokio::task::spawn_blocking(move || models.shutdown()).await?;
    }
    tracing::info!("stopped");
    Ok(())
}
