//! Keyword search: the tokenizer, the inverted index of a segment's
//! document text (in memory for the appendable segment, a memory-mapped
//! file for a sealed one) and BM25 scoring over statistics merged across
//! segments.
//!
//! What holds:
//! - A document is a point's stored `content`. Its tokens are the words
//!   of the text by Unicode word boundaries (UAX #29, words holding a
//!   letter or digit), lower-cased, then stemmed when the collection asks
//!   for a stemmer. The query is tokenized the same way.
//! - Scores are BM25 as Lucene computes it (see [`bm25`]) over the live
//!   documents of the whole collection: the number of documents, their
//!   mean length and each term's document frequency are summed over all
//!   segments with deleted points left out, so a score does not depend on
//!   how points are split into segments, nor on whether a vacuum has
//!   rewritten them.
//! - A sealed segment's index is written with the segment (`text.bin`,
//!   checksummed with the segment's other files) and opened by mapping
//!   it: nothing is rebuilt at open.
//!
//! This layer depends on nothing else in the crate: `storage` holds an
//! index per segment, `collection` merges statistics and ranks.

pub mod bm25;
pub mod inverted;
pub(crate) mod term_table;

use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;
use utoipa::ToSchema;

/// Default BM25 `k1` (term-frequency saturation), as in Lucene.
pub const DEFAULT_K1: f32 = 1.2;
/// Default BM25 `b` (document-length normalisation), as in Lucene.
pub const DEFAULT_B: f32 = 0.75;
/// Longest token kept, in bytes; longer words (base64 blobs, hashes) are
/// dropped, as Qdrant's and tantivy's default tokenizers do.
pub const MAX_TOKEN_BYTES: usize = 64;

/// A Snowball stemmer language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StemmerLanguage {
    Arabic,
    Danish,
    Dutch,
    English,
    Finnish,
    French,
    German,
    Greek,
    Hungarian,
    Italian,
    Norwegian,
    Portuguese,
    Romanian,
    Russian,
    Spanish,
    Swedish,
    Tamil,
    Turkish,
}

impl StemmerLanguage {
    fn algorithm(self) -> rust_stemmers::Algorithm {
        use rust_stemmers::Algorithm as A;
        match self {
            Self::Arabic => A::Arabic,
            Self::Danish => A::Danish,
            Self::Dutch => A::Dutch,
            Self::English => A::English,
            Self::Finnish => A::Finnish,
            Self::French => A::French,
            Self::German => A::German,
            Self::Greek => A::Greek,
            Self::Hungarian => A::Hungarian,
            Self::Italian => A::Italian,
            Self::Norwegian => A::Norwegian,
            Self::Portuguese => A::Portuguese,
            Self::Romanian => A::Romanian,
            Self::Russian => A::Russian,
            Self::Spanish => A::Spanish,
            Self::Swedish => A::Swedish,
            Self::Tamil => A::Tamil,
            Self::Turkish => A::Turkish,
        }
    }
}

/// The full-text index of a collection's document text (`content`),
/// fixed at creation (the tokens are in the index files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextIndexSettings {
    /// Index each point's `content` for keyword (BM25) search. Default
    /// true. Collections made before keyword search have it off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// BM25 term-frequency saturation, 0 to 10 (default 1.2); a query may
    /// override it.
    #[serde(default = "default_k1")]
    #[schema(minimum = 0, maximum = 10)]
    pub k1: f32,
    /// BM25 length normalisation, 0 (none) to 1 (full; default 0.75); a
    /// query may override it.
    #[serde(default = "default_b")]
    #[schema(minimum = 0, maximum = 1)]
    pub b: f32,
    /// Snowball stemmer applied to every token after lower-casing
    /// (`"english"`, ...); default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stemmer: Option<StemmerLanguage>,
}

fn yes() -> bool {
    true
}
fn default_k1() -> f32 {
    DEFAULT_K1
}
fn default_b() -> f32 {
    DEFAULT_B
}

impl Default for TextIndexSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            k1: DEFAULT_K1,
            b: DEFAULT_B,
            stemmer: None,
        }
    }
}

impl TextIndexSettings {
    /// The settings of a collection made before keyword search existed
    /// (its sealed segments have no text index).
    pub fn absent() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Errors: a message naming the field when `k1` is outside 0..=10 or
    /// `b` outside 0..=1 (or either is not finite).
    pub fn validate(&self) -> Result<(), String> {
        check_bm25(self.k1, self.b, "text_index.")
    }

    /// The tokenizer these settings describe; None when the index is off.
    pub fn tokenizer(&self) -> Option<Tokenizer> {
        self.enabled.then(|| Tokenizer::new(self.stemmer))
    }
}

/// Checks BM25 parameters; `prefix` names where they came from.
/// Errors: a message naming `{prefix}k1` or `{prefix}b`.
pub fn check_bm25(k1: f32, b: f32, prefix: &str) -> Result<(), String> {
    if !(k1.is_finite() && (0.0..=10.0).contains(&k1)) {
        return Err(format!("`{prefix}k1` must be between 0 and 10, got {k1}"));
    }
    if !(b.is_finite() && (0.0..=1.0).contains(&b)) {
        return Err(format!("`{prefix}b` must be between 0 and 1, got {b}"));
    }
    Ok(())
}

/// Text → tokens: Unicode words (UAX #29), lower-cased, at most
/// [`MAX_TOKEN_BYTES`] bytes, stemmed when a language is set. Cheap to
/// clone; `Send + Sync`.
#[derive(Clone)]
pub struct Tokenizer {
    stemmer: Option<std::sync::Arc<rust_stemmers::Stemmer>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("stemmer", &self.stemmer.is_some())
            .finish()
    }
}

impl Tokenizer {
    /// A tokenizer with the given stemmer (None: no stemming).
    pub fn new(stemmer: Option<StemmerLanguage>) -> Self {
        Self {
            stemmer: stemmer
                .map(|l| std::sync::Arc::new(rust_stemmers::Stemmer::create(l.algorithm()))),
        }
    }

    /// The tokens of `text`, in order, repeats kept.
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.each(text, |t| out.push(t));
        out
    }

    /// Calls `f` with each token of `text`, in order.
    pub fn each(&self, text: &str, mut f: impl FnMut(String)) {
        for w in text.unicode_words() {
            let lower = w.to_lowercase();
            if lower.len() > MAX_TOKEN_BYTES {
                continue;
            }
            match &self.stemmer {
                Some(s) => f(s.stem(&lower).into_owned()),
                None => f(lower),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_by_unicode_boundaries_lower_cased() {
        let t = Tokenizer::new(None);
        assert_eq!(
            t.tokenize("The quick (\"brown\") fox can't jump 32.3 feet, right?"),
            ["the", "quick", "brown", "fox", "can't", "jump", "32.3", "feet", "right"]
        );
        assert_eq!(t.tokenize("Größe ÉCOLE naïve"), ["größe", "école", "naïve"]);
        assert_eq!(t.tokenize("  ...  !!"), Vec::<String>::new());
        // Ideographs are one word each; hiragana runs are split per UAX #29.
        assert_eq!(t.tokenize("東京 tower").len(), 3);
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(t.tokenize(&format!("a {long} b")), ["a", "b"]);
    }

    #[test]
    fn english_stemming() {
        let t = Tokenizer::new(Some(StemmerLanguage::English));
        assert_eq!(t.tokenize("Running runners ran"), ["run", "runner", "ran"]);
    }

    #[test]
    fn settings_defaults_and_bounds() {
        let s: TextIndexSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, TextIndexSettings::default());
        assert!(s.validate().is_ok());
        let bad = TextIndexSettings {
            b: 1.5,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("text_index.b"));
        let bad = TextIndexSettings {
            k1: f32::NAN,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("text_index.k1"));
        assert!(serde_json::from_str::<TextIndexSettings>(r#"{"stemmer": "klingon"}"#).is_err());
    }

    /// Writes the tokens of each line of `$TOKENS_IN` (one text per line)
    /// to `$TOKENS_OUT` as a JSON array of arrays, stemmed when
    /// `$TOKENS_STEMMER` names a language: how `scripts/bm25_reference.py`
    /// gives the reference implementation the same tokens.
    #[test]
    #[ignore = "a tool for making the BM25 reference fixture"]
    fn dump_tokens() {
        let (Ok(inp), Ok(out)) = (std::env::var("TOKENS_IN"), std::env::var("TOKENS_OUT")) else {
            return;
        };
        let stemmer = std::env::var("TOKENS_STEMMER")
            .ok()
            .filter(|s| !s.is_empty())
            .map(|s| serde_json::from_value(serde_json::Value::String(s)).unwrap());
        let t = Tokenizer::new(stemmer);
        let text = std::fs::read_to_string(inp).unwrap();
        let tokens: Vec<Vec<String>> = text.lines().map(|l| t.tokenize(l)).collect();
        std::fs::write(out, serde_json::to_vec(&tokens).unwrap()).unwrap();
    }
}
