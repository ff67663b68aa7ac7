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

const TEXTS_GOT_OTHER: &str = "must be a string or an array of strings; got {}";

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
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Inputs, E> {
                Err(E::custom(TEXTS_GOT_OTHER.replace("{}", "a boolean")))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Inputs, E> {
                Err(E::custom(TEXTS_GOT_OTHER.replace("{}", "a number")))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Inputs, E> {
                Err(E::custom(TEXTS_GOT_OTHER.replace("{}", "a number")))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Inputs, E> {
                Err(E::custom(TEXTS_GOT_OTHER.replace("{}", "a number")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Inputs, E> {
                Err(E::custom(TEXTS_GOT_OTHER.replace("{}", "null")))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Inputs, A::Error> {
                Err(de::Error::custom(
                    TEXTS_GOT_OTHER.replace("{}", "an object"),
                ))
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

/// One input of the embedding routes: a text, or token ids.
///
/// On the TEI routes (`/embed`, `/`, `/embed_all`) ids are in the model's
/// own vocabulary (what `/tokenize` answers), used as given (no special
/// tokens added). On `/v1/embeddings` they are OpenAI token ids
/// (`cl100k_base`, what tiktoken gives), decoded to text first.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum InputItem {
    Text(String),
    Ids(Vec<u32>),
}

/// The inputs of an embedding request: one text, one list of token ids, or
/// a list of texts and/or token-id lists (text-embeddings-inference's
/// `Input`). Anything else is refused with a message naming the accepted
/// shapes and the offending element.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EmbedInputs {
    One(InputItem),
    Many(Vec<InputItem>),
}

impl EmbedInputs {
    /// A list of texts.
    pub fn texts(texts: Vec<String>) -> Self {
        EmbedInputs::Many(texts.into_iter().map(InputItem::Text).collect())
    }

    /// The inputs, in order: one for a single input, as given for a list.
    pub fn into_items(self) -> Vec<InputItem> {
        match self {
            EmbedInputs::One(i) => vec![i],
            EmbedInputs::Many(v) => v,
        }
    }

    /// The texts, when every input is a text; `None` when any is token ids.
    pub fn into_texts(self) -> Option<Vec<String>> {
        self.into_items()
            .into_iter()
            .map(|i| match i {
                InputItem::Text(t) => Some(t),
                InputItem::Ids(_) => None,
            })
            .collect()
    }
}

const INPUT_SHAPES: &str =
    "a string, an array of strings, an array of token ids, or an array of token-id arrays";

/// Token ids from a JSON array: non-negative integers below 2^32.
fn token_ids(items: Vec<serde_json::Value>, at: &str) -> Result<Vec<u32>, String> {
    items
        .into_iter()
        .enumerate()
        .map(|(j, v)| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    format!(
                        "{at}[{j}] must be a token id (an integer from 0 to 4294967295), got {}",
                        json_value_brief(&v)
                    )
                })
        })
        .collect()
}

fn json_value_brief(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) => format!("{n}"),
        other => json_kind(other).to_string(),
    }
}

impl<'de> Deserialize<'de> for EmbedInputs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl V {
            fn wrong<E: de::Error>(kind: &str) -> E {
                E::custom(format!("must be {INPUT_SHAPES}; got {kind}"))
            }
        }
        impl<'de> Visitor<'de> for V {
            type Value = EmbedInputs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(INPUT_SHAPES)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EmbedInputs, E> {
                Ok(EmbedInputs::One(InputItem::Text(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<EmbedInputs, E> {
                Ok(EmbedInputs::One(InputItem::Text(v)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<EmbedInputs, E> {
                Err(Self::wrong("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<EmbedInputs, E> {
                Err(Self::wrong("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<EmbedInputs, E> {
                Err(Self::wrong("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<EmbedInputs, E> {
                Err(Self::wrong("a number"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<EmbedInputs, E> {
                Err(Self::wrong("null"))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<EmbedInputs, A::Error> {
                Err(Self::wrong("an object"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EmbedInputs, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                let mut ids = Vec::new();
                let mut i = 0;
                while let Some(v) = seq.next_element::<serde_json::Value>()? {
                    match v {
                        serde_json::Value::String(s) if ids.is_empty() => {
                            items.push(InputItem::Text(s))
                        }
                        serde_json::Value::Array(a) if ids.is_empty() => {
                            let at = format!("element {i}");
                            items.push(InputItem::Ids(
                                token_ids(a, &at).map_err(de::Error::custom)?,
                            ))
                        }
                        serde_json::Value::Number(_) if items.is_empty() => ids.push(v),
                        other => {
                            let what = if !ids.is_empty() {
                                "a list of token ids holds only integers"
                            } else if !items.is_empty() && other.is_number() {
                                "a list of texts holds only strings and token-id arrays"
                            } else {
                                "each element must be a string or an array of token ids"
                            };
                            return Err(de::Error::custom(format!(
                                "element {i} is {}: {what} (accepted: {INPUT_SHAPES})",
                                json_kind(&other)
                            )));
                        }
                    }
                    i += 1;
                }
                if !ids.is_empty() {
                    return Ok(EmbedInputs::One(InputItem::Ids(
                        token_ids(ids, "token ids").map_err(de::Error::custom)?,
                    )));
                }
                Ok(EmbedInputs::Many(items))
            }
        }
        d.deserialize_any(V)
    }
}

fn token_ids_schema() -> ArrayBuilder {
    ArrayBuilder::new().items(
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
            .minimum(Some(0)),
    )
}

/// text-embeddings-inference's `Input`: one input, or a list of inputs,
/// each a text or a list of token ids of the model's vocabulary.
impl utoipa::PartialSchema for EmbedInputs {
    fn schema() -> RefOr<Schema> {
        let one = || {
            OneOfBuilder::new()
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .description(Some("One text.")),
                )
                .item(token_ids_schema().description(Some(
                    "One text as token ids of the model's vocabulary (see `POST /tokenize`),                      used as given: no special tokens are added.",
                )))
        };
        OneOfBuilder::new()
            .item(one())
            .item(
                ArrayBuilder::new()
                    .items(one())
                    .min_items(Some(1))
                    .description(Some("Inputs, answered in this order.")),
            )
            .description(Some(
                "One input or a non-empty list of inputs (at most the service's \
                 `max_client_batch_size`, see `GET /info`); each a text or a list of token ids.",
            ))
            .into()
    }
}

impl ToSchema for EmbedInputs {}

/// `input` of `POST /v1/embeddings`, as OpenAI's API takes it: a string, an
/// array of strings, an array of token ids, or an array of token-id arrays.
/// Token ids are OpenAI's (`cl100k_base`, what tiktoken and the clients
/// built on it send); they are decoded to text, which is then embedded as
/// any text is. Texts and token-id arrays are not mixed in one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpenAiInput(pub EmbedInputs);

impl utoipa::PartialSchema for OpenAiInput {
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
                    .max_items(Some(OPENAI_MAX_INPUTS))
                    .description(Some("Texts, answered in this order.")),
            )
            .item(token_ids_schema().description(Some(
                "One text as OpenAI token ids (`cl100k_base`, as tiktoken encodes it).",
            )))
            .item(
                ArrayBuilder::new()
                    .items(token_ids_schema())
                    .min_items(Some(1))
                    .max_items(Some(OPENAI_MAX_INPUTS))
                    .description(Some(
                        "Texts as OpenAI token-id arrays (`cl100k_base`), answered in this order.",
                    )),
            )
            .description(Some(
                "As OpenAI's API: a string, an array of strings, an array of token ids, or an \
                 array of token-id arrays; at most 2048 inputs.",
            ))
            .into()
    }
}

impl ToSchema for OpenAiInput {}

/// Most inputs of one `POST /v1/embeddings` request (OpenAI's limit).
pub const OPENAI_MAX_INPUTS: usize = 2048;

/// Body limit of `POST /v1/embeddings` when the service's own
/// `body_limit_bytes` is smaller: room for 2048 inputs of 8 KiB of text, or
/// about 2.3 million token ids.
pub const OPENAI_BODY_LIMIT_BYTES: usize = 16 * 1024 * 1024;

/// Which end of a text too long for the model is cut (TEI's
/// `truncation_direction`): `right` keeps the beginning, `left` keeps the
/// end. Accepted as `Left`/`Right` (TEI's spelling) or `left`/`right`
/// (huggingface_hub's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TruncationDirection {
    #[serde(alias = "left")]
    Left,
    #[default]
    #[serde(alias = "right")]
    Right,
}

impl utoipa::PartialSchema for TruncationDirection {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^([Ll]eft|[Rr]ight)$"))
            .description(Some(
                "`Right` (default) cuts the end of a text too long for the model, `Left` its \
                 beginning; `left`/`right` are accepted too.",
            ))
            .into()
    }
}

impl ToSchema for TruncationDirection {}

/// `POST /embed` and `POST /` (text-embeddings-inference's `/embed`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"inputs": ["a cat sat on the mat", "hot dog"], "normalize": true}))]
pub struct EmbedRequest {
    /// A text, token ids, or a list of those. An empty string is valid: it
    /// embeds as the model's special tokens alone, as sentence-transformers
    /// does.
    pub inputs: EmbedInputs,
    /// The served model to use: its alias, its id, or the id's part
    /// after the last `/` (see `GET /v1/models`). Default: the service's
    /// first model. With several models served, an unknown name is a 404
    /// `model_not_found` listing them; a service with one model answers
    /// every name with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// L2-normalise the result. Default: what the model's `modules.json`
    /// says (true when it lists `Normalize`).
    #[serde(default)]
    pub normalize: Option<bool>,
    /// Cut texts longer than the model's `max_seq_length` (default true);
    /// with false such a text is a 422 `input_too_long`.
    #[serde(default)]
    pub truncate: Option<bool>,
    /// Which end is cut when a text is too long (default `Right`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation_direction: Option<TruncationDirection>,
    /// A key of the model's `prompts` (`config_sentence_transformers.json`):
    /// its text is prepended to every text input before tokenisation, as
    /// sentence-transformers does. Default: the model's
    /// `default_prompt_name`, if any. An unknown name is a 422 naming the
    /// known ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_name: Option<String>,
    /// Keep only the first N dimensions (Matryoshka-style), re-normalised
    /// when `normalize` holds: 1 to the model's dimension (`GET /info`);
    /// anything else is a 422 `invalid_dimensions`.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub dimensions: Option<usize>,
}

/// `POST /embed_all`: the last hidden state of every token, not pooled.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"inputs": "a cat sat on the mat"}))]
pub struct EmbedAllRequest {
    /// As for `POST /embed`.
    pub inputs: EmbedInputs,
    /// The served model to use: its alias, its id, or the id's part
    /// after the last `/` (see `GET /v1/models`). Default: the service's
    /// first model. With several models served, an unknown name is a 404
    /// `model_not_found` listing them; a service with one model answers
    /// every name with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// As for `POST /embed`.
    #[serde(default)]
    pub truncate: Option<bool>,
    /// As for `POST /embed`.
    #[serde(default)]
    pub truncation_direction: Option<TruncationDirection>,
    /// As for `POST /embed`.
    #[serde(default)]
    pub prompt_name: Option<String>,
}

/// `POST /decode`: token ids back to text.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ids": [101, 1037, 4937, 2938, 2006, 1996, 13523, 102]}))]
pub struct DecodeRequest {
    /// One list of token ids, or a list of such lists (ids of the model's
    /// vocabulary, as `POST /tokenize` gives them).
    pub ids: DecodeIds,
    /// The served model to use: its alias, its id, or the id's part
    /// after the last `/` (see `GET /v1/models`). Default: the service's
    /// first model. With several models served, an unknown name is a 404
    /// `model_not_found` listing them; a service with one model answers
    /// every name with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Leave out special tokens (`[CLS]`, `[SEP]`, ...). Default true.
    #[serde(default)]
    pub skip_special_tokens: Option<bool>,
}

/// One list of token ids or a list of lists (TEI's `InputIds`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DecodeIds {
    One(Vec<u32>),
    Many(Vec<Vec<u32>>),
}

impl DecodeIds {
    /// The id lists, in order.
    pub fn into_vec(self) -> Vec<Vec<u32>> {
        match self {
            DecodeIds::One(v) => vec![v],
            DecodeIds::Many(v) => v,
        }
    }
}

impl<'de> Deserialize<'de> for DecodeIds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let shapes = "an array of token ids or an array of token-id arrays";
        let v = serde_json::Value::deserialize(d)?;
        let serde_json::Value::Array(items) = v else {
            return Err(de::Error::custom(format!(
                "must be {shapes}; got {}",
                json_kind(&v)
            )));
        };
        if items.iter().all(|x| x.is_array()) && !items.is_empty() {
            items
                .into_iter()
                .enumerate()
                .map(|(i, x)| match x {
                    serde_json::Value::Array(a) => token_ids(a, &format!("element {i}")),
                    _ => unreachable!("checked above"),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(DecodeIds::Many)
                .map_err(de::Error::custom)
        } else {
            token_ids(items, "ids")
                .map(DecodeIds::One)
                .map_err(|e| de::Error::custom(format!("{e} (accepted: {shapes})")))
        }
    }
}

impl utoipa::PartialSchema for DecodeIds {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(token_ids_schema().description(Some("One list of token ids.")))
            .item(
                ArrayBuilder::new()
                    .items(token_ids_schema())
                    .min_items(Some(1))
                    .description(Some("Lists of token ids, answered in this order.")),
            )
            .into()
    }
}

impl ToSchema for DecodeIds {}

/// `POST /embed/batch` (the original design's batch endpoint).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"texts": ["a cat sat on the mat", "hot dog"]}))]
pub struct EmbedBatchRequest {
    /// At least one text (an empty list is a 422 `empty_input`), at most
    /// the service's `max_client_batch_size` (see `GET /info`).
    #[schema(min_items = 1)]
    pub texts: Vec<String>,
    /// The served model to use: its alias, its id, or the id's part
    /// after the last `/` (see `GET /v1/models`). Default: the service's
    /// first model. With several models served, an unknown name is a 404
    /// `model_not_found` listing them; a service with one model answers
    /// every name with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
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
    /// A string, an array of strings, an array of OpenAI token ids, or an
    /// array of token-id arrays; at most 2048 inputs.
    pub input: OpenAiInput,
    /// The served model to use (OpenAI's `model`): its alias, its id, or
    /// the id's part after the last `/` (see `GET /v1/models`); echoed
    /// back. Default: the service's first model. With several models
    /// served, an unknown name is a 404 `model_not_found` listing them; a
    /// service with one model answers every name with it (so OpenAI
    /// clients' default names work).
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
    /// The served model to use: its alias, its id, or the id's part
    /// after the last `/` (see `GET /v1/models`). Default: the service's
    /// first model. With several models served, an unknown name is a 404
    /// `model_not_found` listing them; a service with one model answers
    /// every name with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Add `[CLS]`/`[SEP]` (or the model's equivalents). Default true.
    #[serde(default)]
    pub add_special_tokens: Option<bool>,
    /// As for `POST /embed`: the prompt's text is prepended, and its tokens
    /// are part of the answer.
    #[serde(default)]
    pub prompt_name: Option<String>,
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
    /// Every served model, the default (described by the fields above)
    /// first; absent from services older than this field.
    #[serde(default)]
    pub models: Vec<ServedModelInfo>,
}

impl InfoResponse {
    /// The answer for `models` (the default first, whose facts fill TEI's
    /// top-level fields) and the service-wide limits.
    pub fn new(
        default: ServedModelInfo,
        models: Vec<ServedModelInfo>,
        max_client_batch_size: usize,
        body_limit_bytes: Option<usize>,
        version: String,
    ) -> Self {
        let d = default;
        Self {
            model_id: d.model_id,
            model_source: d.model_source,
            architecture: d.architecture,
            dimension: d.dimension,
            max_seq_length: d.max_seq_length,
            pooling: d.pooling,
            normalize: d.normalize,
            device: d.device,
            dtype: d.dtype,
            backend: d.backend,
            max_batch_tokens: d.max_batch_tokens,
            max_client_batch_size,
            max_concurrent_requests: d.max_concurrent_requests,
            body_limit_bytes,
            version,
            models,
        }
    }
}

/// One served model in `GET /info`'s `models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServedModelInfo {
    /// The name requests pass as `model` (also the id in `GET /v1/models`).
    #[schema(example = "sentence-transformers/all-MiniLM-L6-v2")]
    pub alias: String,
    /// The model's id: the Hugging Face id, or its directory's name.
    pub model_id: String,
    pub model_source: String,
    pub architecture: String,
    /// Length of its vectors.
    pub dimension: usize,
    /// Tokens it reads per text (longer texts are cut, or refused with
    /// `truncate: false`).
    pub max_seq_length: usize,
    pub pooling: String,
    pub normalize: bool,
    pub device: String,
    pub dtype: String,
    pub backend: String,
    /// This model's token budget of one forward pass.
    pub max_batch_tokens: usize,
    /// This model's requests in flight; beyond it 429.
    pub max_concurrent_requests: usize,
}

/// `GET /health`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` once the model is loaded and warmed up; `loading` before.
    pub status: String,
}

/// One model of `GET /v1/models` and `GET /v1/models/{model}` (OpenAI's
/// `Model`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenAiModel {
    /// The model's alias (`GET /info`'s `models[].alias`; by default its
    /// id); pass it as `model`.
    #[schema(example = "sentence-transformers/all-MiniLM-L6-v2")]
    pub id: String,
    /// Always `model`.
    #[schema(example = "model")]
    pub object: String,
    /// When this service loaded the model, in Unix seconds.
    pub created: u64,
    /// Always `embedding-service`.
    #[schema(example = "embedding-service")]
    pub owned_by: String,
}

/// `GET /v1/models` (OpenAI's list shape): every model this service
/// serves, the default first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenAiModelList {
    /// Always `list`.
    #[schema(example = "list")]
    pub object: String,
    pub data: Vec<OpenAiModel>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embed(body: &str) -> Result<EmbedRequest, String> {
        serde_json::from_str(body).map_err(|e| e.to_string())
    }

    #[test]
    fn inputs_accept_texts_and_token_ids() {
        let r = embed(r#"{"inputs":"a"}"#).unwrap();
        assert_eq!(r.inputs, EmbedInputs::One(InputItem::Text("a".into())));
        let r = embed(r#"{"inputs":["a","b"]}"#).unwrap();
        assert_eq!(r.inputs.into_texts().unwrap(), vec!["a", "b"]);
        let r = embed(r#"{"inputs":[101, 2000, 102]}"#).unwrap();
        assert_eq!(
            r.inputs,
            EmbedInputs::One(InputItem::Ids(vec![101, 2000, 102]))
        );
        let r = embed(r#"{"inputs":[[101, 102], "b", []]}"#).unwrap();
        assert_eq!(
            r.inputs.into_items(),
            vec![
                InputItem::Ids(vec![101, 102]),
                InputItem::Text("b".into()),
                InputItem::Ids(vec![])
            ]
        );
        assert_eq!(
            embed(r#"{"inputs":[]}"#).unwrap().inputs,
            EmbedInputs::Many(vec![])
        );
        let o: OpenAiEmbeddingsRequest =
            serde_json::from_str(r#"{"input":[[1, 2], [3]]}"#).unwrap();
        assert_eq!(o.input.0.into_items().len(), 2);
    }

    #[test]
    fn wrong_input_shapes_name_the_accepted_ones() {
        for (body, want) in [
            (r#"{"inputs":5}"#, "got a number"),
            (r#"{"inputs":{"a":1}}"#, "got an object"),
            (r#"{"inputs":null}"#, "got null"),
            (r#"{"inputs":["a",3]}"#, "element 1 is a number"),
            (r#"{"inputs":[1,"a"]}"#, "element 1 is a string"),
            (r#"{"inputs":["a",{"b":1}]}"#, "element 1 is an object"),
            (r#"{"inputs":[[1,-2]]}"#, "element 0[1] must be a token id"),
            (r#"{"inputs":[1,2.5]}"#, "token ids[1] must be a token id"),
            (r#"{"inputs":[4294967296]}"#, "must be a token id"),
        ] {
            let e = embed(body).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
            if !want.contains("token id") {
                assert!(e.contains("an array of token-id arrays"), "{body}: {e}");
            }
        }
        let e = serde_json::from_str::<TokenizeRequest>(r#"{"inputs":{"a":1}}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("must be a string or an array of strings; got an object"),
            "{e}"
        );
    }

    #[test]
    fn truncation_direction_takes_both_spellings() {
        for (s, d) in [
            ("Left", TruncationDirection::Left),
            ("left", TruncationDirection::Left),
            ("Right", TruncationDirection::Right),
            ("right", TruncationDirection::Right),
        ] {
            let r = embed(&format!(r#"{{"inputs":"a","truncation_direction":"{s}"}}"#)).unwrap();
            assert_eq!(r.truncation_direction, Some(d));
        }
        assert!(embed(r#"{"inputs":"a","truncation_direction":"up"}"#).is_err());
    }

    #[test]
    fn decode_ids_one_or_many() {
        let d: DecodeRequest = serde_json::from_str(r#"{"ids":[1,2]}"#).unwrap();
        assert_eq!(d.ids.into_vec(), vec![vec![1, 2]]);
        let d: DecodeRequest = serde_json::from_str(r#"{"ids":[[1],[2,3]]}"#).unwrap();
        assert_eq!(d.ids.into_vec(), vec![vec![1], vec![2, 3]]);
        let e = serde_json::from_str::<DecodeRequest>(r#"{"ids":"12"}"#).unwrap_err();
        assert!(
            e.to_string().contains("must be an array of token ids"),
            "{e}"
        );
    }
}
