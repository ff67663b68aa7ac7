//! The inverted index of one segment's document text: for each term, the
//! slots (offsets in the segment) that hold it and how often; for each
//! slot, its length in tokens. Deleted slots stay in the index; readers
//! skip them with the segment's deleted bits.
//!
//! Sealed file `text.bin`, little-endian, format 1:
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic `VDBTEXT1` |
//! | 8..64 | u64 each: slots, terms, documents (slots with ≥ 1 token), tokens (all slots), postings, term bytes, 0 |
//! | | `slots` × u32: tokens per slot |
//! | | `terms + 1` × u64: start of each term in the term bytes (terms sorted by their UTF-8 bytes) |
//! | | `terms + 1` × u64: start of each term's postings (in postings) |
//! | | the term bytes, then zeros to a multiple of 4 |
//! | | `postings` × (u32 slot, u32 count), slots ascending within a term |
//!
//! Opening checks the sizes and that both offset tables ascend within
//! bounds (O(terms)); the segment's checksums cover the bytes.

use super::term_table::{self, u32_at, u64_at, TermTable};
use super::Tokenizer;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"VDBTEXT1";
const HEADER: usize = 64;

/// Where a segment's postings come from, appendable or sealed.
pub trait TextSource {
    /// Slots in the segment, deleted ones included.
    fn slots(&self) -> usize;
    /// Tokens of slot `doc` (0: no text, or none that tokenizes).
    fn doc_len(&self, doc: u32) -> u32;
    /// Slots with at least one token, and the tokens of all slots, deleted
    /// ones included.
    fn totals(&self) -> (u64, u64);
    /// Calls `f(slot, count)` for each slot holding `term`, slots
    /// ascending.
    fn postings(&self, term: &str, f: &mut dyn FnMut(u32, u32));
}

/// Counts each token of `text` (None: no text).
fn term_counts(tok: &Tokenizer, text: Option<&str>) -> (HashMap<String, u32>, u32) {
    let mut counts: HashMap<String, u32> = HashMap::new();
    let mut len = 0u32;
    if let Some(t) = text {
        tok.each(t, |w| {
            *counts.entry(w).or_default() += 1;
            len += 1;
        });
    }
    (counts, len)
}

/// The appendable segment's index, grown one slot per point appended.
#[derive(Debug, Default, Clone)]
pub struct MutableText {
    terms: HashMap<String, Vec<(u32, u32)>>,
    doc_len: Vec<u32>,
    docs: u64,
    tokens: u64,
}

impl MutableText {
    /// Appends the next slot with `text`'s tokens.
    pub fn push(&mut self, tok: &Tokenizer, text: Option<&str>) {
        let slot = self.doc_len.len() as u32;
        let (counts, len) = term_counts(tok, text);
        for (term, tf) in counts {
            self.terms.entry(term).or_default().push((slot, tf));
        }
        self.doc_len.push(len);
        self.docs += u64::from(len > 0);
        self.tokens += u64::from(len);
    }
}

impl TextSource for MutableText {
    fn slots(&self) -> usize {
        self.doc_len.len()
    }
    fn doc_len(&self, doc: u32) -> u32 {
        self.doc_len[doc as usize]
    }
    fn totals(&self) -> (u64, u64) {
        (self.docs, self.tokens)
    }
    fn postings(&self, term: &str, f: &mut dyn FnMut(u32, u32)) {
        if let Some(p) = self.terms.get(term) {
            for &(d, tf) in p {
                f(d, tf);
            }
        }
    }
}

/// Builds `text.bin` for a segment whose slots hold `texts`, in order.
pub fn write_sealed<'a>(tok: &Tokenizer, texts: impl Iterator<Item = Option<&'a str>>) -> Vec<u8> {
    let mut terms: BTreeMap<String, Vec<(u32, u32)>> = BTreeMap::new();
    let mut doc_len: Vec<u32> = Vec::new();
    let (mut docs, mut tokens, mut postings) = (0u64, 0u64, 0u64);
    for (slot, text) in texts.enumerate() {
        let (counts, len) = term_counts(tok, text);
        for (term, tf) in counts {
            terms.entry(term).or_default().push((slot as u32, tf));
            postings += 1;
        }
        doc_len.push(len);
        docs += u64::from(len > 0);
        tokens += u64::from(len);
    }
    let term_bytes: usize = terms.keys().map(String::len).sum();
    let mut out = Vec::with_capacity(
        HEADER
            + doc_len.len() * 4
            + (terms.len() + 1) * 16
            + term_bytes
            + 3
            + postings as usize * 8,
    );
    out.extend_from_slice(MAGIC);
    for v in [
        doc_len.len() as u64,
        terms.len() as u64,
        docs,
        tokens,
        postings,
        term_bytes as u64,
        0,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for l in &doc_len {
        out.extend_from_slice(&l.to_le_bytes());
    }
    term_table::write(&mut out, terms.iter().map(|(t, p)| (t.as_bytes(), p.len())));
    for p in terms.values() {
        // Slots were pushed in ascending order.
        for &(d, tf) in p {
            out.extend_from_slice(&d.to_le_bytes());
            out.extend_from_slice(&tf.to_le_bytes());
        }
    }
    out
}

/// A sealed segment's index over its `text.bin` bytes (memory-mapped or
/// owned): nothing is copied or rebuilt.
#[derive(Clone)]
pub struct SealedText {
    bytes: Arc<dyn AsRef<[u8]> + Send + Sync>,
    slots: usize,
    docs: u64,
    tokens: u64,
    postings: usize,
    table: TermTable,
}

impl std::fmt::Debug for SealedText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedText")
            .field("slots", &self.slots)
            .field("terms", &self.table.terms())
            .field("postings", &self.postings)
            .finish()
    }
}

impl SealedText {
    /// Reads the layout of `bytes` for a segment of `slots` slots.
    /// Errors: a message saying what does not fit (wrong magic, slot
    /// count, sizes, or offsets that do not ascend within bounds).
    pub fn open(bytes: Arc<dyn AsRef<[u8]> + Send + Sync>, slots: usize) -> Result<Self, String> {
        let b: &[u8] = (*bytes).as_ref();
        if b.len() < HEADER || &b[..8] != MAGIC {
            return Err("not a text index (bad magic or too short)".into());
        }
        let h = |i: usize| u64_at(b, 8 + i * 8);
        let (n_slots, terms, docs, tokens, postings, term_bytes) =
            (h(0), h(1), h(2), h(3), h(4), h(5));
        if n_slots != slots as u64 {
            return Err(format!(
                "the text index has {n_slots} slots, the segment {slots}"
            ));
        }
        let doc_lens = slots
            .checked_mul(4)
            .and_then(|n| n.checked_add(HEADER))
            .filter(|&n| n <= b.len())
            .ok_or("the text index is shorter than its slot lengths")?;
        let (table, end) = TermTable::open(b, doc_lens, terms, term_bytes, postings, 8)
            .map_err(|e| format!("the text index's term table: {e}"))?;
        if end != b.len() {
            return Err(format!(
                "the text index has {} bytes, its header says {end}",
                b.len()
            ));
        }
        Ok(Self {
            bytes,
            slots,
            docs,
            tokens,
            postings: postings as usize,
            table,
        })
    }

    fn b(&self) -> &[u8] {
        (*self.bytes).as_ref()
    }

    /// Distinct terms in the segment.
    pub fn terms(&self) -> usize {
        self.table.terms()
    }

    /// Postings in all (one per distinct term of each slot).
    pub fn posting_count(&self) -> usize {
        self.postings
    }
}

impl TextSource for SealedText {
    fn slots(&self) -> usize {
        self.slots
    }
    fn doc_len(&self, doc: u32) -> u32 {
        u32_at(self.b(), HEADER + doc as usize * 4)
    }
    fn totals(&self) -> (u64, u64) {
        (self.docs, self.tokens)
    }
    fn postings(&self, term: &str, f: &mut dyn FnMut(u32, u32)) {
        let b = self.b();
        for p in self.table.find(b, term.as_bytes()) {
            let at = self.table.posting(p);
            let d = u32_at(b, at);
            if (d as usize) < self.slots {
                f(d, u32_at(b, at + 4));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(s: &dyn TextSource, t: &str) -> Vec<(u32, u32)> {
        let mut v = Vec::new();
        s.postings(t, &mut |d, tf| v.push((d, tf)));
        v
    }

    #[test]
    fn mutable_and_sealed_agree() {
        let tok = Tokenizer::new(None);
        let texts = [
            Some("a cat and a dog"),
            None,
            Some("The dog barks; the cat does not."),
            Some("!!!"),
            Some("Zebra"),
        ];
        let mut m = MutableText::default();
        for t in texts {
            m.push(&tok, t);
        }
        let bytes = write_sealed(&tok, texts.into_iter());
        let s = SealedText::open(Arc::new(bytes), texts.len()).unwrap();
        for src in [&m as &dyn TextSource, &s] {
            assert_eq!(src.slots(), 5);
            assert_eq!(src.totals(), (3, 5 + 7 + 1));
            assert_eq!(src.doc_len(0), 5);
            assert_eq!(src.doc_len(1), 0);
            assert_eq!(src.doc_len(3), 0);
            assert_eq!(collect(src, "a"), [(0, 2)]);
            assert_eq!(collect(src, "the"), [(2, 2)]);
            let mut cat = collect(src, "cat");
            cat.sort();
            assert_eq!(cat, [(0, 1), (2, 1)]);
            assert_eq!(collect(src, "zebra"), [(4, 1)]);
            assert!(collect(src, "zebr").is_empty());
            assert!(collect(src, "").is_empty());
            assert!(collect(src, "zzz").is_empty());
        }
        assert_eq!(s.terms(), 9);
    }

    #[test]
    fn damaged_layouts_are_refused() {
        let tok = Tokenizer::new(None);
        let bytes = write_sealed(&tok, [Some("one two"), Some("two three")].into_iter());
        assert!(SealedText::open(Arc::new(bytes.clone()), 3)
            .unwrap_err()
            .contains("slots"));
        let mut short = bytes.clone();
        short.pop();
        assert!(SealedText::open(Arc::new(short), 2).is_err());
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert!(SealedText::open(Arc::new(magic), 2).is_err());
        // A term offset past the term bytes.
        let mut off = bytes.clone();
        let at = HEADER + 2 * 4 + 8;
        off[at..at + 8].copy_from_slice(&1000u64.to_le_bytes());
        assert!(SealedText::open(Arc::new(off), 2).is_err());
        // A huge term count.
        let mut huge = bytes;
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(SealedText::open(Arc::new(huge), 2).is_err());
        let empty = write_sealed(&tok, std::iter::empty());
        let e = SealedText::open(Arc::new(empty), 0).unwrap();
        assert_eq!(e.totals(), (0, 0));
        assert!(collect(&e, "x").is_empty());
    }
}
