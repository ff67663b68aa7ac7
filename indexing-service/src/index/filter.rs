//! Payload filters: validation and evaluation of the filter language
//! (`must` / `should` / `must_not`; match, match any, range; dotted keys).
//!
//! What holds:
//! - Numbers compare by their exact values. JSON integers (`u64` / `i64`)
//!   compare as integers, also beyond 2^53; an integer against a float
//!   compares the integer with the float's exact value (never by rounding
//!   the integer to a double); floats compare as IEEE doubles. So `1`
//!   equals `1.0`, `9007199254740993` equals neither `9007199254740992` nor
//!   `9007199254740992.0`, and `9007199254740993 > 9007199254740992.0`.
//! - Strings and booleans match only values of their own type.
//! - A filter that passes [`validate`] is bounded (depth, conditions, match
//!   values, key length: the `MAX_*` constants beside [`Filter`]), so one
//!   evaluation costs at most a fixed number of comparisons per payload
//!   value.
//! - [`matches`] evaluates a filter as given: cheap to call, with `any` lists
//!   scanned. [`CompiledFilter`] is built once per query (keys split, `any`
//!   lists hashed) and evaluates each point with one hash lookup per value;
//!   both give the same answers.

use crate::storage::codec::Payload;
use serde_json::{Number, Value};
use shared::wire::indexing::{
    Condition, FieldCondition, Filter, Match, Range, MAX_FILTER_CONDITIONS, MAX_FILTER_DEPTH,
    MAX_FILTER_KEY_BYTES, MAX_FILTER_VALUES, MAX_MATCH_ANY, MAX_MATCH_TEXT_BYTES,
};
use std::cmp::Ordering;
use std::collections::HashSet;

// ------------------------------------------------------------- validation

/// Checks a filter's shape and bounds: every field condition has a
/// non-empty key of at most [`MAX_FILTER_KEY_BYTES`] bytes and exactly one
/// of `match` (strings, numbers or booleans) or `range`; nesting is at most
/// [`MAX_FILTER_DEPTH`] deep; at most [`MAX_FILTER_CONDITIONS`] conditions
/// in all; at most [`MAX_MATCH_ANY`] values in one `any` and
/// [`MAX_FILTER_VALUES`] match values in all.
///
/// Errors: a message a user understands, naming the key or the bound, on
/// the first fault found.
pub fn validate(f: &Filter) -> Result<(), String> {
    let mut totals = Totals::default();
    validate_at(f, 1, &mut totals)
}

#[derive(Default)]
struct Totals {
    conditions: usize,
    values: usize,
}

fn validate_at(f: &Filter, depth: usize, totals: &mut Totals) -> Result<(), String> {
    if depth > MAX_FILTER_DEPTH {
        return Err(format!(
            "filter nesting depth is over the limit of {MAX_FILTER_DEPTH} levels"
        ));
    }
    for c in f.must.iter().chain(&f.should).chain(&f.must_not) {
        totals.conditions += 1;
        if totals.conditions > MAX_FILTER_CONDITIONS {
            return Err(format!(
                "filter has more than {MAX_FILTER_CONDITIONS} conditions (counted over all nesting levels)"
            ));
        }
        match c {
            Condition::Filter(inner) => validate_at(inner, depth + 1, totals)?,
            Condition::Field(fc) => validate_field(fc, totals)?,
            Condition::IsEmpty { is_empty: k } | Condition::IsNull { is_null: k } => {
                validate_key(&k.key)?
            }
        }
    }
    Ok(())
}

/// A condition's key: 1 to [`MAX_FILTER_KEY_BYTES`] bytes.
fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("condition key must not be empty".into());
    }
    if key.len() > MAX_FILTER_KEY_BYTES {
        return Err(format!(
            "condition key `{}…` is {} bytes long, over the limit of {MAX_FILTER_KEY_BYTES} bytes",
            key.chars().take(32).collect::<String>(),
            key.len()
        ));
    }
    Ok(())
}

/// `is_empty`: no value but null at the key (missing, null, `[]`); a
/// point without a payload is empty everywhere.
fn key_is_empty<'k>(
    payload: Option<&Payload>,
    path: impl Iterator<Item = &'k str> + Clone,
) -> bool {
    let Some(p) = payload else { return true };
    let mut vals = Vec::new();
    lookup(p, path, &mut vals);
    vals.iter().all(|v| v.is_null())
}

/// `is_null`: the key holds null (or an array holding null).
fn key_is_null<'k>(payload: Option<&Payload>, path: impl Iterator<Item = &'k str> + Clone) -> bool {
    let Some(p) = payload else { return false };
    let mut vals = Vec::new();
    lookup(p, path, &mut vals);
    vals.iter().any(|v| v.is_null())
}

fn validate_field(fc: &FieldCondition, totals: &mut Totals) -> Result<(), String> {
    validate_key(&fc.key)?;
    let values = match (&fc.r#match, &fc.range) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(format!(
                "condition on `{}` needs exactly one of `match` or `range`",
                fc.key
            ))
        }
        (None, Some(_)) => 0,
        (Some(Match::Value(v)), None) => {
            if Scalar::of(v).is_none() {
                return Err(format!(
                    "`match` on `{}` takes a string, number or boolean, or {{\"any\": [...]}}",
                    fc.key
                ));
            }
            1
        }
        (Some(Match::Text { text }), None) => {
            if text.len() > MAX_MATCH_TEXT_BYTES {
                return Err(format!(
                    "`match.text` on `{}` is {} bytes long, over the limit of {MAX_MATCH_TEXT_BYTES}",
                    fc.key,
                    text.len()
                ));
            }
            if text_words(text).is_empty() {
                return Err(format!(
                    "`match.text` on `{}` has no words to match (only spaces or punctuation)",
                    fc.key
                ));
            }
            1
        }
        (Some(Match::Any { any }), None) => {
            if any.len() > MAX_MATCH_ANY {
                return Err(format!(
                    "`match.any` on `{}` has {} values, over the limit of {MAX_MATCH_ANY}",
                    fc.key,
                    any.len()
                ));
            }
            if let Some(i) = any.iter().position(|v| Scalar::of(v).is_none()) {
                return Err(format!(
                    "`match.any` on `{}` takes strings, numbers or booleans; value {i} is not one",
                    fc.key
                ));
            }
            any.len()
        }
    };
    totals.values += values;
    if totals.values > MAX_FILTER_VALUES {
        return Err(format!(
            "filter has more than {MAX_FILTER_VALUES} match values (`match` values and `match.any` lists together)"
        ));
    }
    Ok(())
}

// ------------------------------------------------------ exact comparison

/// A match value in canonical form, equal exactly when the JSON values are
/// (numbers by exact value), so it can be hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scalar<'a> {
    Bool(bool),
    Str(&'a str),
    /// Any integer, and any float with an integral value in (-2^64, 2^64):
    /// every JSON integer fits, and such a float converts exactly.
    Int(i128),
    /// The bits of a float that is not integral or lies outside (-2^64,
    /// 2^64): it equals no JSON integer.
    Float(u64),
}

/// 2^64 as a double (exact).
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

impl<'a> Scalar<'a> {
    /// Strings, numbers and booleans; None for null, arrays and objects.
    fn of(v: &'a Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::String(s) => Some(Scalar::Str(s)),
            Value::Number(n) => Some(Self::num(n)),
            _ => None,
        }
    }

    fn num(n: &Number) -> Self {
        match Num::of(n) {
            Num::Int(i) => Scalar::Int(i),
            Num::Float(f) if f.fract() == 0.0 && f.abs() < TWO_POW_64 => Scalar::Int(f as i128),
            Num::Float(f) => Scalar::Float(f.to_bits()),
        }
    }
}

/// A JSON number without loss: integers widened to `i128` (every `u64` and
/// `i64` fits), floats as they are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    pub(crate) fn of(n: &Number) -> Self {
        if let Some(u) = n.as_u64() {
            Num::Int(u as i128)
        } else if let Some(i) = n.as_i64() {
            Num::Int(i as i128)
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    /// Exact order of the two values; None only with a NaN (not valid JSON).
    pub(crate) fn cmp(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y),
            (Num::Int(a), Num::Float(y)) => cmp_int_float(a, y),
            (Num::Float(x), Num::Int(b)) => cmp_int_float(b, x).map(Ordering::reverse),
        }
    }
}

/// Exact order of the integer `a` (|a| < 2^64) against the double `f`.
fn cmp_int_float(a: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // Beyond ±2^64 no JSON integer reaches the float.
    if f >= TWO_POW_64 {
        return Some(Ordering::Less);
    }
    if f <= -TWO_POW_64 {
        return Some(Ordering::Greater);
    }
    // |f| < 2^64: its integral part converts to i128 exactly.
    let t = f.trunc();
    Some(a.cmp(&(t as i128)).then_with(|| {
        // a == trunc(f): the fraction decides.
        if f > t {
            Ordering::Less
        } else if f < t {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }))
}

/// Bounds of a range, converted once.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bounds {
    pub(crate) gt: Option<Num>,
    pub(crate) gte: Option<Num>,
    pub(crate) lt: Option<Num>,
    pub(crate) lte: Option<Num>,
}

impl Bounds {
    pub(crate) fn of(r: &Range) -> Self {
        let n = |b: &Option<Number>| b.as_ref().map(Num::of);
        Bounds {
            gt: n(&r.gt),
            gte: n(&r.gte),
            lt: n(&r.lt),
            lte: n(&r.lte),
        }
    }

    /// Whether the payload value is a number inside every bound.
    fn contains(&self, v: &Value) -> bool {
        let Value::Number(n) = v else { return false };
        let x = Num::of(n);
        let holds =
            |b: Option<Num>, ok: fn(Ordering) -> bool| b.is_none_or(|b| x.cmp(b).is_some_and(ok));
        holds(self.gt, Ordering::is_gt)
            && holds(self.gte, Ordering::is_ge)
            && holds(self.lt, Ordering::is_lt)
            && holds(self.lte, Ordering::is_le)
    }
}

// ------------------------------------------------------------- evaluation

/// Values at a dotted key; arrays along the way fan out.
pub(crate) fn lookup<'p, 'k>(
    payload: &'p Payload,
    mut parts: impl Iterator<Item = &'k str> + Clone,
    out: &mut Vec<&'p Value>,
) {
    fn walk<'p, 'k>(
        v: &'p Value,
        parts: impl Iterator<Item = &'k str> + Clone,
        out: &mut Vec<&'p Value>,
    ) {
        let mut rest = parts.clone();
        match (rest.next(), v) {
            (None, Value::Array(items)) => out.extend(items.iter()),
            (None, v) => out.push(v),
            (Some(p), Value::Object(m)) => {
                if let Some(x) = m.get(p) {
                    walk(x, rest, out)
                }
            }
            (Some(_), Value::Array(items)) => {
                items.iter().for_each(|x| walk(x, parts.clone(), out))
            }
            _ => {}
        }
    }
    let Some(first) = parts.next() else { return };
    if let Some(v) = payload.get(first) {
        walk(v, parts, out);
    }
}

/// The distinct words of `text` as `match.text` compares them: Unicode
/// words, lower-cased, not stemmed (the collection's stemmer applies to
/// keyword search only).
fn text_words(text: &str) -> Vec<String> {
    let mut w = crate::text::Tokenizer::new(None).tokenize(text);
    w.sort_unstable();
    w.dedup();
    w
}

/// Whether every word of `want` (sorted, distinct) is a word of the
/// string `v` (false for other JSON values).
fn has_words(v: &Value, want: &[String]) -> bool {
    let Value::String(s) = v else { return false };
    let have = text_words(s);
    want.iter().all(|w| have.binary_search(w).is_ok())
}

fn field_matches(fc: &FieldCondition, payload: Option<&Payload>) -> bool {
    let Some(p) = payload else { return false };
    let mut vals = Vec::new();
    lookup(p, fc.key.split('.'), &mut vals);
    if let Some(m) = &fc.r#match {
        return match m {
            Match::Value(want) => {
                let Some(want) = Scalar::of(want) else {
                    return false;
                };
                vals.iter().any(|v| Scalar::of(v) == Some(want))
            }
            Match::Any { any } => vals
                .iter()
                .filter_map(|v| Scalar::of(v))
                .any(|s| any.iter().any(|w| Scalar::of(w) == Some(s))),
            Match::Text { text } => {
                let want = text_words(text);
                vals.iter().any(|v| has_words(v, &want))
            }
        };
    }
    if let Some(r) = &fc.range {
        let b = Bounds::of(r);
        return vals.iter().any(|v| b.contains(v));
    }
    false
}

fn cond_matches(c: &Condition, payload: Option<&Payload>) -> bool {
    match c {
        Condition::Field(fc) => field_matches(fc, payload),
        Condition::Filter(f) => matches(f, payload),
        Condition::IsEmpty { is_empty: k } => key_is_empty(payload, k.key.split('.')),
        Condition::IsNull { is_null: k } => key_is_null(payload, k.key.split('.')),
    }
}

/// Whether a point with this payload passes the filter (a point without a
/// payload satisfies no field condition). Evaluates the filter as given;
/// to test many points against one filter, build a [`CompiledFilter`] once.
/// The filter should have passed [`validate`]; an invalid condition never
/// holds.
pub fn matches(f: &Filter, payload: Option<&Payload>) -> bool {
    f.must.iter().all(|c| cond_matches(c, payload))
        && (f.should.is_empty() || f.should.iter().any(|c| cond_matches(c, payload)))
        && !f.must_not.iter().any(|c| cond_matches(c, payload))
}

/// A validated filter prepared for testing many points: keys split once,
/// match values in canonical form, `any` lists hashed, range bounds
/// converted. Borrows the filter's strings. Same answers as [`matches`].
#[derive(Debug, Clone)]
pub struct CompiledFilter<'f> {
    must: Vec<Compiled<'f>>,
    should: Vec<Compiled<'f>>,
    must_not: Vec<Compiled<'f>>,
}

#[derive(Debug, Clone)]
enum Compiled<'f> {
    Field { path: Vec<&'f str>, test: Test<'f> },
    Nested(CompiledFilter<'f>),
    Empty(Vec<&'f str>),
    Null(Vec<&'f str>),
}

#[derive(Debug, Clone)]
enum Test<'f> {
    Eq(Scalar<'f>),
    /// Short `any` lists: a scan beats hashing.
    AnyFew(Vec<Scalar<'f>>),
    AnySet(HashSet<Scalar<'f>>),
    Range(Bounds),
    /// `match.text`: these words (sorted, distinct) all in a string value.
    Words(Vec<String>),
}

/// `any` lists longer than this are hashed.
const ANY_SCAN_MAX: usize = 8;

impl<'f> CompiledFilter<'f> {
    /// Validates (as [`validate`]) and prepares the filter; O(size of the
    /// filter).
    ///
    /// Errors: the message of [`validate`] when the filter is invalid.
    pub fn new(f: &'f Filter) -> Result<Self, String> {
        validate(f)?;
        Ok(Self::build(f))
    }

    fn build(f: &'f Filter) -> Self {
        let conds = |cs: &'f [Condition]| cs.iter().map(Compiled::build).collect();
        CompiledFilter {
            must: conds(&f.must),
            should: conds(&f.should),
            must_not: conds(&f.must_not),
        }
    }

    /// Whether a point with this payload passes the filter (a point without
    /// a payload satisfies no field condition).
    pub fn matches(&self, payload: Option<&Payload>) -> bool {
        self.must.iter().all(|c| c.holds(payload))
            && (self.should.is_empty() || self.should.iter().any(|c| c.holds(payload)))
            && !self.must_not.iter().any(|c| c.holds(payload))
    }
}

impl<'f> Compiled<'f> {
    fn build(c: &'f Condition) -> Self {
        let fc = match c {
            Condition::Filter(f) => return Compiled::Nested(CompiledFilter::build(f)),
            Condition::IsEmpty { is_empty: k } => {
                return Compiled::Empty(k.key.split('.').collect())
            }
            Condition::IsNull { is_null: k } => return Compiled::Null(k.key.split('.').collect()),
            Condition::Field(fc) => fc,
        };
        // Validated: exactly one of match and range, scalar match values.
        let test = match (&fc.r#match, &fc.range) {
            (Some(Match::Value(v)), _) => match Scalar::of(v) {
                Some(s) => Test::Eq(s),
                None => Test::AnyFew(Vec::new()),
            },
            (Some(Match::Any { any }), _) => {
                let it = any.iter().filter_map(Scalar::of);
                if any.len() <= ANY_SCAN_MAX {
                    Test::AnyFew(it.collect())
                } else {
                    Test::AnySet(it.collect())
                }
            }
            (Some(Match::Text { text }), _) => Test::Words(text_words(text)),
            (None, Some(r)) => Test::Range(Bounds::of(r)),
            (None, None) => Test::AnyFew(Vec::new()),
        };
        Compiled::Field {
            path: fc.key.split('.').collect(),
            test,
        }
    }

    fn holds(&self, payload: Option<&Payload>) -> bool {
        match self {
            Compiled::Nested(f) => f.matches(payload),
            Compiled::Empty(path) => key_is_empty(payload, path.iter().copied()),
            Compiled::Null(path) => key_is_null(payload, path.iter().copied()),
            Compiled::Field { path, test } => {
                let Some(p) = payload else { return false };
                let mut vals = Vec::new();
                lookup(p, path.iter().copied(), &mut vals);
                vals.iter().any(|v| match test {
                    Test::Range(b) => b.contains(v),
                    Test::Eq(w) => Scalar::of(v) == Some(*w),
                    Test::AnyFew(ws) => Scalar::of(v).is_some_and(|s| ws.contains(&s)),
                    Test::AnySet(ws) => Scalar::of(v).is_some_and(|s| ws.contains(&s)),
                    Test::Words(ws) => has_words(v, ws),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    fn f(v: Value) -> Filter {
        let f: Filter = serde_json::from_value(v).unwrap();
        validate(&f).unwrap();
        f
    }
    fn parse(text: &str) -> Filter {
        let f: Filter = serde_json::from_str(text).unwrap();
        validate(&f).unwrap();
        f
    }
    fn p(v: Value) -> Payload {
        v.as_object().unwrap().clone()
    }
    /// Both evaluators, which must agree.
    fn both(f: &Filter, payload: Option<&Payload>) -> bool {
        let direct = matches(f, payload);
        let compiled = CompiledFilter::new(f).unwrap().matches(payload);
        assert_eq!(
            direct, compiled,
            "evaluators disagree on {f:?} / {payload:?}"
        );
        direct
    }
    fn count(f: &Filter, docs: &[Payload]) -> usize {
        docs.iter().filter(|d| both(f, Some(d))).count()
    }

    #[test]
    fn is_empty_and_is_null() {
        let doc = p(json!({"a": [], "b": null, "c": [1], "d": {"e": null}, "f": [null]}));
        let yes = |v: Value| assert!(both(&f(v.clone()), Some(&doc)), "{v}");
        let no = |v: Value| assert!(!both(&f(v.clone()), Some(&doc)), "{v}");
        for k in ["a", "b", "missing", "d.e", "d.x", "f"] {
            yes(json!({"must": [{"is_empty": {"key": k}}]}));
        }
        no(json!({"must": [{"is_empty": {"key": "c"}}]}));
        for k in ["b", "d.e", "f"] {
            yes(json!({"must": [{"is_null": {"key": k}}]}));
        }
        for k in ["a", "c", "missing"] {
            no(json!({"must": [{"is_null": {"key": k}}]}));
        }
        assert!(both(
            &f(json!({"must": [{"is_empty": {"key": "x"}}]})),
            None
        ));
        assert!(!both(
            &f(json!({"must": [{"is_null": {"key": "x"}}]})),
            None
        ));
        for bad in [
            json!({"must": [{"is_empty": {"key": ""}}]}),
            json!({"must": [{"is_empty": {"key": "a"}, "key": "b"}]}),
            json!({"must": [{"is_null": "a"}]}),
        ] {
            let r = serde_json::from_value::<Filter>(bad.clone())
                .map_err(|e| e.to_string())
                .and_then(|f| validate(&f));
            assert!(r.is_err(), "{bad}");
        }
    }

    #[test]
    fn full_text_match() {
        let doc = p(json!({"title": "The Quick brown fox, jumping!", "tags": ["red fox", "den"]}));
        let yes = |v: Value| assert!(both(&f(v.clone()), Some(&doc)), "{v}");
        let no = |v: Value| assert!(!both(&f(v.clone()), Some(&doc)), "{v}");
        yes(json!({"must": [{"key": "title", "match": {"text": "fox quick"}}]}));
        yes(json!({"must": [{"key": "title", "match": {"text": "  FOX!! "}}]}));
        no(json!({"must": [{"key": "title", "match": {"text": "fox cat"}}]}));
        no(json!({"must": [{"key": "title", "match": {"text": "jump"}}]}));
        // Arrays: one element holding every word.
        yes(json!({"must": [{"key": "tags", "match": {"text": "fox red"}}]}));
        no(json!({"must": [{"key": "tags", "match": {"text": "red den"}}]}));
        no(json!({"must": [{"key": "missing", "match": {"text": "fox"}}]}));
        for bad in [json!({"text": " ... "}), json!({"text": "x".repeat(5000)})] {
            let f: Filter =
                serde_json::from_value(json!({"must": [{"key": "title", "match": bad}]})).unwrap();
            assert!(validate(&f).unwrap_err().contains("match.text"));
        }
    }

    #[test]
    fn language() {
        let doc =
            p(json!({"tag": "news", "year": 2005, "meta": {"lang": "en", "tags": ["a", "b"]}}));
        let yes = |v: Value| assert!(both(&f(v.clone()), Some(&doc)), "{v}");
        let no = |v: Value| assert!(!both(&f(v.clone()), Some(&doc)), "{v}");
        yes(json!({"must": [{"key": "tag", "match": "news"}]}));
        no(json!({"must": [{"key": "tag", "match": "sport"}]}));
        yes(json!({"must": [{"key": "tag", "match": {"any": ["x", "news"]}}]}));
        yes(json!({"must": [{"key": "tag", "match": {"text": "NEWS"}}]}));
        no(json!({"must": [{"key": "tag", "match": {"text": "new"}}]}));
        no(json!({"must": [{"key": "year", "match": {"text": "2005"}}]}));
        no(json!({"must": [{"key": "tag", "match": {"any": []}}]}));
        yes(json!({"must": [{"key": "year", "range": {"gte": 2000, "lt": 2010}}]}));
        no(json!({"must": [{"key": "year", "range": {"gt": 2005}}]}));
        yes(json!({"must": [{"key": "year", "range": {}}]}));
        no(json!({"must": [{"key": "tag", "range": {}}]}));
        yes(json!({"must": [{"key": "meta.lang", "match": "en"}]}));
        yes(json!({"must": [{"key": "meta.tags", "match": "b"}]}));
        no(json!({"must": [{"key": "meta.missing", "match": "b"}]}));
        yes(json!({"should": [{"key": "tag", "match": "x"}, {"key": "year", "match": 2005}]}));
        no(json!({"must_not": [{"key": "tag", "match": "news"}]}));
        yes(json!({"must": [{"must_not": [{"key": "tag", "match": "x"}]}]}));
        assert!(!both(
            &f(json!({"must": [{"key": "tag", "match": "news"}]})),
            None
        ));
        let bad: Filter = serde_json::from_value(json!({"must": [{"key": "t"}]})).unwrap();
        assert!(validate(&bad).is_err());
        assert!(CompiledFilter::new(&bad).is_err());
    }

    #[test]
    fn types_do_not_mix() {
        let doc = p(json!({"s": "1", "n": 1, "b": true, "z": null, "o": {"k": 1}}));
        let yes = |v: Value| assert!(both(&f(v.clone()), Some(&doc)), "{v}");
        let no = |v: Value| assert!(!both(&f(v.clone()), Some(&doc)), "{v}");
        no(json!({"must": [{"key": "s", "match": 1}]}));
        no(json!({"must": [{"key": "n", "match": "1"}]}));
        no(json!({"must": [{"key": "b", "match": 1}]}));
        yes(json!({"must": [{"key": "b", "match": true}]}));
        no(json!({"must": [{"key": "s", "range": {"gte": 0}}]}));
        no(json!({"must": [{"key": "z", "match": {"any": ["null", 0, false]}}]}));
        no(json!({"must": [{"key": "o", "match": {"any": [1, "k"]}}]}));
        yes(json!({"must": [{"key": "o.k", "match": {"any": [1.0, "k"]}}]}));
    }

    /// Integers beyond 2^53 once compared as doubles.
    #[test]
    fn integers_beyond_2_pow_53_compare_exactly() {
        let docs = [
            p(json!({"x": 9007199254740993u64})),
            p(json!({"x": 9007199254740992u64})),
        ];
        assert_eq!(
            count(
                &parse(r#"{"must": [{"key": "x", "match": 9007199254740993}]}"#),
                &docs
            ),
            1
        );
        assert_eq!(
            count(
                &parse(r#"{"must": [{"key": "x", "match": 9007199254740992}]}"#),
                &docs
            ),
            1
        );
        assert_eq!(
            count(
                &parse(r#"{"must": [{"key": "x", "match": {"any": [9007199254740993, 7]}}]}"#),
                &docs
            ),
            1
        );
        assert_eq!(
            count(
                &parse(r#"{"must": [{"key": "x", "range": {"gt": 9007199254740992}}]}"#),
                &docs
            ),
            1
        );
        assert_eq!(
            count(
                &parse(r#"{"must": [{"key": "x", "range": {"gte": 9007199254740993}}]}"#),
                &docs
            ),
            1
        );
        assert_eq!(
            count(
                &parse(r#"{"must": [{"key": "x", "range": {"lt": 9007199254740993}}]}"#),
                &docs
            ),
            1
        );
        assert_eq!(
            count(
                &parse(r#"{"must": [{"key": "x", "range": {"lte": 9007199254740992}}]}"#),
                &docs
            ),
            1
        );
        // Float bounds and values against integers: exact, not rounded.
        assert_eq!(
            count(
                &parse(r#"{"must": [{"key": "x", "range": {"gt": 9007199254740992.0}}]}"#),
                &docs
            ),
            1
        );
        assert_eq!(
            count(
                &parse(r#"{"must": [{"key": "x", "range": {"gte": 9007199254740992.0}}]}"#),
                &docs
            ),
            2
        );
        assert_eq!(
            count(
                &parse(r#"{"must": [{"key": "x", "range": {"lte": 9007199254740992.0}}]}"#),
                &docs
            ),
            1
        );
        assert_eq!(
            count(
                &parse(r#"{"must": [{"key": "x", "match": 9007199254740992.0}]}"#),
                &docs
            ),
            1
        );
        // 9007199254740993.0 is no double: it parses to ...992.0 (ties to even).
        assert_eq!(
            count(
                &parse(r#"{"must": [{"key": "x", "match": 9007199254740993.0}]}"#),
                &docs
            ),
            1
        );
        assert_eq!(
            count(
                &parse(r#"{"must": [{"key": "x", "match": 9007199254740994.0}]}"#),
                &docs
            ),
            0
        );
    }

    #[test]
    fn integers_and_floats_compare_by_exact_value() {
        let c = |a: Value, b: Value| {
            let (Value::Number(a), Value::Number(b)) = (a, b) else {
                panic!()
            };
            Num::of(&a).cmp(Num::of(&b)).unwrap()
        };
        use Ordering::*;
        assert_eq!(
            c(json!(9007199254740993u64), json!(9007199254740992.0)),
            Greater
        );
        assert_eq!(
            c(json!(9007199254740992.0), json!(9007199254740993u64)),
            Less
        );
        assert_eq!(
            c(json!(9007199254740992u64), json!(9007199254740992.0)),
            Equal
        );
        assert_eq!(c(json!(u64::MAX), json!(18446744073709551616.0)), Less);
        assert_eq!(c(json!(u64::MAX), json!(18446744073709549568.0)), Greater);
        assert_eq!(c(json!(i64::MAX), json!(9223372036854775808.0)), Less);
        assert_eq!(c(json!(i64::MIN), json!(-9223372036854775808.0)), Equal);
        assert_eq!(
            c(json!(i64::MIN + 1), json!(-9223372036854775808.0)),
            Greater
        );
        assert_eq!(c(json!(i64::MIN), json!(-1e300)), Greater);
        assert_eq!(c(json!(u64::MAX), json!(1e300)), Less);
        assert_eq!(c(json!(2), json!(2.5)), Less);
        assert_eq!(c(json!(3), json!(2.5)), Greater);
        assert_eq!(c(json!(-2), json!(-2.5)), Greater);
        assert_eq!(c(json!(-3), json!(-2.5)), Less);
        assert_eq!(c(json!(0), json!(-0.0)), Equal);
        assert_eq!(c(json!(0), json!(5e-324)), Less);
        assert_eq!(c(json!(0), json!(-5e-324)), Greater);
        assert_eq!(c(json!(-1), json!(-0.9999999999999999)), Less);
        assert_eq!(c(json!(u64::MAX), json!(i64::MIN)), Greater);
        // Equality in matches follows the same values.
        let doc = p(
            json!({"a": 1, "f": 1.0, "z": -0.0, "big": 18446744073709551615u64, "neg": i64::MIN}),
        );
        let yes = |v: Value| assert!(both(&f(v.clone()), Some(&doc)), "{v}");
        let no = |v: Value| assert!(!both(&f(v.clone()), Some(&doc)), "{v}");
        yes(json!({"must": [{"key": "a", "match": 1.0}]}));
        yes(json!({"must": [{"key": "f", "match": 1}]}));
        yes(json!({"must": [{"key": "z", "match": 0}]}));
        yes(json!({"must": [{"key": "z", "match": {"any": [1, 2, 3, 4, 5, 6, 7, 8, 9, 0.0]}}]}));
        yes(json!({"must": [{"key": "big", "match": 18446744073709551615u64}]}));
        no(json!({"must": [{"key": "big", "match": 18446744073709551616.0}]}));
        no(json!({"must": [{"key": "big", "match": 18446744073709551614u64}]}));
        yes(json!({"must": [{"key": "neg", "match": -9223372036854775808.0}]}));
        no(json!({"must": [{"key": "neg", "match": -9223372036854775807i64}]}));
        yes(
            json!({"must": [{"key": "big", "range": {"gt": 18446744073709549568.0, "lt": 18446744073709551616.0}}]}),
        );
    }

    #[test]
    fn bounds_are_enforced_and_named() {
        let leaf = || json!({"key": "k", "match": 1});
        let nest = |depth: usize| {
            let mut v = json!({"must": [leaf()]});
            for _ in 1..depth {
                v = json!({"must": [v]});
            }
            let f: Filter = serde_json::from_value(v).unwrap();
            f
        };
        assert!(validate(&nest(MAX_FILTER_DEPTH)).is_ok());
        let e = validate(&nest(MAX_FILTER_DEPTH + 1)).unwrap_err();
        assert!(e.contains("depth") && e.contains("16"), "{e}");
        assert!(CompiledFilter::new(&nest(MAX_FILTER_DEPTH + 1)).is_err());
        // The evaluators still agree on the deepest valid filter.
        assert!(both(&nest(MAX_FILTER_DEPTH), Some(&p(json!({"k": 1})))));

        let flat = |n: usize, list: &str| {
            let v = json!({ list: vec![leaf(); n] });
            let f: Filter = serde_json::from_value(v).unwrap();
            f
        };
        for list in ["must", "should", "must_not"] {
            assert!(validate(&flat(MAX_FILTER_CONDITIONS, list)).is_ok());
            let e = validate(&flat(MAX_FILTER_CONDITIONS + 1, list)).unwrap_err();
            assert!(e.contains("conditions") && e.contains("1024"), "{e}");
        }
        // Counted over all levels: 3 × 341 leaves + 3 nested filters = 1026.
        let spread: Filter = serde_json::from_value(json!({
            "must": [{"must": vec![leaf(); 341]}, {"should": vec![leaf(); 341]}],
            "must_not": [{"must": vec![leaf(); 341]}]
        }))
        .unwrap();
        assert!(validate(&spread).unwrap_err().contains("conditions"));

        let any = |n: usize| {
            let v = json!({"must": [{"key": "k", "match": {"any": (0..n).collect::<Vec<_>>()}}]});
            let f: Filter = serde_json::from_value(v).unwrap();
            f
        };
        assert!(validate(&any(MAX_MATCH_ANY)).is_ok());
        let e = validate(&any(MAX_MATCH_ANY + 1)).unwrap_err();
        assert!(
            e.contains("match.any")
                && e.contains("1025")
                && e.contains("1024")
                && e.contains("`k`"),
            "{e}"
        );
        // Total match values: four lists of 1024 pass, one more value fails.
        let lists = vec![json!({"key": "k", "match": {"any": vec![1; MAX_MATCH_ANY]}}); 4];
        let mut over = lists.clone();
        assert!(validate(&serde_json::from_value(json!({"should": lists})).unwrap()).is_ok());
        over.push(leaf());
        let e = validate(&serde_json::from_value(json!({"should": over})).unwrap()).unwrap_err();
        assert!(e.contains("4096") && e.contains("match values"), "{e}");

        let key = |n: usize| {
            let v = json!({"must": [{"key": "k".repeat(n), "match": 1}]});
            let f: Filter = serde_json::from_value(v).unwrap();
            f
        };
        assert!(validate(&key(MAX_FILTER_KEY_BYTES)).is_ok());
        let e = validate(&key(MAX_FILTER_KEY_BYTES + 1)).unwrap_err();
        assert!(e.contains("key") && e.contains("256 bytes"), "{e}");
        // Multi-byte characters count by bytes.
        let e = validate(
            &serde_json::from_value(json!({"must": [{"key": "é".repeat(129), "match": 1}]}))
                .unwrap(),
        );
        assert!(e.unwrap_err().contains("258 bytes"));

        for bad in [json!(null), json!([1]), json!({"a": 1})] {
            let v = json!({"must": [{"key": "tag", "match": {"any": ["x", bad]}}]});
            let e = validate(&serde_json::from_value(v).unwrap()).unwrap_err();
            assert!(e.contains("`tag`") && e.contains("value 1"), "{e}");
        }
        for bad in [json!(null), json!([1])] {
            let v = json!({"must": [{"key": "tag", "match": bad}]});
            assert!(validate(&serde_json::from_value(v).unwrap())
                .unwrap_err()
                .contains("`tag`"));
        }
    }

    /// The bounds in the OpenAPI description are the ones enforced.
    #[test]
    fn documented_bounds_match_the_constants() {
        let schema = serde_json::to_value(<Filter as utoipa::PartialSchema>::schema()).unwrap();
        let text = schema["description"].as_str().unwrap_or_default();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let n = |n: usize| {
            if n >= 1000 {
                format!("{},{:03}", n / 1000, n % 1000)
            } else {
                n.to_string()
            }
        };
        for phrase in [
            format!("depth at most {}", n(MAX_FILTER_DEPTH)),
            format!("at most {} conditions", n(MAX_FILTER_CONDITIONS)),
            format!("at most {} values in one `match.any`", n(MAX_MATCH_ANY)),
            format!("{} match values", n(MAX_FILTER_VALUES)),
            format!("keys at most {} bytes", n(MAX_FILTER_KEY_BYTES)),
        ] {
            assert!(
                text.contains(&phrase),
                "Filter description lacks `{phrase}`: {text}"
            );
        }
        // Range bounds are `number` in the OpenAPI schema (exact on the wire).
        let range = serde_json::to_value(<Range as utoipa::PartialSchema>::schema()).unwrap();
        for b in ["gt", "gte", "lt", "lte"] {
            let t = &range["properties"][b]["type"];
            assert!(
                t == "number" || t.as_array().is_some_and(|a| a.contains(&json!("number"))),
                "Range.{b} is not a number in the schema: {range}"
            );
        }
    }

    // ------------------------------------------------ randomised, exact

    /// Exact decimal form of a JSON number: (negative, integer digits,
    /// fraction digits), without leading/trailing zeros. Independent of the
    /// code under test: decimal strings, not binary arithmetic.
    pub(crate) fn decimal(n: &Number) -> (bool, String, String) {
        let s = if n.is_f64() {
            // 1100 places hold every double's exact expansion (≤ 1074).
            format!("{:.1100}", n.as_f64().unwrap())
        } else {
            n.to_string()
        };
        let (neg, s) = match s.strip_prefix('-') {
            Some(r) => (true, r.to_string()),
            None => (false, s),
        };
        let (i, fr) = s.split_once('.').unwrap_or((&s, ""));
        let i = i.trim_start_matches('0').to_string();
        let fr = fr.trim_end_matches('0').to_string();
        let zero = i.is_empty() && fr.is_empty();
        (neg && !zero, i, fr)
    }

    fn reference_cmp(a: &Number, b: &Number) -> Ordering {
        let (an, ai, af) = decimal(a);
        let (bn, bi, bf) = decimal(b);
        let mag = (ai.len(), &ai, &af).cmp(&(bi.len(), &bi, &bf));
        match (an, bn) {
            (false, false) => mag,
            (true, true) => mag.reverse(),
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
        }
    }

    /// Numbers near the places where doubles and integers part ways.
    pub(crate) fn interesting(rng: &mut StdRng) -> Number {
        let p53 = 1u64 << 53;
        match rng.gen_range(0..12) {
            0 => Number::from(p53 - 4 + rng.gen_range(0..9)),
            1 => Number::from(-((p53 - 4 + rng.gen_range(0..9)) as i64)),
            2 => Number::from(i64::MAX - rng.gen_range(0..4)),
            3 => Number::from(i64::MIN + rng.gen_range(0..4)),
            4 => Number::from(u64::MAX - rng.gen_range(0..4)),
            5 => Number::from(rng.gen::<i64>() >> rng.gen_range(0..63)),
            6 => Number::from(rng.gen_range(-5i64..6)),
            _ => {
                let x: f64 = match rng.gen_range(0..9) {
                    0 => (p53 as f64) + rng.gen_range(-8i32..9) as f64,
                    1 => [i64::MAX as f64, u64::MAX as f64, f32::MAX as f64][rng.gen_range(0..3)],
                    2 => rng.gen_range(-6.0..6.0f64).round() / 2.0,
                    3 => rng.gen_range(-1e3..1e3),
                    4 => [0.0, -0.0, 5e-324, -5e-324, 1e300, -1e300][rng.gen_range(0..6)],
                    5 => -(i64::MIN as f64) * rng.gen_range(-2i32..3) as f64,
                    _ => loop {
                        let x = f64::from_bits(rng.gen());
                        if x.is_finite() {
                            break x;
                        }
                    },
                };
                // Sometimes the neighbouring double.
                let x = match rng.gen_range(0..4) {
                    0 if x != 0.0 => f64::from_bits(x.to_bits() + 1),
                    1 if x != 0.0 => f64::from_bits(x.to_bits() - 1),
                    _ => x,
                };
                Number::from_f64(x).unwrap_or_else(|| Number::from(0))
            }
        }
    }

    #[test]
    fn random_numbers_compare_like_exact_decimals() {
        let seed = rand::random::<u64>();
        eprintln!("seed = {seed}");
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..20_000 {
            let (a, b) = (interesting(&mut rng), interesting(&mut rng));
            let want = reference_cmp(&a, &b);
            assert_eq!(
                Num::of(&a).cmp(Num::of(&b)),
                Some(want),
                "seed {seed}: {a} vs {b}"
            );
            assert_eq!(
                Scalar::num(&a) == Scalar::num(&b),
                want == Ordering::Equal,
                "seed {seed}: {a} == {b}"
            );
            // Through the filter language, both evaluators.
            let doc = p(json!({"x": a}));
            let eq = f(json!({"must": [{"key": "x", "match": b}]}));
            assert_eq!(
                both(&eq, Some(&doc)),
                want == Ordering::Equal,
                "seed {seed}: {a} match {b}"
            );
            for (op, ok) in [
                ("gt", want.is_gt()),
                ("gte", want.is_ge()),
                ("lt", want.is_lt()),
                ("lte", want.is_le()),
            ] {
                let r = f(json!({"must": [{"key": "x", "range": {op: b}}]}));
                assert_eq!(both(&r, Some(&doc)), ok, "seed {seed}: {a} {op} {b}");
            }
        }
    }

    /// Long `any` lists (hashed when compiled) agree with a scan.
    #[test]
    fn long_any_lists_agree_with_a_scan() {
        let seed = rand::random::<u64>();
        eprintln!("seed = {seed}");
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..200 {
            let pool: Vec<Number> = (0..64).map(|_| interesting(&mut rng)).collect();
            let n = rng.gen_range(0..40);
            let wanted: Vec<Value> = (0..n)
                .map(|_| match rng.gen_range(0..10) {
                    0 => json!(format!("{}", rng.gen_range(0..3))),
                    1 => json!(rng.gen::<bool>()),
                    _ => Value::Number(pool[rng.gen_range(0..pool.len())].clone()),
                })
                .collect();
            let filt = f(json!({"must": [{"key": "x", "match": {"any": wanted}}]}));
            let compiled = CompiledFilter::new(&filt).unwrap();
            for _ in 0..50 {
                let x = match rng.gen_range(0..8) {
                    0 => json!("1"),
                    1 => json!(true),
                    2 => json!([Value::Number(pool[rng.gen_range(0..64)].clone()), "0"]),
                    _ => Value::Number(pool[rng.gen_range(0..64)].clone()),
                };
                let doc = p(json!({ "x": x }));
                let xs: Vec<&Value> = match &x {
                    Value::Array(a) => a.iter().collect(),
                    v => vec![v],
                };
                let want = xs.iter().any(|x| {
                    wanted.iter().any(|w| match (x, w) {
                        (Value::Number(a), Value::Number(b)) => {
                            reference_cmp(a, b) == Ordering::Equal
                        }
                        _ => **x == *w,
                    })
                });
                assert_eq!(
                    compiled.matches(Some(&doc)),
                    want,
                    "seed {seed}: {x} in {wanted:?}"
                );
                assert_eq!(
                    matches(&filt, Some(&doc)),
                    want,
                    "seed {seed}: {x} in {wanted:?}"
                );
            }
        }
    }
}
