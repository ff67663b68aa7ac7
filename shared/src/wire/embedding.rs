//! Wire types of the embedding service.

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// One text or a list of texts. Anything else (a number, a list holding a
/// non-string) is rejected with a message naming the offending element.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Inputs {
    One(String),
    Many(Vec<String>),
}

impl Inputs {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Inputs::One(s) => vec![s],
            Inputs::Many(v) => v,
        }
    }
}

impl<'de> Deserialize<'de> for Inputs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Inputs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Inputs, E> {
                Ok(Inputs::One(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Inputs, E> {
                Ok(Inputs::One(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Inputs, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(v) = seq.next_element::<serde_json::Value>()? {
                    match v {
                        serde_json::Value::String(s) => out.push(s),
                        other => {
                            return Err(de::Error::custom(format!(
                                "element {} must be a string, got {}",
                                out.len(),
                                json_kind(&other)
                            )))
                        }
                    }
                }
                Ok(Inputs::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `POST /embed`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    /// A text or a list of texts. An empty string is valid: it embeds as the
    /// model's special tokens alone, as sentence-transformers does.
    #[schema(value_type = Object, example = json!(["a cat sat on the mat", "hot dog"]))]
    pub inputs: Inputs,
    /// L2-normalise the result. Default: what the model's `modules.json`
    /// says (true when it lists `Normalize`).
    #[serde(default)]
    pub normalize: Option<bool>,
    /// Cut texts longer than the model's `max_seq_length` (default true);
    /// with false such a text is a 422 `input_too_long`.
    #[serde(default)]
    pub truncate: Option<bool>,
    /// Keep only the first N dimensions (Matryoshka-style), re-normalised
    /// when `normalize` holds. 1..=model dimension.
    #[serde(default)]
    pub dimensions: Option<usize>,
}

/// `POST /embed/batch` (the original design's batch endpoint).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedBatchRequest {
    pub texts: Vec<String>,
    #[serde(default)]
    pub normalize: Option<bool>,
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub dimensions: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbedBatchResponse {
    pub embeddings: Vec<Vec<f32>>,
    pub model: String,
    pub dimension: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

/// `POST /v1/embeddings`, OpenAI-compatible.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenAiEmbeddingsRequest {
    #[schema(value_type = Object)]
    pub input: Inputs,
    /// Accepted and echoed back; this service serves one model.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    #[serde(default)]
    pub dimensions: Option<usize>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenAiEmbeddingsResponse {
    pub object: String,
    pub data: Vec<OpenAiEmbedding>,
    pub model: String,
    pub usage: OpenAiUsage,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenAiEmbedding {
    pub object: String,
    /// Floats, or base64 of little-endian f32 when `encoding_format` is base64.
    #[schema(value_type = Object)]
    pub embedding: OpenAiVector,
    pub index: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OpenAiVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenAiUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// `POST /tokenize`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest {
    #[schema(value_type = Object)]
    pub inputs: Inputs,
    /// Add `[CLS]`/`[SEP]` (or the model's equivalents). Default true.
    #[serde(default)]
    pub add_special_tokens: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub id: u32,
    pub text: String,
    pub special: bool,
    /// Byte offsets into the input; absent for special tokens.
    pub start: Option<usize>,
    pub stop: Option<usize>,
}

/// `GET /info`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InfoResponse {
    pub model_id: String,
    pub model_source: String,
    pub architecture: String,
    pub dimension: usize,
    pub max_seq_length: usize,
    pub pooling: String,
    pub normalize: bool,
    pub device: String,
    pub dtype: String,
    pub backend: String,
    pub max_batch_tokens: usize,
    pub max_client_batch_size: usize,
    pub max_concurrent_requests: usize,
    /// Largest request body in bytes (413 beyond it); absent from services
    /// older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_limit_bytes: Option<usize>,
    pub version: String,
}

/// `GET /health`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` once the model is loaded and warmed up; `loading` before.
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_accept_string_and_list() {
        let r: EmbedRequest = serde_json::from_str(r#"{"inputs":"a"}"#).unwrap();
        assert_eq!(r.inputs, Inputs::One("a".into()));
        let r: EmbedRequest = serde_json::from_str(r#"{"inputs":["a","b"]}"#).unwrap();
        assert_eq!(r.inputs.into_vec(), vec!["a", "b"]);
    }

    #[test]
    fn inputs_reject_non_strings_by_position() {
        let e = serde_json::from_str::<EmbedRequest>(r#"{"inputs":["a",3]}"#).unwrap_err();
        assert!(e.to_string().contains("element 1 must be a string"), "{e}");
        assert!(serde_json::from_str::<EmbedRequest>(r#"{"inputs":5}"#).is_err());
    }
}
