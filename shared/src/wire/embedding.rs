//! Wire types of the embedding service.
//!
//! The OpenAPI schema of each type states exactly what the handlers accept
//! and return: the string-or-list unions (`Inputs`, `OpenAiVector`) have
//! hand-written schemas (`oneOf`), since the derive cannot see through their
//! custom (de)serialisation.

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::ToSchema;

/// One text or a list of texts. Anything else (a number, a list holding a
/// non-string) is rejected with a message naming the offending element.
///
/// Schema: `oneOf` a string and an array of strings with at least one item
/// (an empty list is a 422 `empty_input`). The most items is the service's
/// `max_client_batch_size` (see `GET /info`); the served document states it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Inputs {
    One(String),
    Many(Vec<String>),
}

impl utoipa::PartialSchema for Inputs {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("One text.")),
            )
            .item(
                ArrayBuilder::new()
                    .items(ObjectBuilder::new().schema_type(Type::String))
                    .min_items(Some(1))
                    .description(Some("Texts, answered in this order.")),
            )
            .description(Some(
                "One text or a non-empty list of texts (at most the service's \
                 `max_client_batch_size`, see `GET /info`).",
            ))
            .into()
    }
}

impl ToSchema for Inputs {}

impl Inputs {
    /// The texts, in order: one for a single text, as given for a list.
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
#[schema(example = json!({"inputs": ["a cat sat on the mat", "hot dog"], "normalize": true}))]
pub struct EmbedRequest {
    /// A text or a list of texts. An empty string is valid: it embeds as the
    /// model's special tokens alone, as sentence-transformers does.
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
    /// when `normalize` holds: 1 to the model's dimension (`GET /info`);
    /// anything else is a 422 `invalid_dimensions`.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub dimensions: Option<usize>,
}

/// `POST /embed/batch` (the original design's batch endpoint).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"texts": ["a cat sat on the mat", "hot dog"]}))]
pub struct EmbedBatchRequest {
    /// At least one text (an empty list is a 422 `empty_input`), at most
    /// the service's `max_client_batch_size` (see `GET /info`).
    #[schema(min_items = 1)]
    pub texts: Vec<String>,
    /// As for `POST /embed`.
    #[serde(default)]
    pub normalize: Option<bool>,
    /// As for `POST /embed`.
    #[serde(default)]
    pub truncate: Option<bool>,
    /// 1 to the model's dimension, as for `POST /embed`.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub dimensions: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbedBatchResponse {
    /// One vector per text, in input order.
    pub embeddings: Vec<Vec<f32>>,
    pub model: String,
    /// Length of each vector (`dimensions` when given).
    pub dimension: usize,
}

/// How `/v1/embeddings` writes each vector: `float` (a JSON array of
/// numbers, the default) or `base64` (the little-endian f32 bytes, base64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

/// `POST /v1/embeddings`, OpenAI-compatible. Unknown fields are ignored, as
/// OpenAI clients may send more than this service reads.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"input": ["a cat sat on the mat", "hot dog"], "encoding_format": "float"}))]
pub struct OpenAiEmbeddingsRequest {
    pub input: Inputs,
    /// Accepted and echoed back; this service serves one model.
    #[serde(default)]
    pub model: Option<String>,
    /// `float` (default) or `base64`: the form of each `embedding` in the
    /// response.
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    /// Keep only the first N dimensions (re-normalised when the model
    /// normalises): 1 to the model's dimension (`GET /info`); anything else
    /// is a 422 `invalid_dimensions`.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub dimensions: Option<usize>,
    /// Accepted and ignored.
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenAiEmbeddingsResponse {
    /// Always `list`.
    #[schema(example = "list")]
    pub object: String,
    pub data: Vec<OpenAiEmbedding>,
    pub model: String,
    pub usage: OpenAiUsage,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenAiEmbedding {
    /// Always `embedding`.
    #[schema(example = "embedding")]
    pub object: String,
    /// Floats, or base64 of little-endian f32 when `encoding_format` is base64.
    pub embedding: OpenAiVector,
    /// Position of the input this vector belongs to.
    pub index: usize,
}

/// One vector of `/v1/embeddings`: an array of numbers (`encoding_format`
/// `float`) or a base64 string of its little-endian f32 bytes (`base64`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OpenAiVector {
    Float(Vec<f32>),
    Base64(String),
}

impl utoipa::PartialSchema for OpenAiVector {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ArrayBuilder::new()
                    .items(
                        ObjectBuilder::new()
                            .schema_type(Type::Number)
                            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Float))),
                    )
                    .description(Some("`encoding_format` float: the vector's components.")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .content_encoding("base64")
                    .description(Some(
                        "`encoding_format` base64: the vector's little-endian f32 bytes, base64.",
                    )),
            )
            .description(Some(
                "An array of numbers, or a base64 string of little-endian f32 bytes.",
            ))
            .into()
    }
}

impl ToSchema for OpenAiVector {}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenAiUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// `POST /tokenize`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"inputs": "a cat sat on the mat"}))]
pub struct TokenizeRequest {
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
