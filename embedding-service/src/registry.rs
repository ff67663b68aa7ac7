//! The served models: one [`Runtime`] per entry of `embedding.models` (or
//! `embedding.model` alone), loaded concurrently at start and looked up by
//! the name a request gives in `model`.
//!
//! Invariants:
//! - The set is complete or absent: [`load_all`] returns every model
//!   loaded and warmed up, or an error naming the first model that failed
//!   (the runtimes already started are stopped). `/health` is 200 only
//!   once the set exists.
//! - The first model is the default: requests without `model` go to it,
//!   and TEI's `/info` fields describe it.
//! - A name resolves to one model, in this order: an exact alias, then a
//!   model's id, then the id's part after the last `/`; the first model in
//!   order wins within a rule. Aliases are unique (config validation).
//! - On the embedding routes a service with one model answers every name
//!   with it (as text-embeddings-inference does; OpenAI clients send their
//!   own default names, such as LangChain's `text-embedding-ada-002`); with
//!   several, an unknown name is refused ([`Models::get`]).
//!   `GET /v1/models/{model}` is strict either way ([`Models::find`]).
//! - Each model's weights are memory-mapped from its safetensors file once,
//!   by its own loader thread; models share no queue, batcher, model
//!   thread or admission bound, only the rayon pool of forward passes.

use crate::batching::{inference_pool, Runtime};
use crate::metrics::Metrics;
use crate::model;
use shared::config::EmbeddingConfig;
use std::sync::Arc;

/// Every served model, the default first; never empty.
pub struct Models {
    runtimes: Vec<Arc<Runtime>>,
}

/// A request named a model that is not served; `served` lists the aliases
/// that are, in order.
#[derive(Debug, Clone, thiserror::Error)]
#[error("model `{name}` is not served here; this service serves {}", served_list(.served))]
pub struct UnknownModel {
    pub name: String,
    pub served: Vec<String>,
}

fn served_list(served: &[String]) -> String {
    served
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Models {
    /// The set of `runtimes`, the first the default. Panics on an empty
    /// list (a service always serves at least one model).
    pub fn new(runtimes: Vec<Arc<Runtime>>) -> Self {
        assert!(!runtimes.is_empty(), "at least one model is served");
        Self { runtimes }
    }

    /// The default model (the first configured).
    pub fn default_model(&self) -> &Arc<Runtime> {
        &self.runtimes[0]
    }

    /// Every served model, in configuration order.
    pub fn all(&self) -> &[Arc<Runtime>] {
        &self.runtimes
    }

    /// The aliases of the served models, in order.
    pub fn aliases(&self) -> Vec<String> {
        self.runtimes.iter().map(|r| r.info.alias.clone()).collect()
    }

    /// The model that answers an embedding request naming `name` (`None`:
    /// the default): the one model when only one is served, else
    /// [`Self::find`]. Errors: [`UnknownModel`] listing the served ones.
    pub fn get(&self, name: Option<&str>) -> Result<Arc<Runtime>, UnknownModel> {
        if self.runtimes.len() == 1 {
            return Ok(self.default_model().clone());
        }
        self.find(name)
    }

    /// The model `name` designates (`None`: the default), by the rules in
    /// the module docs. Errors: [`UnknownModel`] listing the served ones.
    pub fn find(&self, name: Option<&str>) -> Result<Arc<Runtime>, UnknownModel> {
        let Some(name) = name else {
            return Ok(self.default_model().clone());
        };
        self.runtimes
            .iter()
            .find(|r| r.info.alias == name)
            .or_else(|| self.runtimes.iter().find(|r| r.info.model_id == name))
            .or_else(|| self.runtimes.iter().find(|r| r.serves(name)))
            .cloned()
            .ok_or_else(|| UnknownModel {
                name: name.to_string(),
                served: self.aliases(),
            })
    }

    /// Stops every model's threads (each after its queue drains).
    pub fn shutdown(&self) {
        for r in &self.runtimes {
            r.shutdown();
        }
    }
}

/// Loads every model `cfg` serves, each on its own thread at once (files,
/// tokenizer, weights, warm-up pass), and starts their runtimes over one
/// shared inference pool. Blocking: call off the async runtime. Errors:
/// the first model (in configuration order) that failed, named by alias;
/// the runtimes that did start are stopped first.
pub fn load_all(cfg: &EmbeddingConfig, metrics: &Metrics) -> anyhow::Result<Models> {
    let served = cfg.served_models();
    let pool = inference_pool(cfg)?;
    let results: Vec<anyhow::Result<Arc<Runtime>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = served
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let pool = pool.clone();
                std::thread::Builder::new()
                    .name(format!("load-{i}"))
                    .spawn_scoped(scope, move || -> anyhow::Result<Arc<Runtime>> {
                        let t0 = std::time::Instant::now();
                        let one = m.embedding_config(cfg);
                        let loaded = model::load(&one)?;
                        let rt = Runtime::start(
                            loaded,
                            &m.alias,
                            &one,
                            metrics.for_model(&m.alias),
                            pool,
                        )?;
                        let i = &rt.info;
                        metrics
                            .model_info
                            .with_label_values(&[
                                &i.alias,
                                &i.model_id,
                                &i.device,
                                &i.dtype,
                                &i.backend,
                            ])
                            .set(1);
                        tracing::info!(
                            alias = %i.alias, model = %i.model_id, source = %i.source,
                            device = %i.device, dtype = %i.dtype, backend = %i.backend, dim = i.dimension,
                            "model loaded and warmed up in {:.2}s", t0.elapsed().as_secs_f64()
                        );
                        Ok(rt)
                    })
                    .expect("spawn a model loader thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the loader thread panicked")))
            })
            .collect()
    });
    let mut runtimes = Vec::with_capacity(results.len());
    let mut failure = None;
    for (m, r) in served.iter().zip(results) {
        match r {
            Ok(rt) => runtimes.push(rt),
            Err(e) if failure.is_none() => {
                let which = if cfg.models.is_empty() {
                    "embedding.model".to_string()
                } else {
                    format!("embedding.models[{}]", runtimes.len())
                };
                failure = Some(e.context(format!("model `{}` ({which})", m.alias)));
            }
            Err(_) => {}
        }
    }
    if let Some(e) = failure {
        for rt in &runtimes {
            rt.shutdown();
        }
        return Err(e);
    }
    Ok(Models::new(runtimes))
}
