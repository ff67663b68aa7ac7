//! Vectors in request bodies: a JSON array of numbers, or a string of
//! base64 (standard alphabet; `=` padding optional, never extra) holding the vector's
//! little-endian IEEE-754 32-bit floats, 4 bytes each: the form OpenAI's
//! `encoding_format: "base64"` returns embeddings in, and numpy's
//! `base64.b64encode(v.astype("<f4").tobytes())`. The base64 form is about
//! a quarter of the array's bytes and is read without parsing decimal
//! numbers (the largest part of a vector search's request parsing), and it
//! carries the exact bits.

use base64::Engine;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::fmt;

/// A vector in a request: an array of numbers, or a base64 string of its
/// little-endian 32-bit floats (4 bytes each).
// For the OpenAPI document: the fields themselves are `Option<Vec<f32>>`
// read by `deserialize_opt`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(example = json!([0.1, -0.2, 0.3]))]
pub enum VectorInput {
    /// The components as JSON numbers.
    Floats(Vec<f32>),
    /// base64 of the components as little-endian 32-bit floats (4 bytes
    /// each), e.g. `"zczMPc3MTL6amZk+"` for [0.1, -0.2, 0.3].
    #[schema(format = Byte)]
    Base64(String),
}

/// `deserialize_with` for an optional vector field: absent or null →
/// None; an array of numbers or a base64 string → the vector. Errors: a
/// component that is not a number (or out of the 32-bit range), a string
/// that is not base64, or base64 whose length in bytes is not a multiple
/// of 4; each message names the form expected.
pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<f32>>, D::Error> {
    d.deserialize_option(OptVisitor)
}

struct OptVisitor;

impl<'de> Visitor<'de> for OptVisitor {
    type Value = Option<Vec<f32>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(EXPECTING)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(VecVisitor).map(Some)
    }
}

const EXPECTING: &str = "an array of numbers, or a base64 string of little-endian 32-bit floats";

struct VecVisitor;

impl<'de> Visitor<'de> for VecVisitor {
    type Value = Vec<f32>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(EXPECTING)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<f32>, A::Error> {
        // The hint comes from the client's body: bounded, not trusted.
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(x) = seq.next_element::<f32>()? {
            v.push(x);
        }
        Ok(v)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<f32>, E> {
        decode_base64(s).map_err(E::custom)
    }
}

/// Standard alphabet; `=` padding canonical, short or left off (each
/// unambiguous), never extra.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// The floats a base64 string holds. Errors: not base64 (the message
/// names the character and where it is), or a byte length that is not a
/// multiple of 4.
pub fn decode_base64(s: &str) -> Result<Vec<f32>, String> {
    let bytes = BASE64.decode(s).map_err(|e| {
        format!(
            "a vector given as a string must be base64 of little-endian 32-bit floats; \
             this is not base64: {}",
            why_not_base64(&e)
        )
    })?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "a base64 vector must hold whole 32-bit floats (4 bytes each); it decodes to {} bytes",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// What a user can do about a decode error, in words.
fn why_not_base64(e: &base64::DecodeError) -> String {
    use base64::DecodeError as E;
    match *e {
        E::InvalidByte(at, b) if b.is_ascii_whitespace() => {
            format!("whitespace at character {at} (remove spaces and line breaks)")
        }
        E::InvalidByte(at, b @ (b'-' | b'_')) => format!(
            "`{}` at character {at} is URL-safe base64; use the standard alphabet (`+` and `/`)",
            b as char
        ),
        E::InvalidByte(at, b'=') => format!("`=` at character {at} is padding before the end"),
        E::InvalidByte(at, b) if b.is_ascii_graphic() => {
            format!(
                "`{}` at character {at} is not a base64 character",
                b as char
            )
        }
        E::InvalidByte(at, b) => {
            format!("byte 0x{b:02x} at character {at} is not a base64 character")
        }
        E::InvalidLength(n) => format!("{n} characters cannot be whole bytes (cut short?)"),
        E::InvalidLastSymbol(at, _) => {
            format!("the last character (at {at}) leaves stray bits: the string was cut or altered")
        }
        E::InvalidPadding => "the `=` padding at the end is wrong".into(),
    }
}

/// The base64 form of `v` (standard alphabet, padded).
pub fn encode_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Req {
        #[serde(default, deserialize_with = "deserialize_opt")]
        vector: Option<Vec<f32>>,
    }

    fn parse(s: &str) -> Result<Option<Vec<f32>>, String> {
        serde_json::from_str::<Req>(s)
            .map(|r| r.vector)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn both_forms_give_the_same_bits() {
        let v = [0.1f32, -0.2, 0.3, f32::MIN_POSITIVE, 3.4e38, -0.0];
        let arr = serde_json::to_string(&v).unwrap();
        let a = parse(&format!(r#"{{"vector": {arr}}}"#)).unwrap().unwrap();
        let b = parse(&format!(r#"{{"vector": "{}"}}"#, encode_base64(&v)))
            .unwrap()
            .unwrap();
        let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&v));
        assert_eq!(bits(&b), bits(&v));
        // The documented example, and padding left off.
        assert_eq!(encode_base64(&[0.1, -0.2, 0.3]), "zczMPc3MTL6amZk+");
        let padded = encode_base64(&[0.1, -0.2]);
        assert!(padded.ends_with('='), "{padded}");
        let bare = padded.trim_end_matches('=');
        assert_eq!(
            parse(&format!(r#"{{"vector": "{bare}"}}"#))
                .unwrap()
                .unwrap(),
            vec![0.1, -0.2]
        );
    }

    #[test]
    fn absent_null_and_empty() {
        assert_eq!(parse("{}").unwrap(), None);
        assert_eq!(parse(r#"{"vector": null}"#).unwrap(), None);
        assert_eq!(parse(r#"{"vector": []}"#).unwrap(), Some(vec![]));
        assert_eq!(parse(r#"{"vector": ""}"#).unwrap(), Some(vec![]));
    }

    #[test]
    fn bad_input_is_named() {
        let e = parse(r#"{"vector": "not base64!"}"#).unwrap_err();
        assert!(
            e.contains("not base64") && e.contains("whitespace at character 3"),
            "{e}"
        );
        let good = encode_base64(&[0.1, 0.2, 0.3, 0.4]);
        assert!(good.ends_with("=="), "{good}");
        for (bad, want) in [
            (good.replace('+', "-"), "URL-safe"),
            (format!("{good}=="), "padding"),
            (
                format!("{}\\n{}", &good[..8], &good[8..]),
                "whitespace at character 8",
            ),
            ("zczMPc3MTD6amZk+zczMPh==".to_string(), "stray bits"),
            ("abc*".to_string(), "`*` at character 3"),
        ] {
            let e = match parse(&format!(r#"{{"vector": "{bad}"}}"#)) {
                Err(e) => e,
                Ok(v) => panic!("{bad} accepted: {v:?}"),
            };
            assert!(e.contains(want), "{bad}: {e}");
        }
        // 3 bytes: not a whole float.
        let e = parse(r#"{"vector": "AAAA"}"#).unwrap_err();
        assert!(e.contains("4 bytes each") && e.contains("3 bytes"), "{e}");
        let e = parse(r#"{"vector": [1, "x"]}"#).unwrap_err();
        assert!(e.contains("expected f32"), "{e}");
        let e = parse(r#"{"vector": {"a": 1}}"#).unwrap_err();
        assert!(e.contains("an array of numbers, or a base64 string"), "{e}");
        let e = parse(r#"{"vector": 7}"#).unwrap_err();
        assert!(e.contains("an array of numbers, or a base64 string"), "{e}");
    }
}
