//! Payload indexes of one sealed segment: for an indexed field (a dotted
//! key, as in filters), which slots hold which values. They answer filter
//! conditions without reading any payload, and give a filter's exact
//! number of matches before a search is planned.
//!
//! What holds:
//! - An index answers a condition exactly as the filter evaluator does on
//!   the payload (`index::filter`): values are found at the key the same
//!   way (arrays fan out), strings and booleans match only their own type,
//!   and numbers compare by exact value. A `keyword` or `uuid` index holds
//!   every string at the key, a `bool` index every boolean, an `integer`
//!   or `float` index every number (integers and floats alike, exactly), so
//!   no value the evaluator could match is missing from it.
//! - A condition an index cannot answer (a type it does not hold,
//!   `match.text`, an unindexed key) is checked on the payload; see
//!   [`FieldIndexes::filter_bits`].
//!
//! File `pidx-<hex of the field name>.bin` in the segment directory
//! (listed and checksummed in `meta.json` like every segment file),
//! little-endian:
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic `VDBPIDX1` |
//! | 8..16 | u64: the field type (0 keyword, 1 integer, 2 float, 3 bool, 4 uuid) |
//! | 16..24 | u64: slots of the segment |
//! | 24..32 | u64: slots holding at least one indexed value |
//! | 32..40 | u64: `keys` (terms) or `entries` (numbers) |
//! | 40..48 | u64: `postings` (terms) or 0 (numbers) |
//! | 48..56 | u64: term bytes (terms) or 0 |
//! | 56..64 | 0 |
//! | terms | `keys + 1` × u64 term offsets, `keys + 1` × u64 posting offsets, term bytes (sorted), zeros to a multiple of 4, `postings` × u32 slots (ascending per term) |
//! | numbers | `entries` × 32 bytes sorted by value: u64 kind (0 integer, 1 float), 16 bytes value (i128, or f64 bits then 8 zeros), u32 slot, 4 zeros |

use super::filter::{lookup, Bounds, Num};
use crate::storage::codec::Payload;
use crate::text::term_table::{self, u32_at, u64_at, TermTable};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::wire::indexing::{Condition, FieldCondition, Filter, Match};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"VDBPIDX1";
const HEADER: usize = 64;
const ENTRY: usize = 32;

/// What a payload index holds, as in Qdrant's `field_schema`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFieldType {
    /// Strings: `match` on a string, `match.any` of strings.
    Keyword,
    /// Numbers: `match` on a number, `match.any` of numbers, `range`.
    Integer,
    /// Numbers, as `integer`.
    Float,
    /// Booleans: `match` on a boolean.
    Bool,
    /// Strings (UUIDs), as `keyword`.
    Uuid,
}

impl PayloadFieldType {
    fn code(self) -> u64 {
        match self {
            Self::Keyword => 0,
            Self::Integer => 1,
            Self::Float => 2,
            Self::Bool => 3,
            Self::Uuid => 4,
        }
    }
    fn from_code(c: u64) -> Option<Self> {
        Some(match c {
            0 => Self::Keyword,
            1 => Self::Integer,
            2 => Self::Float,
            3 => Self::Bool,
            4 => Self::Uuid,
            _ => return None,
        })
    }
    fn numeric(self) -> bool {
        matches!(self, Self::Integer | Self::Float)
    }
}

/// The file name of the index of `field`.
pub fn file_name(field: &str) -> String {
    let hex: String = field.bytes().map(|b| format!("{b:02x}")).collect();
    format!("pidx-{hex}.bin")
}

/// The field a file name from [`file_name`] stands for.
pub fn field_of(file: &str) -> Option<String> {
    let hex = file.strip_prefix("pidx-")?.strip_suffix(".bin")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// A number in exact form, ordered exactly (JSON has no NaN).
fn num_of(v: &Value) -> Option<Num> {
    match v {
        Value::Number(n) => Some(Num::of(n)),
        _ => None,
    }
}

fn num_cmp(a: &Num, b: &Num) -> Ordering {
    a.cmp(*b).unwrap_or(Ordering::Equal)
}

/// The term a string or boolean is filed under (None for other values).
fn term_of(ty: PayloadFieldType, v: &Value) -> Option<Vec<u8>> {
    match (ty, v) {
        (PayloadFieldType::Keyword | PayloadFieldType::Uuid, Value::String(s)) => {
            Some(s.as_bytes().to_vec())
        }
        (PayloadFieldType::Bool, Value::Bool(b)) => Some(vec![u8::from(*b)]),
        _ => None,
    }
}

/// Builds the index file of `field` of type `ty` over `slots` payloads
/// (`payload(i)` of slot `i`, borrowed or decoded; None: no payload).
pub fn build<P: std::borrow::Borrow<Payload>>(
    ty: PayloadFieldType,
    field: &str,
    slots: usize,
    payload: impl Fn(usize) -> Option<P>,
) -> Vec<u8> {
    let mut covered = 0u64;
    let mut out = Vec::new();
    let header = |out: &mut Vec<u8>, covered: u64, a: u64, b: u64, c: u64| {
        out.extend_from_slice(MAGIC);
        for v in [ty.code(), slots as u64, covered, a, b, c, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    };
    if ty.numeric() {
        let mut entries: Vec<(Num, u32)> = Vec::new();
        for slot in 0..slots {
            let Some(p) = payload(slot) else { continue };
            let mut vals = Vec::new();
            lookup(p.borrow(), field.split('.'), &mut vals);
            let before = entries.len();
            for v in &vals {
                if let Some(n) = num_of(v) {
                    entries.push((n, slot as u32));
                }
            }
            covered += u64::from(entries.len() > before);
        }
        entries.sort_by(|a, b| num_cmp(&a.0, &b.0).then(a.1.cmp(&b.1)));
        header(&mut out, covered, entries.len() as u64, 0, 0);
        for (n, slot) in entries {
            let (kind, bytes) = match n {
                Num::Int(i) => (0u64, i.to_le_bytes()),
                Num::Float(f) => {
                    let mut b = [0u8; 16];
                    b[..8].copy_from_slice(&f.to_bits().to_le_bytes());
                    (1, b)
                }
            };
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&bytes);
            out.extend_from_slice(&slot.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
        }
        return out;
    }
    let mut terms: BTreeMap<Vec<u8>, Vec<u32>> = BTreeMap::new();
    for slot in 0..slots {
        let Some(p) = payload(slot) else { continue };
        let mut vals = Vec::new();
        lookup(p.borrow(), field.split('.'), &mut vals);
        let mut any = false;
        for v in &vals {
            if let Some(t) = term_of(ty, v) {
                let list = terms.entry(t).or_default();
                if list.last() != Some(&(slot as u32)) {
                    list.push(slot as u32);
                }
                any = true;
            }
        }
        covered += u64::from(any);
    }
    let postings: usize = terms.values().map(Vec::len).sum();
    let term_bytes: usize = terms.keys().map(Vec::len).sum();
    header(
        &mut out,
        covered,
        terms.len() as u64,
        postings as u64,
        term_bytes as u64,
    );
    term_table::write(&mut out, terms.iter().map(|(t, p)| (t.as_slice(), p.len())));
    for p in terms.values() {
        for s in p {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }
    out
}

/// One field's index over its file's bytes (memory-mapped or owned).
#[derive(Clone)]
pub struct FieldIndex {
    bytes: Arc<dyn AsRef<[u8]> + Send + Sync>,
    pub ty: PayloadFieldType,
    slots: usize,
    covered: u64,
    /// Numeric entries (0 for terms).
    len: usize,
    /// The terms of strings and booleans (None for numbers).
    table: Option<TermTable>,
}

impl std::fmt::Debug for FieldIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldIndex")
            .field("ty", &self.ty)
            .field("slots", &self.slots)
            .field("covered", &self.covered)
            .finish()
    }
}

impl FieldIndex {
    /// Reads the layout of `bytes` for a segment of `slots` slots.
    /// Errors: a message saying what does not fit.
    pub fn open(bytes: Arc<dyn AsRef<[u8]> + Send + Sync>, slots: usize) -> Result<Self, String> {
        let b: &[u8] = (*bytes).as_ref();
        if b.len() < HEADER || &b[..8] != MAGIC {
            return Err("not a payload index (bad magic or too short)".into());
        }
        let h = |i: usize| u64_at(b, 8 + i * 8);
        let ty = PayloadFieldType::from_code(h(0)).ok_or("unknown payload index type")?;
        if h(1) != slots as u64 {
            return Err(format!(
                "the payload index has {} slots, the segment {slots}",
                h(1)
            ));
        }
        let covered = h(2);
        let len = usize::try_from(h(3)).map_err(|_| "impossible size")?;
        let mut me = Self {
            bytes: bytes.clone(),
            ty,
            slots,
            covered,
            len,
            table: None,
        };
        if ty.numeric() {
            let end = len
                .checked_mul(ENTRY)
                .and_then(|x| x.checked_add(HEADER))
                .ok_or("impossible size")?;
            if end != b.len() {
                return Err(format!(
                    "the payload index has {} bytes, expected {end}",
                    b.len()
                ));
            }
            for i in 0..len {
                let at = HEADER + i * ENTRY;
                if u64_at(b, at) > 1 || u32_at(b, at + 24) as usize >= slots {
                    return Err(format!("entry {i} of the payload index is damaged"));
                }
            }
            return Ok(me);
        }
        let (table, end) = TermTable::open(b, HEADER, h(3), h(5), h(4), 4)
            .map_err(|e| format!("the payload index's term table: {e}"))?;
        if end != b.len() {
            return Err(format!(
                "the payload index has {} bytes, expected {end}",
                b.len()
            ));
        }
        me.len = 0;
        me.table = Some(table);
        Ok(me)
    }

    fn b(&self) -> &[u8] {
        (*self.bytes).as_ref()
    }

    /// Slots holding at least one indexed value (live or deleted).
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// Sets the bits of the slots holding `term`.
    fn term_slots(&self, term: &[u8], bits: &mut Bits) {
        let Some(t) = &self.table else { return };
        let b = self.b();
        for p in t.find(b, term) {
            let slot = u32_at(b, t.posting(p)) as usize;
            if slot < self.slots {
                bits.set(slot);
            }
        }
    }

    fn entry(&self, i: usize) -> (Num, u32) {
        let b = self.b();
        let at = HEADER + i * ENTRY;
        let v = if u64_at(b, at) == 0 {
            Num::Int(i128::from_le_bytes(b[at + 8..at + 24].try_into().unwrap()))
        } else {
            Num::Float(f64::from_bits(u64_at(b, at + 8)))
        };
        (v, u32_at(b, at + 24))
    }

    /// First entry index whose value is not below the bound (`ge`) or
    /// above it (`gt` = !ge).
    fn lower(&self, n: Num, inclusive: bool) -> usize {
        let (mut lo, mut hi) = (0usize, self.len);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let c = num_cmp(&self.entry(mid).0, &n);
            let before = if inclusive {
                c == Ordering::Less
            } else {
                c != Ordering::Greater
            };
            if before {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Sets the bits of the slots with a number in `[from, to)` entries.
    fn entries(&self, from: usize, to: usize, bits: &mut Bits) {
        for i in from..to.min(self.len) {
            bits.set(self.entry(i).1 as usize);
        }
    }

    /// Sets the bits of the slots with a number within `b`.
    fn range_slots(&self, b: &Bounds, bits: &mut Bits) {
        let mut from = 0;
        if let Some(g) = b.gte {
            from = from.max(self.lower(g, true));
        }
        if let Some(g) = b.gt {
            from = from.max(self.lower(g, false));
        }
        let mut to = self.len;
        if let Some(l) = b.lte {
            to = to.min(self.lower(l, false));
        }
        if let Some(l) = b.lt {
            to = to.min(self.lower(l, true));
        }
        if from < to {
            self.entries(from, to, bits);
        }
    }

    /// Sets the bits of the slots with a number equal to `n`.
    fn num_slots(&self, n: Num, bits: &mut Bits) {
        let from = self.lower(n, true);
        let to = self.lower(n, false);
        self.entries(from, to, bits);
    }

    /// The slots matching one value of a `match`, or None when this index
    /// does not hold that kind of value.
    fn match_value(&self, v: &Value, bits: &mut Bits) -> Option<()> {
        match (self.ty, v) {
            (PayloadFieldType::Keyword | PayloadFieldType::Uuid, Value::String(s)) => {
                self.term_slots(s.as_bytes(), bits)
            }
            (PayloadFieldType::Bool, Value::Bool(b)) => self.term_slots(&[u8::from(*b)], bits),
            (PayloadFieldType::Integer | PayloadFieldType::Float, Value::Number(n)) => {
                // Exact comparison: an integral float equals the integer.
                self.num_slots(Num::of(n), bits)
            }
            _ => return None,
        }
        Some(())
    }

    /// The slots meeting field condition `fc` (on this index's field), or
    /// None when the index cannot answer it exactly.
    fn condition(&self, fc: &FieldCondition) -> Option<Bits> {
        let mut bits = Bits::new(self.slots);
        match (&fc.r#match, &fc.range) {
            (Some(Match::Value(v)), None) => self.match_value(v, &mut bits)?,
            (Some(Match::Any { any }), None) => {
                for v in any {
                    self.match_value(v, &mut bits)?;
                }
            }
            (None, Some(r)) if self.ty.numeric() => self.range_slots(&Bounds::of(r), &mut bits),
            _ => return None,
        }
        Some(bits)
    }
}

/// A bitset over a segment's slots.
#[derive(Debug, Clone, PartialEq)]
pub struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    pub fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }
    pub fn full(len: usize) -> Self {
        let mut b = Self {
            words: vec![u64::MAX; len.div_ceil(64)],
            len,
        };
        b.trim();
        b
    }
    fn trim(&mut self) {
        if !self.len.is_multiple_of(64) {
            if let Some(w) = self.words.last_mut() {
                *w &= (1u64 << (self.len % 64)) - 1;
            }
        }
    }
    #[inline]
    pub fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        self.words[i / 64] >> (i % 64) & 1 == 1
    }
    pub fn and(&mut self, o: &Bits) {
        self.words
            .iter_mut()
            .zip(&o.words)
            .for_each(|(a, b)| *a &= b);
    }
    pub fn or(&mut self, o: &Bits) {
        self.words
            .iter_mut()
            .zip(&o.words)
            .for_each(|(a, b)| *a |= b);
    }
    pub fn and_not(&mut self, o: &Bits) {
        self.words
            .iter_mut()
            .zip(&o.words)
            .for_each(|(a, b)| *a &= !b);
    }
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
    /// The set bits, ascending.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(w, word)| {
            let mut bits = *word;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    (w * 64 + b) as u32
                })
            })
        })
    }
}

/// What the payload indexes know about a filter on one segment.
#[derive(Debug)]
pub enum FilterBits {
    /// Exactly the slots matching the filter (deleted ones not removed).
    Exact(Bits),
    /// A superset of the matching slots (the indexed `must` conditions);
    /// each still needs the filter checked on its payload.
    Superset(Bits),
    /// The indexes cannot narrow this filter.
    Unknown,
}

/// A sealed segment's payload indexes, by field.
#[derive(Debug, Clone, Default)]
pub struct FieldIndexes {
    pub by_field: BTreeMap<String, FieldIndex>,
    pub slots: usize,
}

impl FieldIndexes {
    fn exact(&self, f: &Filter) -> Option<Bits> {
        let cond = |c: &Condition| -> Option<Bits> {
            match c {
                Condition::Filter(f) => self.exact(f),
                Condition::Field(fc) => self.by_field.get(&fc.key)?.condition(fc),
                // An index holds one kind of value: it cannot tell a key
                // holding another kind from an empty one.
                Condition::IsEmpty { .. } | Condition::IsNull { .. } => None,
            }
        };
        let mut out = Bits::full(self.slots);
        for c in &f.must {
            out.and(&cond(c)?);
        }
        if !f.should.is_empty() {
            let mut any = Bits::new(self.slots);
            for c in &f.should {
                any.or(&cond(c)?);
            }
            out.and(&any);
        }
        for c in &f.must_not {
            out.and_not(&cond(c)?);
        }
        Some(out)
    }

    /// The slots of this segment that `f` can match, from the indexes
    /// alone: exact when every condition is on an indexed field of a kind
    /// its index holds, else a superset from the indexed top-level `must`
    /// conditions (nested filters in `must` that are wholly indexed count
    /// too), else unknown. Cost: the postings of the conditions answered.
    pub fn filter_bits(&self, f: &Filter) -> FilterBits {
        if self.by_field.is_empty() {
            return FilterBits::Unknown;
        }
        if let Some(b) = self.exact(f) {
            return FilterBits::Exact(b);
        }
        let mut out: Option<Bits> = None;
        for c in &f.must {
            let b = match c {
                Condition::Filter(f) => self.exact(f),
                Condition::Field(fc) => self.by_field.get(&fc.key).and_then(|i| i.condition(fc)),
                Condition::IsEmpty { .. } | Condition::IsNull { .. } => None,
            };
            if let Some(b) = b {
                match &mut out {
                    Some(o) => o.and(&b),
                    None => out = Some(b),
                }
            }
        }
        match out {
            Some(b) => FilterBits::Superset(b),
            None => FilterBits::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::filter::matches;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    fn payloads(n: usize, seed: u64) -> Vec<Option<Payload>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                if i % 17 == 0 {
                    return None;
                }
                let tag = ["a", "b", "c", "d"][rng.gen_range(0..4)];
                let num: Value = match rng.gen_range(0..5) {
                    0 => json!(rng.gen_range(-5..5) as f64 + 0.5),
                    1 => json!(rng.gen_range(-5..5) as f64),
                    2 => json!("7"),
                    3 => json!([rng.gen_range(-5..5), rng.gen_range(-5..5)]),
                    _ => json!(rng.gen_range(-5i64..5)),
                };
                let v = json!({"tag": tag, "n": num, "ok": rng.gen_bool(0.5),
                               "meta": {"tags": [tag, "x"]}});
                Some(v.as_object().unwrap().clone())
            })
            .collect()
    }

    fn open(ty: PayloadFieldType, field: &str, ps: &[Option<Payload>]) -> FieldIndex {
        let bytes = build(ty, field, ps.len(), |i| ps[i].as_ref());
        FieldIndex::open(Arc::new(bytes), ps.len()).unwrap()
    }

    /// Indexed answers equal the filter evaluator's on every payload.
    #[test]
    fn indexed_answers_equal_the_evaluator() {
        let ps = payloads(500, 3);
        let mut idx = FieldIndexes {
            slots: ps.len(),
            ..Default::default()
        };
        idx.by_field
            .insert("tag".into(), open(PayloadFieldType::Keyword, "tag", &ps));
        idx.by_field
            .insert("n".into(), open(PayloadFieldType::Integer, "n", &ps));
        idx.by_field
            .insert("ok".into(), open(PayloadFieldType::Bool, "ok", &ps));
        idx.by_field.insert(
            "meta.tags".into(),
            open(PayloadFieldType::Keyword, "meta.tags", &ps),
        );
        let filters = [
            json!({"must": [{"key": "tag", "match": "a"}]}),
            json!({"must": [{"key": "tag", "match": {"any": ["a", "c"]}}]}),
            json!({"must": [{"key": "n", "match": 3}]}),
            json!({"must": [{"key": "n", "match": 3.0}]}),
            json!({"must": [{"key": "n", "match": 2.5}]}),
            json!({"must": [{"key": "n", "range": {"gte": -1, "lt": 2.5}}]}),
            json!({"must": [{"key": "n", "range": {"gt": 0.5}}]}),
            json!({"must": [{"key": "n", "range": {"lte": -3}}]}),
            json!({"must": [{"key": "ok", "match": true}]}),
            json!({"must": [{"key": "meta.tags", "match": "x"}]}),
            json!({"should": [{"key": "tag", "match": "b"}, {"key": "ok", "match": false}],
                   "must_not": [{"key": "n", "range": {"gt": 2}}]}),
            json!({"must": [{"must_not": [{"key": "tag", "match": "d"}]}, {"key": "n", "match": {"any": [1, -2, 4.5]}}]}),
        ];
        for f in filters {
            let filter: Filter = serde_json::from_value(f.clone()).unwrap();
            let FilterBits::Exact(bits) = idx.filter_bits(&filter) else {
                panic!("{f}: not wholly indexed")
            };
            for (i, p) in ps.iter().enumerate() {
                assert_eq!(bits.get(i), matches(&filter, p.as_ref()), "{f} slot {i}");
            }
        }
        // A string at a numeric index and text conditions are not
        // answered exactly; an indexed `must` beside them narrows.
        for f in [
            json!({"must": [{"key": "n", "match": "7"}]}),
            json!({"must": [{"key": "tag", "match": {"text": "a"}}]}),
        ] {
            let filter: Filter = serde_json::from_value(f.clone()).unwrap();
            assert!(
                matches!(idx.filter_bits(&filter), FilterBits::Unknown),
                "{f}"
            );
        }
        let filter: Filter = serde_json::from_value(
            json!({"must": [{"key": "tag", "match": "a"}, {"key": "other", "match": 1}]}),
        )
        .unwrap();
        let FilterBits::Superset(bits) = idx.filter_bits(&filter) else {
            panic!("superset expected")
        };
        for (i, p) in ps.iter().enumerate() {
            if matches(&filter, p.as_ref()) {
                assert!(bits.get(i));
            }
        }
    }

    #[test]
    fn files_round_trip_and_damage_is_refused() {
        let ps = payloads(100, 1);
        for ty in [PayloadFieldType::Keyword, PayloadFieldType::Float] {
            let bytes = build(ty, "tag", ps.len(), |i| ps[i].as_ref());
            assert!(FieldIndex::open(Arc::new(bytes.clone()), 100).is_ok());
            assert!(FieldIndex::open(Arc::new(bytes.clone()), 101).is_err());
            let mut short = bytes.clone();
            short.pop();
            assert!(FieldIndex::open(Arc::new(short), 100).is_err());
            let mut magic = bytes;
            magic[1] ^= 1;
            assert!(FieldIndex::open(Arc::new(magic), 100).is_err());
        }
        assert_eq!(field_of(&file_name("meta.tags")).unwrap(), "meta.tags");
        assert_eq!(field_of("pidx-zz.bin"), None);
    }
}
