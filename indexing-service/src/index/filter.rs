//! Payload filters: validation and evaluation of the filter language
//! (`must` / `should` / `must_not`; match, match any, range; dotted keys).

use crate::storage::codec::Payload;
use serde_json::Value;
use shared::wire::indexing::{Condition, FieldCondition, Filter, Match};

/// Checks a filter's shape; the message names what is wrong.
pub fn validate(f: &Filter) -> Result<(), String> {
    for c in f.must.iter().chain(&f.should).chain(&f.must_not) {
        match c {
            Condition::Filter(inner) => validate(inner)?,
            Condition::Field(fc) => {
                if fc.key.is_empty() {
                    return Err("condition key must not be empty".into());
                }
                match (&fc.r#match, &fc.range) {
                    (Some(_), Some(_)) | (None, None) => {
                        return Err(format!("condition on `{}` needs exactly one of `match` or `range`", fc.key))
                    }
                    (Some(Match::Value(v)), None) if v.is_object() || v.is_array() || v.is_null() => {
                        return Err(format!("`match` on `{}` takes a string, number or boolean, or {{\"any\": [...]}}", fc.key))
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// Values at a dotted key; arrays along the way fan out.
fn lookup<'a>(payload: &'a Payload, key: &str, out: &mut Vec<&'a Value>) {
    fn walk<'a>(v: &'a Value, parts: &[&str], out: &mut Vec<&'a Value>) {
        match (parts.first(), v) {
            (None, Value::Array(items)) => out.extend(items.iter()),
            (None, v) => out.push(v),
            (Some(p), Value::Object(m)) => {
                if let Some(x) = m.get(*p) {
                    walk(x, &parts[1..], out)
                }
            }
            (Some(_), Value::Array(items)) => items.iter().for_each(|x| walk(x, parts, out)),
            _ => {}
        }
    }
    let parts: Vec<&str> = key.split('.').collect();
    if let Some(first) = payload.get(parts[0]) {
        walk(first, &parts[1..], out);
    }
}

fn value_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn field_matches(fc: &FieldCondition, payload: Option<&Payload>) -> bool {
    let Some(p) = payload else { return false };
    let mut vals = Vec::new();
    lookup(p, &fc.key, &mut vals);
    if let Some(m) = &fc.r#match {
        return match m {
            Match::Value(want) => vals.iter().any(|v| value_eq(v, want)),
            Match::Any { any } => vals.iter().any(|v| any.iter().any(|w| value_eq(v, w))),
        };
    }
    if let Some(r) = &fc.range {
        return vals.iter().filter_map(|v| v.as_f64()).any(|x| {
            r.gt.is_none_or(|b| x > b)
                && r.gte.is_none_or(|b| x >= b)
                && r.lt.is_none_or(|b| x < b)
                && r.lte.is_none_or(|b| x <= b)
        });
    }
    false
}

fn cond_matches(c: &Condition, payload: Option<&Payload>) -> bool {
    match c {
        Condition::Field(fc) => field_matches(fc, payload),
        Condition::Filter(f) => matches(f, payload),
    }
}

/// Whether a point with this payload passes the filter.
pub fn matches(f: &Filter, payload: Option<&Payload>) -> bool {
    f.must.iter().all(|c| cond_matches(c, payload))
        && (f.should.is_empty() || f.should.iter().any(|c| cond_matches(c, payload)))
        && !f.must_not.iter().any(|c| cond_matches(c, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(v: Value) -> Filter {
        let f: Filter = serde_json::from_value(v).unwrap();
        validate(&f).unwrap();
        f
    }
    fn p(v: Value) -> Payload {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn language() {
        let doc =
            p(json!({"tag": "news", "year": 2005, "meta": {"lang": "en", "tags": ["a", "b"]}}));
        assert!(matches(
            &f(json!({"must": [{"key": "tag", "match": "news"}]})),
            Some(&doc)
        ));
        assert!(!matches(
            &f(json!({"must": [{"key": "tag", "match": "sport"}]})),
            Some(&doc)
        ));
        assert!(matches(
            &f(json!({"must": [{"key": "tag", "match": {"any": ["x", "news"]}}]})),
            Some(&doc)
        ));
        assert!(matches(
            &f(json!({"must": [{"key": "year", "range": {"gte": 2000, "lt": 2010}}]})),
            Some(&doc)
        ));
        assert!(!matches(
            &f(json!({"must": [{"key": "year", "range": {"gt": 2005}}]})),
            Some(&doc)
        ));
        assert!(matches(
            &f(json!({"must": [{"key": "meta.lang", "match": "en"}]})),
            Some(&doc)
        ));
        assert!(matches(
            &f(json!({"must": [{"key": "meta.tags", "match": "b"}]})),
            Some(&doc)
        ));
        assert!(matches(
            &f(json!({"should": [{"key": "tag", "match": "x"}, {"key": "year", "match": 2005}]})),
            Some(&doc)
        ));
        assert!(!matches(
            &f(json!({"must_not": [{"key": "tag", "match": "news"}]})),
            Some(&doc)
        ));
        assert!(matches(
            &f(json!({"must": [{"must_not": [{"key": "tag", "match": "x"}]}]})),
            Some(&doc)
        ));
        assert!(!matches(
            &f(json!({"must": [{"key": "tag", "match": "news"}]})),
            None
        ));
        let bad: Filter = serde_json::from_value(json!({"must": [{"key": "t"}]})).unwrap();
        assert!(validate(&bad).is_err());
    }
}
