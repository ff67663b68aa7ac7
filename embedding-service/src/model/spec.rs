//! What the model files say: architecture, shapes, and the
//! sentence-transformers pipeline (`modules.json`: Transformer → Pooling →
//! Normalize, Normalize only when listed; `sentence_bert_config.json`'s
//! `max_seq_length`; the pooling config).
//!
//! Without `modules.json` the model is treated as sentence-transformers
//! treats a plain Hugging Face model: mean pooling, no normalisation.

use super::pooling::Pooling;
use super::source::ModelFiles;
use super::{Activation, ModelError};
use serde_json::Value;
use std::collections::BTreeMap;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `BertModel` and its family (MiniLM, BGE, E5, GTE).
    Bert,
    /// `XLMRobertaModel` / `RobertaModel`: BERT with RoBERTa position ids.
    XlmRoberta,
    /// `MPNetModel` (all-mpnet-base-v2, multi-qa-mpnet): BERT-shaped layers,
    /// RoBERTa position ids, no token types, and a relative-position bucket
    /// bias (`encoder.relative_attention_bias`, `[buckets × heads]`) shared
    /// by every layer's attention scores.
    MpNet,
    /// `DistilBertModel`: BERT-shaped layers under other tensor names and
    /// config keys (`dim`, `n_heads`, `hidden_dim`, `n_layers`), no token
    /// types.
    DistilBert,
    /// `Qwen3Model` / `Qwen3ForCausalLM` (Qwen3-Embedding): a decoder with
    /// causal attention, RMSNorm, rotary positions and grouped-query
    /// attention (`fused_qwen3.rs` on the CPU, candle-transformers' `qwen3`
    /// on the candle graph).
    Qwen3,
    /// `ModernBertModel` (gte-modernbert, nomic-modernbert class): pre-norm
    /// encoder with rotary positions, GeGLU, alternating local / global
    /// attention and no biases (`modernbert.rs`, both backends).
    ModernBert,
}

impl Architecture {
    /// The family's common name, for messages.
    pub fn family_name(self) -> &'static str {
        match self {
            Architecture::Bert => "BERT",
            Architecture::XlmRoberta => "XLM-RoBERTa",
            Architecture::MpNet => "MPNet",
            Architecture::DistilBert => "DistilBERT",
            Architecture::Qwen3 => "Qwen3",
            Architecture::ModernBert => "ModernBERT",
        }
    }
}

/// The shape numbers of a post-layer-norm encoder (BERT, XLM-RoBERTa,
/// MPNet, DistilBERT), read from `config.json` under the family's key names.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderShape {
    pub hidden: usize,
    pub heads: usize,
    /// Width of the feed-forward layer.
    pub inter: usize,
    pub layers: usize,
    pub eps: f64,
    pub act: Activation,
    pub vocab: usize,
    /// Rows of the position-embedding table.
    pub max_positions: usize,
    /// Rows of the token-type table; 0 for families without one.
    pub type_vocab: usize,
    /// Relative-position buckets of MPNet's attention bias; 0 for none.
    pub relative_buckets: usize,
}

/// A sentence-transformers `Dense` module (`models.Dense`): `y = act(W·x + b)`
/// on the pooled vector, `W` `[out_features × in_features]` from the module
/// directory's `model.safetensors` (`linear.weight`, `linear.bias`).
#[derive(Debug, Clone, PartialEq)]
pub struct DenseSpec {
    /// The module directory, relative to the model directory (`2_Dense`).
    pub path: String,
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
    pub activation: DenseActivation,
}

/// `activation_function` of a Dense module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseActivation {
    /// `torch.nn.modules.linear.Identity`
    Identity,
    /// `torch.nn.modules.activation.Tanh` (sentence-transformers' default)
    Tanh,
    /// `torch.nn.modules.activation.ReLU`
    Relu,
    /// `torch.nn.modules.activation.GELU` (exact erf)
    Gelu,
    /// `torch.nn.modules.activation.Sigmoid`
    Sigmoid,
}

impl DenseActivation {
    fn parse(name: &str) -> Result<Self, ModelError> {
        match name.rsplit('.').next().unwrap_or(name) {
            "Identity" => Ok(Self::Identity),
            "Tanh" => Ok(Self::Tanh),
            "ReLU" => Ok(Self::Relu),
            "GELU" => Ok(Self::Gelu),
            "Sigmoid" => Ok(Self::Sigmoid),
            other => Err(ModelError::Config(format!(
                "Dense activation_function `{other}` is not supported \
                 (Identity, Tanh, ReLU, GELU, Sigmoid are)"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub files: ModelFiles,
    pub architecture: Architecture,
    /// As named in config.json (`BertModel`, ...).
    pub architecture_name: String,
    pub config: Value,
    /// The transformer's width (the token states' length).
    pub hidden_size: usize,
    /// Length of the pipeline's sentence vectors: `hidden_size`, or the last
    /// Dense module's `out_features`.
    pub dimension: usize,
    /// The sentence-transformers `Dense` modules after pooling, in order.
    pub dense: Vec<DenseSpec>,
    pub max_seq_length: usize,
    pub pooling: Pooling,
    pub normalize: bool,
    /// `prompts` of `config_sentence_transformers.json`: name → text that
    /// sentence-transformers prepends to an input before tokenising it.
    pub prompts: BTreeMap<String, String>,
    /// `default_prompt_name` of the same file: the prompt applied when a
    /// request names none (always one of `prompts`).
    pub default_prompt_name: Option<String>,
}

fn read_json(files: &ModelFiles, name: &str) -> Result<Option<Value>, ModelError> {
    match files.file(name) {
        None => Ok(None),
        Some(p) => {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| ModelError::Source(format!("{}: {e}", p.display())))?;
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| ModelError::Config(format!("{}: {e}", p.display())))
        }
    }
}

/// `prompts` and `default_prompt_name` of `config_sentence_transformers.json`
/// (both optional, as sentence-transformers reads them). A default that is
/// not one of the prompts is refused, as sentence-transformers refuses it.
fn read_prompts(
    files: &ModelFiles,
) -> Result<(BTreeMap<String, String>, Option<String>), ModelError> {
    let Some(cfg) = read_json(files, "config_sentence_transformers.json")? else {
        return Ok((BTreeMap::new(), None));
    };
    let prompts: BTreeMap<String, String> = match cfg.get("prompts") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            ModelError::Config(format!(
                "config_sentence_transformers.json: `prompts` must map names to strings: {e}"
            ))
        })?,
    };
    let default = cfg
        .get("default_prompt_name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(d) = &default {
        if !prompts.contains_key(d) {
            return Err(ModelError::Config(format!(
                "config_sentence_transformers.json: default_prompt_name `{d}` is not in `prompts`"
            )));
        }
    }
    Ok((prompts, default))
}

pub fn usize_field(v: &Value, k: &str) -> Result<usize, ModelError> {
    v.get(k)
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .ok_or_else(|| ModelError::Config(format!("config.json has no integer `{k}`")))
}

/// The family a `config.json` describes, or the refusal naming it.
///
/// Accepted: BERT (`Bert*` architectures with `model_type: bert`, or that
/// model_type alone when no architecture is named) and RoBERTa / XLM-RoBERTa, each with absolute
/// position embeddings and no custom modelling code. Refused, with the
/// family's name: any other architecture; configs whose `auto_map` replaces
/// the model class with custom code (jina-embeddings-v3 declares
/// `XLMRobertaModel` but runs its own rotary-position code); and
/// `position_embedding_type` other than `absolute` (JinaBERT's `alibi`,
/// `rotary`, transformers' `relative_key` / `relative_key_query`), which
/// both encoders would otherwise compute differently from transformers.
fn family(config: &Value, arch_name: &str, model_type: &str) -> Result<Architecture, ModelError> {
    // The architecture name and model_type must agree: `XLMRobertaXLModel`
    // (`xlm-roberta-xl`), `RobertaPreLayerNorm*` and `BertGeneration*` are
    // different computations under similar names.
    let architecture = match (arch_name, model_type) {
        (a, "bert" | "") if a.starts_with("Bert") || a == "bert" => Architecture::Bert,
        (a, "mpnet" | "") if a.starts_with("MPNet") || a == "mpnet" => Architecture::MpNet,
        (a, "distilbert" | "") if a.starts_with("DistilBert") || a == "distilbert" => {
            Architecture::DistilBert
        }
        (a, "modernbert" | "") if a.starts_with("ModernBert") || a == "modernbert" => {
            Architecture::ModernBert
        }
        (a, "qwen3" | "")
            if a.starts_with("Qwen3") && !a.starts_with("Qwen3Moe") || a == "qwen3" =>
        {
            Architecture::Qwen3
        }
        (a, t) if refused_family(a, t).is_some() => {
            return Err(ModelError::UnsupportedArchitecture(format!(
                "{a} ({})",
                refused_family(a, t).unwrap_or_default()
            )))
        }
        (a, "xlm-roberta" | "roberta" | "")
            if a.starts_with("XLMRoberta")
                || a.starts_with("Roberta")
                || (!a.is_empty() && a == model_type) =>
        {
            Architecture::XlmRoberta
        }
        (a, t) if !t.is_empty() && a != t => {
            return Err(ModelError::UnsupportedArchitecture(format!(
                "{a} (model_type `{t}`)"
            )))
        }
        (a, _) => return Err(ModelError::UnsupportedArchitecture(a.to_string())),
    };
    let custom = config
        .get("auto_map")
        .and_then(Value::as_object)
        .and_then(|m| m.get("AutoModel").or_else(|| m.values().next()))
        .map(|v| match v {
            Value::Array(a) => a.first().and_then(Value::as_str).unwrap_or("").to_string(),
            v => v.as_str().unwrap_or("").to_string(),
        });
    if let Some(code) = custom {
        return Err(ModelError::UnsupportedArchitecture(format!(
            "{arch_name} with custom modelling code `{code}` (auto_map; a different family \
             from transformers' {arch_name}, e.g. jina-embeddings-v3)"
        )));
    }
    match config
        .get("position_embedding_type")
        .and_then(Value::as_str)
        .unwrap_or("absolute")
    {
        "absolute" => Ok(architecture),
        "alibi" => Err(ModelError::UnsupportedArchitecture(format!(
            "{arch_name} with ALiBi positions (JinaBERT, e.g. jina-embeddings-v2)"
        ))),
        "rotary" => Err(ModelError::UnsupportedArchitecture(format!(
            "{arch_name} with rotary positions (e.g. jina-embeddings-v3)"
        ))),
        other => Err(ModelError::UnsupportedArchitecture(format!(
            "{arch_name} with position_embedding_type `{other}` (only `absolute` is supported)"
        ))),
    }
}

/// Families known by name that neither encoder computes yet, with the name
/// the refusal gives them.
fn refused_family(arch: &str, model_type: &str) -> Option<&'static str> {
    let known: [(&str, &str, &str); 5] = [
        (
            "Qwen3Moe",
            "qwen3_moe",
            "Qwen3-MoE: a mixture-of-experts decoder",
        ),
        (
            "NomicBert",
            "nomic_bert",
            "NomicBERT (nomic-embed): rotary, SwiGLU",
        ),
        (
            "JinaBert",
            "jina_bert",
            "JinaBERT (jina-embeddings-v2): ALiBi",
        ),
        ("Gemma", "gemma3_text", "Gemma (EmbeddingGemma): a decoder"),
        ("NewModel", "new", "GTE v1.5 `NewModel`: rotary"),
    ];
    known
        .iter()
        .find(|(a, t, _)| arch.starts_with(a) || model_type == *t)
        .map(|(_, _, name)| *name)
}

/// The padding token id: `pad_token_id` from config.json, else the family's
/// default (BERT 0, RoBERTa 1). RoBERTa position ids count from it.
fn pad_token_id(config: &Value, architecture: Architecture) -> u32 {
    config
        .get("pad_token_id")
        .and_then(Value::as_u64)
        .map(|n| n as u32)
        .unwrap_or(match architecture {
            Architecture::Bert
            | Architecture::DistilBert
            | Architecture::Qwen3
            | Architecture::ModernBert => 0,
            Architecture::XlmRoberta | Architecture::MpNet => 1,
        })
}

/// Reads the Dense module at `path` (its `config.json`; the weights are
/// loaded by the encoder wrapper).
fn read_dense(files: &ModelFiles, path: &str) -> Result<DenseSpec, ModelError> {
    let cfg = read_json(files, &format!("{path}/config.json"))?.ok_or_else(|| {
        ModelError::Source(format!(
            "modules.json lists Dense module {path}/ but it has no config.json"
        ))
    })?;
    let field = |k: &str| {
        cfg.get(k)
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .ok_or_else(|| ModelError::Config(format!("{path}/config.json has no integer `{k}`")))
    };
    Ok(DenseSpec {
        path: path.to_string(),
        in_features: field("in_features")?,
        out_features: field("out_features")?,
        bias: cfg.get("bias").and_then(Value::as_bool).unwrap_or(true),
        activation: DenseActivation::parse(
            cfg.get("activation_function")
                .and_then(Value::as_str)
                .unwrap_or("torch.nn.modules.activation.Tanh"),
        )?,
    })
}

impl ModelSpec {
    /// The padding token id (see [`pad_token_id`]).
    pub fn pad_token_id(&self) -> u32 {
        pad_token_id(&self.config, self.architecture)
    }

    pub fn read(files: &ModelFiles) -> Result<Self, ModelError> {
        let config = read_json(files, "config.json")?
            .ok_or_else(|| ModelError::Source("config.json missing".into()))?;
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let arch_name = config
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or(model_type)
            .to_string();
        let architecture = family(&config, &arch_name, model_type)?;
        let hidden_size = match architecture {
            Architecture::DistilBert => usize_field(&config, "dim")?,
            _ => usize_field(&config, "hidden_size")?,
        };
        let max_pos = usize_field(&config, "max_position_embeddings")?;
        // RoBERTa positions start after the padding index.
        let usable_pos = match architecture {
            Architecture::Bert
            | Architecture::DistilBert
            | Architecture::Qwen3
            | Architecture::ModernBert => max_pos,
            Architecture::XlmRoberta => {
                max_pos.saturating_sub(pad_token_id(&config, architecture) as usize + 1)
            }
            Architecture::MpNet => {
                max_pos.saturating_sub(super::fused::MPNET_POSITION_PAD as usize + 1)
            }
        };

        let modules: Vec<Value> = read_json(files, "modules.json")?
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        let mut pooling = Pooling::Mean;
        let mut normalize = false;
        let mut saw_pooling = false;
        let mut dense = Vec::new();
        for m in &modules {
            let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
            let path = m.get("path").and_then(Value::as_str).unwrap_or("");
            let short = ty.rsplit('.').next().unwrap_or(ty);
            match short {
                "Transformer" => {}
                "Pooling" => {
                    let cfg =
                        read_json(files, &format!("{path}/config.json"))?.ok_or_else(|| {
                            ModelError::Source(format!(
                                "modules.json lists {path}/ but it has no config.json"
                            ))
                        })?;
                    pooling = Pooling::from_config(&cfg)?;
                    saw_pooling = true;
                }
                "Normalize" => normalize = true,
                "Dense" => dense.push(read_dense(files, path)?),
                other => {
                    return Err(ModelError::Config(format!(
                        "sentence-transformers module `{other}` is not supported"
                    )))
                }
            }
        }
        if !modules.is_empty() && !saw_pooling {
            tracing::warn!("modules.json lists no Pooling module; using mean pooling");
        }
        let st = read_json(files, "sentence_bert_config.json")?;
        let max_seq_length = st
            .as_ref()
            .and_then(|v| v.get("max_seq_length"))
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .or_else(|| {
                read_json(files, "tokenizer_config.json")
                    .ok()
                    .flatten()
                    .and_then(|v| v.get("model_max_length").and_then(Value::as_u64))
                    .map(|n| n as usize)
            })
            .unwrap_or(usable_pos)
            .min(usable_pos);
        let (prompts, default_prompt_name) = read_prompts(files)?;
        let mut dimension = hidden_size;
        for d in &dense {
            if d.in_features != dimension {
                return Err(ModelError::Config(format!(
                    "{}/config.json: in_features {} does not match the {dimension} \
                     values that reach it",
                    d.path, d.in_features
                )));
            }
            dimension = d.out_features;
        }
        Ok(Self {
            files: files.clone(),
            architecture,
            architecture_name: arch_name,
            config,
            hidden_size,
            dimension,
            dense,
            max_seq_length,
            pooling,
            normalize,
            prompts,
            default_prompt_name,
        })
    }

    /// The text of prompt `name`; `None` names the model's default prompt
    /// (no prompt when it has none). An unknown name is an error naming
    /// the known ones.
    pub fn prompt(&self, name: Option<&str>) -> Result<Option<&str>, String> {
        let Some(name) = name.or(self.default_prompt_name.as_deref()) else {
            return Ok(None);
        };
        match self.prompts.get(name) {
            Some(p) => Ok(Some(p.as_str())),
            None if self.prompts.is_empty() => Err(format!(
                "prompt_name `{name}` is unknown: this model defines no prompts \
                 (config_sentence_transformers.json has no `prompts`)"
            )),
            None => Err(format!(
                "prompt_name `{name}` is unknown; this model's prompts are: {}",
                self.prompts
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The encoder's shape numbers under the family's config keys
    /// (DistilBERT: `dim`, `n_heads`, `hidden_dim`, `n_layers`,
    /// `activation`; layer-norm eps 1e-12 as transformers hard-codes it).
    /// Errors: Qwen3 is not such an encoder (a config error naming it).
    pub fn shape(&self) -> Result<EncoderShape, ModelError> {
        if matches!(
            self.architecture,
            Architecture::Qwen3 | Architecture::ModernBert
        ) {
            return Err(ModelError::UnsupportedArchitecture(format!(
                "{} ({}) is not a post-layer-norm encoder",
                self.architecture_name,
                self.architecture.family_name()
            )));
        }
        let c = &self.config;
        let distil = self.architecture == Architecture::DistilBert;
        let key = |bert: &'static str, distil_key: &'static str| {
            if distil {
                distil_key
            } else {
                bert
            }
        };
        let default_eps = match self.architecture {
            Architecture::MpNet => 1e-5,
            _ => 1e-12,
        };
        let shape = EncoderShape {
            hidden: self.hidden_size,
            heads: usize_field(c, key("num_attention_heads", "n_heads"))?,
            inter: usize_field(c, key("intermediate_size", "hidden_dim"))?,
            layers: usize_field(c, key("num_hidden_layers", "n_layers"))?,
            eps: if distil {
                1e-12
            } else {
                c.get("layer_norm_eps")
                    .and_then(Value::as_f64)
                    .unwrap_or(default_eps)
            },
            act: self.activation()?,
            vocab: usize_field(c, "vocab_size")?,
            max_positions: usize_field(c, "max_position_embeddings")?,
            type_vocab: match self.architecture {
                Architecture::MpNet | Architecture::DistilBert => 0,
                _ => usize_field(c, "type_vocab_size").unwrap_or(2),
            },
            relative_buckets: match self.architecture {
                Architecture::MpNet => c
                    .get("relative_attention_num_buckets")
                    .and_then(Value::as_u64)
                    .unwrap_or(32) as usize,
                _ => 0,
            },
        };
        if shape.heads == 0 || !shape.hidden.is_multiple_of(shape.heads) {
            return Err(ModelError::Config(format!(
                "hidden size {} is not a multiple of {} attention heads",
                shape.hidden, shape.heads
            )));
        }
        Ok(shape)
    }

    /// The activation named by `hidden_act` (`activation` for DistilBERT).
    pub fn activation(&self) -> Result<Activation, ModelError> {
        let key = match self.architecture {
            Architecture::DistilBert => "activation",
            _ => "hidden_act",
        };
        if matches!(
            self.architecture,
            Architecture::Qwen3 | Architecture::ModernBert
        ) {
            // Not read: these families' own code reads their activation.
            return Ok(Activation::GeluErf);
        }
        match self
            .config
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("gelu")
        {
            "gelu" => Ok(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            other => Err(ModelError::Config(format!(
                "hidden_act `{other}` is not supported"
            ))),
        }
    }

    /// The tokenizer as sentence-transformers uses it: `tokenizer.json`'s own
    /// truncation and padding are replaced — truncation at `max_seq_length`
    /// (this model's file says 128; sentence-transformers uses 256), and no
    /// fixed padding (batches are padded, or packed, by us).
    pub fn tokenizer(&self) -> Result<Tokenizer, ModelError> {
        let path = self
            .files
            .file("tokenizer.json")
            .ok_or_else(|| ModelError::Source("tokenizer.json missing".into()))?;
        let mut tok =
            Tokenizer::from_file(&path).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        tok.with_padding(None);
        tok.with_truncation(Some(TruncationParams {
            max_length: self.max_seq_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(tok)
    }
}
