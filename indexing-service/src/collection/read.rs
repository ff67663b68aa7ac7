//! The read path: points by id, count, scroll, dense search and keyword
//! (BM25) search over a snapshot of the segment list, and the hydration of
//! hits with the parts asked for.

use super::*;
use crate::index::payload_index::FilterBits;

/// Most segments a search may visit and still count as short
/// ([`Collection::is_short_search`]).
pub const SHORT_SEARCH_SEGMENTS: usize = 16;
/// Most appendable points (scanned exactly) a search may meet and still
/// count as short: about 40 µs of 384-dimensional dot products.
pub const SHORT_SEARCH_SCAN_POINTS: usize = 2_000;

impl Collection {
    pub(super) fn extra_at(&self, st: &State, loc: Loc) -> Result<Extra> {
        match st.segments.get(&loc.seg) {
            Some(Seg::Mutable(m)) => Ok(m.data.read().extra(loc.off as usize)),
            Some(Seg::Sealed(s, _)) => Ok(s.extra(loc.off as usize)?),
            None => Err(StorageError::Corrupt {
                path: self.inner.dir.clone(),
                message: "id map points at a missing segment".into(),
            }
            .into()),
        }
    }

    pub(super) fn point_at(&self, st: &State, id: PointId, loc: Loc) -> Result<StoredPoint> {
        let extra = self.extra_at(st, loc)?;
        let dim = self.inner.config.dimension;
        let vector = match st.segments.get(&loc.seg) {
            Some(Seg::Mutable(m)) => {
                m.data.read().vectors[loc.off as usize * dim..(loc.off as usize + 1) * dim].to_vec()
            }
            Some(Seg::Sealed(s, _)) => s.vector(loc.off as usize).to_vec(),
            None => unreachable!("checked by extra_at"),
        };
        Ok(StoredPoint {
            id,
            vector,
            payload: extra.payload,
            content: extra.content,
        })
    }

    /// The segment a slot lives in, and the current location of `id`
    /// (under a brief read lock).
    pub(super) fn resolve(&self, id: &PointId) -> Option<(Loc, Seg)> {
        let st = self.inner.state.read();
        let loc = *st.ids.get(id)?;
        st.segments.get(&loc.seg).map(|s| (loc, s.clone()))
    }

    /// Up to `limit` entries of the id map after `after`, each with its
    /// segment, copied out under a brief read lock.
    pub(super) fn id_chunk(
        &self,
        after: Option<&PointId>,
        limit: usize,
    ) -> Vec<(PointId, Loc, Seg)> {
        let st = self.inner.state.read();
        let start = match after {
            Some(c) => Bound::Excluded(c.clone()),
            None => Bound::Unbounded,
        };
        st.ids
            .range((start, Bound::Unbounded))
            .take(limit)
            .filter_map(|(id, loc)| {
                st.segments
                    .get(&loc.seg)
                    .map(|s| (id.clone(), *loc, s.clone()))
            })
            .collect()
    }

    /// Reads a slot with no collection lock held: None when the slot was
    /// deleted (or replaced) since it was looked up. Sealed slots never
    /// change; vacuum leaves the old segment's files intact while anyone
    /// holds it.
    /// Only the `parts` asked for are copied (the others come back empty).
    pub(super) fn read_slot(
        &self,
        seg: &Seg,
        off: u32,
        parts: ReadParts,
    ) -> Result<Option<(Extra, Vec<f32>)>> {
        let dim = self.inner.config.dimension;
        let o = off as usize;
        match seg {
            Seg::Mutable(m) => {
                let d = m.data.read();
                if d.deleted[o] {
                    return Ok(None);
                }
                let v = if parts.vector {
                    d.vectors[o * dim..(o + 1) * dim].to_vec()
                } else {
                    Vec::new()
                };
                let e = if parts.payload {
                    d.extra(o)
                } else {
                    Extra::default()
                };
                Ok(Some((e, v)))
            }
            Seg::Sealed(s, _) => {
                if s.deleted.get(o) {
                    return Ok(None);
                }
                let v = if parts.vector {
                    s.vector(o).to_vec()
                } else {
                    Vec::new()
                };
                let e = if parts.payload {
                    s.extra(o)?
                } else {
                    Extra::default()
                };
                Ok(Some((e, v)))
            }
        }
    }

    /// The current value of `id`, found at `seg`/`off` or, when that slot
    /// was replaced meanwhile, wherever the id map points now. None when
    /// the point was deleted.
    pub(super) fn read_point(
        &self,
        id: &PointId,
        mut seg: Seg,
        mut off: u32,
        parts: ReadParts,
    ) -> Result<Option<(Extra, Vec<f32>)>> {
        // A slot is replaced only by a newer write; a few rounds always
        // suffice unless the point is rewritten continuously.
        for _ in 0..8 {
            if let Some(x) = self.read_slot(&seg, off, parts)? {
                return Ok(Some(x));
            }
            match self.resolve(id) {
                Some((loc, s)) => {
                    seg = s;
                    off = loc.off;
                }
                None => return Ok(None),
            }
        }
        // Still moving: read it under the lock once.
        let st = self.inner.state.read();
        match st.ids.get(id) {
            Some(&loc) => {
                let p = self.point_at(&st, id.clone(), loc)?;
                let extra = if parts.payload {
                    Extra {
                        payload: p.payload,
                        content: p.content,
                    }
                } else {
                    Extra::default()
                };
                let vector = if parts.vector { p.vector } else { Vec::new() };
                Ok(Some((extra, vector)))
            }
            None => Ok(None),
        }
    }

    /// Points by id with every part; missing ids are skipped. See
    /// [`Collection::get_parts`].
    pub fn get(&self, ids: &[PointId]) -> Result<Vec<StoredPoint>> {
        self.get_parts(ids, ReadParts::ALL)
    }

    /// Points by id, with the `parts` asked for (the others left empty);
    /// missing ids are skipped. The id map is read under a brief lock, the
    /// points after it is released.
    pub fn get_parts(&self, ids: &[PointId], parts: ReadParts) -> Result<Vec<StoredPoint>> {
        let found: Vec<(PointId, Loc, Seg)> = {
            let st = self.inner.state.read();
            ids.iter()
                .filter_map(|id| {
                    let loc = *st.ids.get(id)?;
                    st.segments
                        .get(&loc.seg)
                        .map(|s| (id.clone(), loc, s.clone()))
                })
                .collect()
        };
        let mut out = Vec::with_capacity(found.len());
        for (id, loc, seg) in found {
            if let Some((extra, vector)) = self.read_point(&id, seg, loc.off, parts)? {
                out.push(StoredPoint {
                    id,
                    vector,
                    payload: extra.payload,
                    content: extra.content,
                });
            }
        }
        Ok(out)
    }

    /// Points (matching the filter), counted. Without a filter, the size of
    /// the id map; with one, a chunked walk that never holds `state` while
    /// evaluating.
    pub fn count(&self, filter: Option<&Filter>) -> Result<usize> {
        let Some(f) = filter else {
            return Ok(self.inner.state.read().ids.len());
        };
        let f = filter::CompiledFilter::new(f).map_err(CollectionError::InvalidFilter)?;
        let mut n = 0;
        let mut cursor: Option<PointId> = None;
        loop {
            let chunk = self.id_chunk(cursor.as_ref(), SCAN_CHUNK);
            let Some(last) = chunk.last() else {
                return Ok(n);
            };
            cursor = Some(last.0.clone());
            for (id, loc, seg) in chunk {
                if let Some((e, _)) = self.read_point(&id, seg, loc.off, ReadParts::PAYLOAD)? {
                    if f.matches(e.payload.as_ref()) {
                        n += 1;
                    }
                }
            }
        }
    }

    /// A page of points in id order after `cursor`; the next cursor is the
    /// last id returned when more may follow. Stable under concurrent
    /// writes: a point present for the whole scroll is returned once.
    /// Walks the id map in chunks; `state` is never held while reading.
    pub fn scroll(
        &self,
        filter: Option<&Filter>,
        limit: usize,
        cursor: Option<&PointId>,
    ) -> Result<(Vec<StoredPoint>, Option<PointId>)> {
        self.scroll_parts(filter, limit, cursor, ReadParts::ALL)
    }

    /// [`Collection::scroll`] with only the `parts` asked for copied out
    /// (a filter still reads the payload to decide, then drops it).
    pub fn scroll_parts(
        &self,
        filter: Option<&Filter>,
        limit: usize,
        cursor: Option<&PointId>,
        parts: ReadParts,
    ) -> Result<(Vec<StoredPoint>, Option<PointId>)> {
        let filter = filter
            .map(filter::CompiledFilter::new)
            .transpose()
            .map_err(CollectionError::InvalidFilter)?;
        let mut out: Vec<StoredPoint> = Vec::new();
        let mut after: Option<PointId> = cursor.cloned();
        loop {
            let want = if filter.is_some() {
                SCAN_CHUNK
            } else {
                (limit - out.len() + 1).min(SCAN_CHUNK)
            };
            let chunk = self.id_chunk(after.as_ref(), want);
            let Some(last) = chunk.last() else {
                return Ok((out, None));
            };
            after = Some(last.0.clone());
            let read = ReadParts {
                vector: parts.vector,
                payload: parts.payload || filter.is_some(),
            };
            for (id, loc, seg) in chunk {
                let Some((e, vector)) = self.read_point(&id, seg, loc.off, read)? else {
                    continue;
                };
                if !filter
                    .as_ref()
                    .is_none_or(|f| f.matches(e.payload.as_ref()))
                {
                    continue;
                }
                if out.len() == limit {
                    let next = out.last().map(|p| p.id.clone());
                    return Ok((out, next));
                }
                let e = if parts.payload { e } else { Extra::default() };
                out.push(StoredPoint {
                    id,
                    vector,
                    payload: e.payload,
                    content: e.content,
                });
            }
        }
    }

    /// Whether a search with `params` (`filtered`: with a payload filter)
    /// is short enough to run on the caller's thread, even an async
    /// runtime's: not exact, no filter, every sealed segment indexed, at
    /// most [`SHORT_SEARCH_SEGMENTS`] segments and at most
    /// [`SHORT_SEARCH_SCAN_POINTS`] appendable points to scan. Such a
    /// search is one graph or list traversal per segment (tens to a few
    /// hundred microseconds), less than the hand-off to a blocking thread
    /// costs; the answer is the same wherever it runs.
    pub fn is_short_search(&self, params: &SearchParams, filtered: bool) -> bool {
        if params.exact || filtered {
            return false;
        }
        let st = self.inner.state.read();
        st.segments.len() <= SHORT_SEARCH_SEGMENTS
            && st.segments.values().all(|s| match s {
                Seg::Sealed(_, idx) => idx.vector.is_some(),
                Seg::Mutable(m) => m.live() <= SHORT_SEARCH_SCAN_POINTS,
            })
    }

    /// Top-k over every segment with default search parameters.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<ScoredPoint>> {
        self.search_with(query, k, filter, SearchParams::default())
    }

    /// Top-k over every segment: sealed ones through their index (exact
    /// with `params.exact`), the appendable one by scan; deleted points
    /// skipped, the filter applied during traversal. Scores: similarity
    /// (cosine, dot) or distance (euclidean).
    pub fn search_with(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        params: SearchParams,
    ) -> Result<Vec<ScoredPoint>> {
        self.search_parts(query, k, filter, params, ReadParts::ALL)
    }

    /// [`Collection::search_with`], copying only the `parts` asked for
    /// into the hits (the others left empty).
    pub fn search_parts(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        params: SearchParams,
        parts: ReadParts,
    ) -> Result<Vec<ScoredPoint>> {
        let c = &self.inner.config;
        // Errors in the order users meet them: the vector's shape, the
        // filter, then the vector's magnitude and direction.
        self.check_query_shape(query)?;
        let raw = filter;
        let filter = filter
            .map(filter::CompiledFilter::new)
            .transpose()
            .map_err(CollectionError::InvalidFilter)?;
        let filter = filter.as_ref();
        let q = self.prepare_query(query)?;
        let segs: Vec<Seg> = self.inner.state.read().segments.values().cloned().collect();
        let mut top: TopK<(SegmentId, u32)> = TopK::new(k);
        for s in &segs {
            match s {
                Seg::Sealed(s, idx) => {
                    // What the payload indexes know of the filter here: the
                    // matching slots exactly (no payload read at all), or a
                    // superset to check on the payload, or nothing.
                    let known = match raw {
                        Some(f) => idx.payload.filter_bits(f),
                        None => FilterBits::Unknown,
                    };
                    let (bits, exact) = match &known {
                        FilterBits::Exact(b) => (Some(b), true),
                        FilterBits::Superset(b) => (Some(b), false),
                        FilterBits::Unknown => (None, false),
                    };
                    let accept = |off: u32| {
                        !s.deleted.get(off as usize)
                            && bits.is_none_or(|b| b.get(off as usize))
                            && (exact
                                || filter.is_none_or(|f| {
                                    s.payload(off as usize).is_ok_and(|p| f.matches(p.as_ref()))
                                }))
                    };
                    // The matching slots as a list, when few enough that an
                    // exact scan of them may be the plan.
                    let rows: Option<Vec<u32>> = bits
                        .filter(|b| exact && b.count() <= s.count.max(1) * 3 / 4)
                        .map(|b| b.ones().filter(|&o| !s.deleted.get(o as usize)).collect());
                    let hits = search_segment(
                        idx.vector.as_deref(),
                        &c.index,
                        c.metric,
                        s.vectors(),
                        c.dimension,
                        &q,
                        k,
                        params,
                        filter.is_some(),
                        &accept,
                        rows.as_deref(),
                    );
                    for (off, sc) in hits {
                        top.push(sc, (s.id, off));
                    }
                }
                Seg::Mutable(m) => {
                    let d = m.data.read();
                    let accept = |off: u32| {
                        !d.deleted[off as usize]
                            && filter.is_none_or(|f| f.matches(d.payload(off as usize).as_ref()))
                    };
                    for (off, sc) in
                        index::exact_scan(c.metric, &d.vectors, c.dimension, &q, k, &accept)
                    {
                        top.push(sc, (m.id, off));
                    }
                }
            }
        }
        let metric = c.metric;
        self.hydrate(&segs, top.into_sorted(), parts, |sc| {
            index::user_score(metric, sc)
        })
    }

    /// A query vector checked (dimension, finite components, magnitude)
    /// and, under cosine, normalised. Errors: `DimensionMismatch`,
    /// `InvalidVector`.
    pub(super) fn prepare_query(&self, query: &[f32]) -> Result<Vec<f32>> {
        let c = &self.inner.config;
        self.check_query_shape(query)?;
        let mut q = query.to_vec();
        check_magnitude(c.metric, &q, "the query")?;
        if c.metric == Metric::Cosine && !index::distance::normalize(&mut q) {
            return Err(CollectionError::InvalidVector(
                "a zero query vector has no direction under cosine".into(),
            ));
        }
        Ok(q)
    }

    /// A query vector's dimension and finite components. Errors:
    /// `DimensionMismatch`, `InvalidVector`.
    fn check_query_shape(&self, query: &[f32]) -> Result<()> {
        let c = &self.inner.config;
        if query.len() != c.dimension {
            return Err(CollectionError::DimensionMismatch {
                subject: "the query vector".into(),
                expected: c.dimension,
                got: query.len(),
            });
        }
        if query.iter().any(|x| !x.is_finite()) {
            return Err(CollectionError::InvalidVector(
                "the query has a component that is not a finite 32-bit float (NaN, infinite, or beyond ±3.4e38)".into(),
            ));
        }
        Ok(())
    }

    /// The hits `top` ((segment, slot), internal score), best first, as
    /// points with the `parts` asked for; a point met twice (replaced
    /// while the search ran) is kept once, at its better rank. `score`
    /// turns an internal score into the user's. Errors: `Storage` when a
    /// sealed record cannot be read.
    pub(super) fn hydrate(
        &self,
        segs: &[Seg],
        top: Vec<((SegmentId, u32), f32)>,
        parts: ReadParts,
        score: impl Fn(f32) -> f32,
    ) -> Result<Vec<ScoredPoint>> {
        let dim = self.inner.config.dimension;
        let by_id: BTreeMap<SegmentId, &Seg> = segs
            .iter()
            .map(|s| match s {
                Seg::Sealed(x, _) => (x.id, s),
                Seg::Mutable(x) => (x.id, s),
            })
            .collect();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for ((sid, off), sc) in top {
            let o = off as usize;
            let (id, vector, extra) = match by_id[&sid] {
                Seg::Sealed(s, _) => (
                    s.ids[o].clone(),
                    if parts.vector {
                        s.vector(o).to_vec()
                    } else {
                        Vec::new()
                    },
                    if parts.payload {
                        s.extra(o)?
                    } else {
                        Extra::default()
                    },
                ),
                Seg::Mutable(m) => {
                    let d = m.data.read();
                    (
                        d.ids[o].clone(),
                        if parts.vector {
                            d.vectors[o * dim..(o + 1) * dim].to_vec()
                        } else {
                            Vec::new()
                        },
                        if parts.payload {
                            d.extra(o)
                        } else {
                            Extra::default()
                        },
                    )
                }
            };
            if seen.insert(id.clone()) {
                out.push(ScoredPoint {
                    point: StoredPoint {
                        id,
                        vector,
                        payload: extra.payload,
                        content: extra.content,
                    },
                    score: score(sc),
                });
            }
        }
        Ok(out)
    }

    /// Top-`k` by BM25 over the points' `content`, best first; scores are
    /// BM25 (≥ 0, see `text::bm25`) with the collection-wide statistics of
    /// the live points, so they do not depend on the segmentation. Only
    /// points holding a query term are hits (fewer than `k` when fewer
    /// do; none for a query without a token). `params` overrides the
    /// collection's `k1` / `b`; `filter` is applied to each scored point.
    ///
    /// Errors: `NoTextIndex` when the collection has no text index;
    /// `InvalidFilter`; `Storage` when a record cannot be read.
    pub fn search_text(
        &self,
        query: &str,
        k: usize,
        filter: Option<&Filter>,
        params: Option<Bm25Params>,
        parts: ReadParts,
    ) -> Result<Vec<ScoredPoint>> {
        self.search_text_among(query, k, filter, params, parts, None)
    }

    /// [`Collection::search_text`] over the points whose ids are in
    /// `only` (all when None); the statistics stay the collection's.
    pub(crate) fn search_text_among(
        &self,
        query: &str,
        k: usize,
        filter: Option<&Filter>,
        params: Option<Bm25Params>,
        parts: ReadParts,
        only: Option<&HashSet<PointId>>,
    ) -> Result<Vec<ScoredPoint>> {
        let c = &self.inner.config;
        let Some(tok) = c.tokenizer() else {
            return Err(CollectionError::NoTextIndex(c.name.clone()));
        };
        let params = params.unwrap_or(Bm25Params {
            k1: c.text_index.k1,
            b: c.text_index.b,
        });
        let filter = filter
            .map(filter::CompiledFilter::new)
            .transpose()
            .map_err(CollectionError::InvalidFilter)?;
        let filter = filter.as_ref();
        let terms = QueryTerms::new(tok.tokenize(query));
        if terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let segs: Vec<Seg> = self.inner.state.read().segments.values().cloned().collect();
        // Two passes: statistics over every segment, then scores. An
        // appendable segment's data is read-locked in each pass alone (one
        // `SegmentData` lock at a time); a write landing between the two
        // passes is seen by the second only, as by a search just after it.
        let mut stats = bm25::Stats::new(&terms);
        for s in &segs {
            match s {
                Seg::Sealed(s, _) => {
                    if let Some(t) = &s.text {
                        stats.add_segment(
                            t,
                            s.deleted.ones().map(|d| d as u32),
                            &|d| s.deleted.get(d as usize),
                            &terms,
                        );
                    }
                }
                Seg::Mutable(m) => {
                    let d = m.data.read();
                    let deleted = d
                        .deleted
                        .iter()
                        .enumerate()
                        .filter(|(_, x)| **x)
                        .map(|(i, _)| i as u32);
                    stats.add_segment(&d.text, deleted, &|o| d.deleted[o as usize], &terms);
                }
            }
        }
        let mut top: TopK<(SegmentId, u32)> = TopK::new(k);
        for s in &segs {
            match s {
                Seg::Sealed(s, _) => {
                    let Some(t) = &s.text else { continue };
                    let accept = |off: u32| {
                        !s.deleted.get(off as usize)
                            && only.is_none_or(|o| o.contains(&s.ids[off as usize]))
                            && filter.is_none_or(|f| {
                                s.payload(off as usize).is_ok_and(|p| f.matches(p.as_ref()))
                            })
                    };
                    bm25::score_segment(t, &terms, &stats, params, &accept, &mut |off, sc| {
                        top.push(sc, (s.id, off))
                    });
                }
                Seg::Mutable(m) => {
                    let d = m.data.read();
                    let accept = |off: u32| {
                        !d.deleted[off as usize]
                            && only.is_none_or(|o| o.contains(&d.ids[off as usize]))
                            && filter.is_none_or(|f| f.matches(d.payload(off as usize).as_ref()))
                    };
                    bm25::score_segment(
                        &d.text,
                        &terms,
                        &stats,
                        params,
                        &accept,
                        &mut |off, sc| top.push(sc, (m.id, off)),
                    );
                }
            }
        }
        self.hydrate(&segs, top.into_sorted(), parts, |sc| sc)
    }
}
