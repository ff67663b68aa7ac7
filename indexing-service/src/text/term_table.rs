//! A sorted table of byte-string terms, each with a run of fixed-size
//! postings, laid out in one little-endian buffer after a caller's own
//! header: the shared part of `text.bin` (`inverted`) and of the payload
//! index files of strings and booleans (`index::payload_index`).
//!
//! | bytes | content |
//! |---|---|
//! | `(terms + 1)` × u64 | start of each term in the term bytes (the last: their length) |
//! | `(terms + 1)` × u64 | start of each term's postings, counted in postings (the last: their number) |
//! | term bytes | the terms, sorted by their bytes, then zeros to a multiple of 4 |
//! | `postings` × `entry` bytes | each term's postings, in order |
//!
//! Reading checks the sizes and that both offset tables ascend within
//! bounds (O(terms)); a lookup is a binary search.

use std::cmp::Ordering;
use std::ops::Range;

/// The u64 at byte `at` of `b` (little-endian).
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The u32 at byte `at` of `b` (little-endian).
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Appends the offset tables and the term bytes (padded) for `terms`
/// (sorted, with their posting counts); the caller appends the postings
/// next, in the same order.
pub(crate) fn write<'a>(out: &mut Vec<u8>, terms: impl Iterator<Item = (&'a [u8], usize)> + Clone) {
    let mut at = 0u64;
    for l in terms.clone().map(|(t, _)| t.len() as u64).chain([0]) {
        out.extend_from_slice(&at.to_le_bytes());
        at += l;
    }
    let mut at = 0u64;
    for n in terms.clone().map(|(_, n)| n as u64).chain([0]) {
        out.extend_from_slice(&at.to_le_bytes());
        at += n;
    }
    for (t, _) in terms {
        out.extend_from_slice(t);
    }
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Where a table's parts lie in its buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TermTable {
    terms: usize,
    term_off_at: usize,
    post_off_at: usize,
    term_bytes_at: usize,
    postings_at: usize,
    entry: usize,
}

impl TermTable {
    /// Reads the layout of a table of `terms` terms, `term_bytes` term
    /// bytes and `postings` postings of `entry` bytes starting at byte
    /// `at` of `b`; returns it and the byte just past its postings.
    /// Errors: a message when the sizes overflow or run past `b`, or an
    /// offset table does not ascend within bounds.
    pub(crate) fn open(
        b: &[u8],
        at: usize,
        terms: u64,
        term_bytes: u64,
        postings: u64,
        entry: usize,
    ) -> Result<(Self, usize), String> {
        let sizes = || -> Option<(usize, usize, usize, Self, usize)> {
            let terms = usize::try_from(terms).ok()?;
            let term_bytes = usize::try_from(term_bytes).ok()?;
            let postings = usize::try_from(postings).ok()?;
            let post_off_at = at.checked_add(terms.checked_add(1)?.checked_mul(8)?)?;
            let term_bytes_at = post_off_at.checked_add(terms.checked_add(1)?.checked_mul(8)?)?;
            let postings_at = term_bytes_at.checked_add(term_bytes)?.next_multiple_of(4);
            let end = postings_at.checked_add(postings.checked_mul(entry)?)?;
            let t = Self {
                terms,
                term_off_at: at,
                post_off_at,
                term_bytes_at,
                postings_at,
                entry,
            };
            Some((term_bytes, postings, end, t, terms))
        };
        let (term_bytes, postings, end, t, terms) =
            sizes().ok_or("the header gives impossible sizes")?;
        if end > b.len() {
            return Err(format!("{} bytes, the header needs {end}", b.len()));
        }
        let ascends = |at: usize, last: usize| {
            let mut prev = 0u64;
            (0..=terms).all(|i| {
                let v = u64_at(b, at + i * 8);
                let ok = v >= prev && v <= last as u64;
                prev = v;
                ok
            }) && u64_at(b, at + terms * 8) == last as u64
        };
        if !ascends(t.term_off_at, term_bytes) || !ascends(t.post_off_at, postings) {
            return Err("offsets do not ascend within bounds".into());
        }
        Ok((t, end))
    }

    /// Distinct terms.
    pub(crate) fn terms(&self) -> usize {
        self.terms
    }

    fn term<'b>(&self, b: &'b [u8], i: usize) -> &'b [u8] {
        let s = u64_at(b, self.term_off_at + i * 8) as usize;
        let e = u64_at(b, self.term_off_at + (i + 1) * 8) as usize;
        &b[self.term_bytes_at + s..self.term_bytes_at + e]
    }

    /// The postings of `key` (indexes for [`TermTable::posting`]); empty
    /// when the table does not hold it.
    pub(crate) fn find(&self, b: &[u8], key: &[u8]) -> Range<usize> {
        let (mut lo, mut hi) = (0usize, self.terms);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.term(b, mid).cmp(key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => {
                    let s = u64_at(b, self.post_off_at + mid * 8) as usize;
                    let e = u64_at(b, self.post_off_at + (mid + 1) * 8) as usize;
                    return s..e;
                }
            }
        }
        0..0
    }

    /// The byte where posting `p` starts.
    pub(crate) fn posting(&self, p: usize) -> usize {
        self.postings_at + p * self.entry
    }
}
