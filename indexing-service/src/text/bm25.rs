//! BM25 ranking over segments, with the statistics merged first.
//!
//! For a query with terms `t` (each with its number of repeats `q_t` in
//! the query), a document `d` of `|d|` tokens scores
//!
//! `Σ_t q_t · idf(t) · tf(t, d) / (tf(t, d) + k1 · (1 − b + b · |d| / avgdl))`
//!
//! with `idf(t) = ln(1 + (N − n_t + 0.5) / (n_t + 0.5))`, where `N` is the
//! number of live documents (points whose text has at least one token),
//! `n_t` those holding `t` and `avgdl` their mean length. This is Lucene's
//! BM25 (Robertson & Zaragoza 2009 with Lucene's non-negative idf and
//! without the constant `k1 + 1` factor; the "lucene" variant in Kamphuis
//! et al. 2020, and `bm25s`'s `method="lucene"`). Scores are ≥ 0; a
//! document holding no query term is not a hit.
//!
//! `N`, `avgdl` and `n_t` are summed over every segment with deleted
//! slots left out ([`Stats::add_segment`]), so scores do not depend on
//! the segmentation.

use super::inverted::TextSource;

/// BM25 parameters of one query (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25Params {
    pub k1: f32,
    pub b: f32,
}

/// A query's distinct terms with their repeats, sorted by term.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryTerms(pub Vec<(String, u32)>);

impl QueryTerms {
    /// Groups `tokens` (repeats kept) into distinct terms.
    pub fn new(mut tokens: Vec<String>) -> Self {
        tokens.sort_unstable();
        let mut out: Vec<(String, u32)> = Vec::new();
        for t in tokens {
            match out.last_mut() {
                Some((last, n)) if *last == t => *n += 1,
                _ => out.push((t, 1)),
            }
        }
        Self(out)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Collection-wide statistics for one query: live documents, their
/// tokens, and each query term's document frequency.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub docs: u64,
    pub tokens: u64,
    /// Live documents holding each term of the query, in the order of
    /// [`QueryTerms`].
    pub df: Vec<u64>,
}

impl Stats {
    /// Empty statistics for `terms`.
    pub fn new(terms: &QueryTerms) -> Self {
        Self {
            docs: 0,
            tokens: 0,
            df: vec![0; terms.0.len()],
        }
    }

    /// Adds one segment's live documents: `deleted_slots` lists its
    /// deleted slots (each once), `is_deleted` answers for one slot.
    pub fn add_segment(
        &mut self,
        text: &dyn TextSource,
        deleted_slots: impl Iterator<Item = u32>,
        is_deleted: &dyn Fn(u32) -> bool,
        terms: &QueryTerms,
    ) {
        let (mut docs, mut tokens) = text.totals();
        for d in deleted_slots {
            if (d as usize) < text.slots() {
                let l = text.doc_len(d);
                docs -= u64::from(l > 0);
                tokens -= u64::from(l);
            }
        }
        self.docs += docs;
        self.tokens += tokens;
        for (i, (t, _)) in terms.0.iter().enumerate() {
            let mut n = 0u64;
            text.postings(t, &mut |d, _| n += u64::from(!is_deleted(d)));
            self.df[i] += n;
        }
    }

    /// The idf of each query term (0 for a term no live document holds).
    pub fn idf(&self) -> Vec<f64> {
        let n = self.docs as f64;
        self.df
            .iter()
            .map(|&df| {
                if df == 0 {
                    0.0
                } else {
                    let df = df as f64;
                    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
                }
            })
            .collect()
    }
}

/// Scores one segment's live documents holding a query term and calls
/// `hit(slot, score)` for those `accept` takes (slots ascending). `stats`
/// are the collection-wide ones. Cost: one pass over the query terms'
/// postings, plus a dense accumulator of one f64 per slot.
pub fn score_segment(
    text: &dyn TextSource,
    terms: &QueryTerms,
    stats: &Stats,
    params: Bm25Params,
    accept: &dyn Fn(u32) -> bool,
    hit: &mut dyn FnMut(u32, f32),
) {
    if stats.docs == 0 || text.slots() == 0 {
        return;
    }
    let idf = stats.idf();
    let avgdl = stats.tokens as f64 / stats.docs as f64;
    let (k1, b) = (params.k1 as f64, params.b as f64);
    let mut acc = vec![0f64; text.slots()];
    let mut touched: Vec<u32> = Vec::new();
    for (i, (t, q)) in terms.0.iter().enumerate() {
        if idf[i] == 0.0 {
            continue;
        }
        let w = idf[i] * f64::from(*q);
        text.postings(t, &mut |d, tf| {
            let tf = f64::from(tf);
            let norm = k1 * (1.0 - b + b * f64::from(text.doc_len(d)) / avgdl);
            let a = &mut acc[d as usize];
            if *a == 0.0 {
                touched.push(d);
            }
            *a += w * tf / (tf + norm);
        });
    }
    touched.sort_unstable();
    for d in touched {
        let s = acc[d as usize];
        if s > 0.0 && accept(d) {
            hit(d, s as f32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::inverted::MutableText;
    use super::super::Tokenizer;
    use super::*;

    /// The formula by hand on a three-document corpus.
    #[test]
    fn matches_the_formula() {
        let tok = Tokenizer::new(None);
        let docs = ["cat sat on the mat", "dog and cat", "bird"];
        let mut m = MutableText::default();
        for d in docs {
            m.push(&tok, Some(d));
        }
        let terms = QueryTerms::new(tok.tokenize("cat cat mat"));
        assert_eq!(terms.0, [("cat".to_string(), 2), ("mat".to_string(), 1)]);
        let mut stats = Stats::new(&terms);
        stats.add_segment(&m, std::iter::empty(), &|_| false, &terms);
        assert_eq!(
            (stats.docs, stats.tokens, stats.df.clone()),
            (3, 9, vec![2, 1])
        );
        let p = Bm25Params { k1: 1.2, b: 0.75 };
        let mut hits = Vec::new();
        score_segment(&m, &terms, &stats, p, &|_| true, &mut |d, s| {
            hits.push((d, s))
        });
        let avgdl = 3.0f64;
        let idf = |n: f64| (1.0 + (3.0 - n + 0.5) / (n + 0.5)).ln();
        let part = |tf: f64, dl: f64| tf / (tf + 1.2 * (0.25 + 0.75 * dl / avgdl));
        let d0 = 2.0 * idf(2.0) * part(1.0, 5.0) + idf(1.0) * part(1.0, 5.0);
        let d1 = 2.0 * idf(2.0) * part(1.0, 3.0);
        assert_eq!(hits.len(), 2);
        assert!((hits[0].1 as f64 - d0).abs() < 1e-6, "{hits:?} {d0}");
        assert!((hits[1].1 as f64 - d1).abs() < 1e-6);
        // Deleting document 2 ("bird") changes N and avgdl.
        let mut s2 = Stats::new(&terms);
        s2.add_segment(&m, [2u32].into_iter(), &|d| d == 2, &terms);
        assert_eq!((s2.docs, s2.tokens), (2, 8));
    }
}
