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
    Bert,
    XlmRoberta,
}

#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub files: ModelFiles,
    pub architecture: Architecture,
    /// As named in config.json (`BertModel`, ...).
    pub architecture_name: String,
    pub config: Value,
    pub hidden_size: usize,
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

/// The padding token id: `pad_token_id` from config.json, else the family's
/// default (BERT 0, RoBERTa 1). RoBERTa position ids count from it.
fn pad_token_id(config: &Value, architecture: Architecture) -> u32 {
    config
        .get("pad_token_id")
        .and_then(Value::as_u64)
        .map(|n| n as u32)
        .unwrap_or(match architecture {
            Architecture::Bert => 0,
            Architecture::XlmRoberta => 1,
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
        let hidden_size = usize_field(&config, "hidden_size")?;
        let max_pos = usize_field(&config, "max_position_embeddings")?;
        // RoBERTa positions start after the padding index.
        let usable_pos = match architecture {
            Architecture::Bert => max_pos,
            Architecture::XlmRoberta => {
                max_pos.saturating_sub(pad_token_id(&config, architecture) as usize + 1)
            }
        };

        let modules: Vec<Value> = read_json(files, "modules.json")?
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        let mut pooling = Pooling::Mean;
        let mut normalize = false;
        let mut saw_pooling = false;
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
        Ok(Self {
            files: files.clone(),
            architecture,
            architecture_name: arch_name,
            config,
            hidden_size,
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

    /// The activation named by `hidden_act`.
    pub fn activation(&self) -> Result<Activation, ModelError> {
        match self
            .config
            .get("hidden_act")
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
