//! Payload numbers through the storage engine: read back bit-exactly, and
//! compared exactly by filters (integers beyond 2^53, mixed integer/float)
//! in the appendable segment, after sealing and after reopening (WAL
//! replay). Counts are checked against a reference that compares exact
//! decimal expansions. Seeds are printed; set `FILTER_SEED` to replay one.

use indexing_service::collection::{
    Collection, CollectionConfig, FlushThreshold, NewPoint, Storage,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Number, Value};
use shared::wire::indexing::{Filter, Metric, PointId};
use std::cmp::Ordering;
use std::path::Path;

fn seed() -> u64 {
    let s = std::env::var("FILTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed = {s}");
    s
}

fn open(dir: &Path, create: bool) -> (Storage, std::sync::Arc<Collection>) {
    let s = Storage::open(dir).unwrap();
    let c = if create {
        let mut cfg = CollectionConfig::new("n", 2, Metric::Euclidean);
        // Sealed only by an explicit flush.
        cfg.flush_threshold = FlushThreshold {
            vectors: 1 << 20,
            bytes: 1 << 30,
        };
        s.create(cfg).unwrap()
    } else {
        s.get("n").unwrap()
    };
    (s, c)
}

fn point(id: u64, payload: Value) -> NewPoint {
    NewPoint {
        id: Some(PointId::Num(id)),
        vector: vec![id as f32, 1.0],
        payload: Some(payload),
        content: None,
    }
}

fn filter(text: &str) -> Filter {
    serde_json::from_str(text).unwrap()
}

/// Bit-exact equality: integers stay integers of the same value, floats
/// keep their bits (so `-0.0` is not `0.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.is_f64() == y.is_f64()
                && match (x.as_f64(), y.as_f64()) {
                    _ if !x.is_f64() => x == y,
                    (Some(p), Some(q)) => p.to_bits() == q.to_bits(),
                    _ => false,
                }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Every stored payload is the written one, bit for bit.
fn check_payloads(c: &Collection, want: &[(u64, Value)], stage: &str) {
    let ids: Vec<PointId> = want.iter().map(|(i, _)| PointId::Num(*i)).collect();
    let got = c.get(&ids).unwrap();
    assert_eq!(got.len(), want.len(), "{stage}: points read back");
    let mut changed = Vec::new();
    for (g, (id, w)) in got.iter().zip(want) {
        assert_eq!(g.id, PointId::Num(*id));
        let g = Value::Object(g.payload.clone().unwrap());
        if !same(&g, w) {
            changed.push(format!("{id}: wrote {w}, read {g}"));
        }
    }
    assert!(
        changed.is_empty(),
        "{stage}: {} payloads changed: {changed:?}",
        changed.len()
    );
}

// ------------------------------------------------ numbers that once changed

#[test]
fn stored_numbers_survive_sealing_and_reopen() {
    let s = seed();
    let mut rng = StdRng::seed_from_u64(s);
    let dir = tempfile::tempdir().unwrap();
    let (storage, c) = open(dir.path(), true);
    let mut written = vec![
        (1, json!({"big": 9007199254740993u64})),
        (2, json!({"big": 9007199254740992u64})),
        (3, json!({"m": 3.4028234663852886e38})),
        (4, json!({"x": 0.9239764016767943})),
        (
            5,
            json!({"x": -0.0, "list": [1e-300, 5e-324, -1.7976931348623157e308]}),
        ),
        (6, json!({"i": i64::MIN, "u": u64::MAX})),
    ];
    // 300 random doubles (bit patterns), the kind that came back changed.
    for id in 100..400 {
        let x = loop {
            let x = f64::from_bits(rng.gen());
            if x.is_finite() {
                break x;
            }
        };
        written.push((id, json!({"x": x, "y": rng.gen::<f64>()})));
    }
    c.upsert(written.iter().map(|(i, p)| point(*i, p.clone())).collect())
        .unwrap();
    let counts = [
        (
            r#"{"must": [{"key": "big", "match": 9007199254740993}]}"#,
            1,
        ),
        (
            r#"{"must": [{"key": "big", "match": 9007199254740992}]}"#,
            1,
        ),
        (
            r#"{"must": [{"key": "big", "match": {"any": [9007199254740993]}}]}"#,
            1,
        ),
        (
            r#"{"must": [{"key": "big", "range": {"gt": 9007199254740992}}]}"#,
            1,
        ),
        (
            r#"{"must": [{"key": "big", "range": {"gt": 9007199254740992.0}}]}"#,
            1,
        ),
        (
            r#"{"must": [{"key": "big", "range": {"lt": 9007199254740993}}]}"#,
            1,
        ),
        (
            r#"{"must": [{"key": "m", "range": {"gte": 3.4028234663852886e+38}}]}"#,
            1,
        ),
        (
            r#"{"must": [{"key": "m", "range": {"gt": 3.4028234663852886e+38}}]}"#,
            0,
        ),
        (
            r#"{"must": [{"key": "m", "match": 3.4028234663852886e+38}]}"#,
            1,
        ),
        (
            r#"{"must": [{"key": "x", "match": 0.9239764016767943}]}"#,
            1,
        ),
        (
            r#"{"must": [{"key": "x", "match": 0.9239764016767944}]}"#,
            0,
        ),
        (
            r#"{"must": [{"key": "x", "range": {"gte": 0.9239764016767943, "lte": 0.9239764016767943}}]}"#,
            1,
        ),
        (
            r#"{"must": [{"key": "i", "match": -9223372036854775808}]}"#,
            1,
        ),
        (
            r#"{"must": [{"key": "u", "range": {"gt": 18446744073709551614}}]}"#,
            1,
        ),
        (
            r#"{"must": [{"key": "u", "range": {"gte": 18446744073709551616.0}}]}"#,
            0,
        ),
        (r#"{"must": [{"key": "list", "match": 5e-324}]}"#, 1),
    ];
    let check = |c: &Collection, stage: &str| {
        for (f, n) in counts {
            assert_eq!(
                c.count(Some(&filter(f))).unwrap(),
                n,
                "seed {s} {stage}: {f}"
            );
        }
        check_payloads(c, &written, stage);
    };
    check(&c, "appendable");
    c.flush().unwrap();
    c.wait_idle();
    assert_eq!(c.info().sealed_segments, 1);
    check(&c, "sealed");
    drop(c);
    drop(storage);
    let (_storage, c) = open(dir.path(), false);
    check(&c, "reopened");
}

// ------------------------------------------------------ randomised, exact

/// Exact decimal form of a JSON number: (negative, integer digits, fraction
/// digits), no leading/trailing zeros. Decimal strings, not binary
/// arithmetic: independent of the code under test.
fn decimal(n: &Number) -> (bool, String, String) {
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

type Dec = (bool, String, String);

fn cmp_dec(a: &Dec, b: &Dec) -> Ordering {
    let mag = (a.1.len(), &a.1, &a.2).cmp(&(b.1.len(), &b.1, &b.2));
    match (a.0, b.0) {
        (false, false) => mag,
        (true, true) => mag.reverse(),
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
    }
}

/// Numbers near the places where doubles and integers part ways.
fn interesting(rng: &mut StdRng) -> Number {
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
            let x = match rng.gen_range(0..4) {
                0 if x != 0.0 => f64::from_bits(x.to_bits() + 1),
                1 if x != 0.0 => f64::from_bits(x.to_bits() - 1),
                _ => x,
            };
            Number::from_f64(x).unwrap_or_else(|| Number::from(0))
        }
    }
}

/// A random query and its reference predicate over the values at `x`.
enum Query {
    Eq(Vec<Number>),
    Range([Option<Number>; 4]),
}

impl Query {
    fn random(rng: &mut StdRng, pool: &[Number]) -> Self {
        let pick = |rng: &mut StdRng| {
            if rng.gen_bool(0.8) {
                pool[rng.gen_range(0..pool.len())].clone()
            } else {
                interesting(rng)
            }
        };
        match rng.gen_range(0..3) {
            0 => Query::Eq(vec![pick(rng)]),
            1 => Query::Eq((0..rng.gen_range(2..24)).map(|_| pick(rng)).collect()),
            _ => {
                let mut b: [Option<Number>; 4] = Default::default();
                while b.iter().all(Option::is_none) {
                    for x in b.iter_mut() {
                        *x = rng.gen_bool(0.4).then(|| pick(rng));
                    }
                }
                Query::Range(b)
            }
        }
    }

    fn filter(&self) -> Filter {
        let v = match self {
            Query::Eq(w) if w.len() == 1 => json!({"key": "x", "match": w[0]}),
            Query::Eq(w) => json!({"key": "x", "match": {"any": w}}),
            Query::Range([gt, gte, lt, lte]) => {
                let mut r = serde_json::Map::new();
                for (k, b) in [("gt", gt), ("gte", gte), ("lt", lt), ("lte", lte)] {
                    if let Some(b) = b {
                        r.insert(k.into(), Value::Number(b.clone()));
                    }
                }
                json!({"key": "x", "range": r})
            }
        };
        serde_json::from_value(json!({"must": [v]})).unwrap()
    }

    /// The reference predicate on one number at `x`, by exact decimals
    /// (computed once per query).
    fn reference(&self) -> impl Fn(&Dec) -> bool {
        enum R {
            Eq(Vec<Dec>),
            Range([Option<Dec>; 4]),
        }
        let r = match self {
            Query::Eq(w) => R::Eq(w.iter().map(decimal).collect()),
            Query::Range(b) => R::Range(b.clone().map(|b| b.as_ref().map(decimal))),
        };
        move |x: &Dec| match &r {
            R::Eq(w) => w.iter().any(|w| cmp_dec(x, w) == Ordering::Equal),
            R::Range(b) => {
                let ok = [
                    Ordering::is_gt,
                    Ordering::is_ge,
                    Ordering::is_lt,
                    Ordering::is_le,
                ];
                b.iter()
                    .zip(ok)
                    .all(|(b, ok)| b.as_ref().is_none_or(|b| ok(cmp_dec(x, b))))
            }
        }
    }
}

/// The numbers at `x` in a payload (an array fans out; strings, booleans
/// and a missing key give none).
fn numbers(payload: &Value) -> Vec<Dec> {
    match &payload["x"] {
        Value::Number(n) => vec![decimal(n)],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_number().map(decimal))
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn random_numbers_filter_like_exact_arithmetic() {
    let s = seed();
    let mut rng = StdRng::seed_from_u64(s);
    let dir = tempfile::tempdir().unwrap();
    let (storage, c) = open(dir.path(), true);
    let pool: Vec<Number> = (0..120).map(|_| interesting(&mut rng)).collect();
    let gen_points = |rng: &mut StdRng, ids: std::ops::Range<u64>| -> Vec<(u64, Value)> {
        ids.map(|id| {
            let n = |rng: &mut StdRng| Value::Number(pool[rng.gen_range(0..pool.len())].clone());
            let x = match rng.gen_range(0..20) {
                0 => json!({"y": 1}),
                1 => json!({"x": n(rng).to_string()}),
                2 => json!({"x": [n(rng), n(rng), "1"]}),
                _ => json!({ "x": n(rng) }),
            };
            (id, x)
        })
        .collect()
    };
    let mut written = gen_points(&mut rng, 0..300);
    c.upsert(written.iter().map(|(i, p)| point(*i, p.clone())).collect())
        .unwrap();
    let queries: Vec<Query> = (0..150).map(|_| Query::random(&mut rng, &pool)).collect();
    let check = |c: &Collection, written: &[(u64, Value)], stage: &str| {
        let nums: Vec<Vec<Dec>> = written.iter().map(|(_, p)| numbers(p)).collect();
        for q in &queries {
            let holds = q.reference();
            let want = nums.iter().filter(|xs| xs.iter().any(&holds)).count();
            let f = q.filter();
            assert_eq!(
                c.count(Some(&f)).unwrap(),
                want,
                "seed {s} {stage}: {}",
                serde_json::to_string(&f).unwrap()
            );
        }
        check_payloads(c, written, stage);
    };
    check(&c, &written, "appendable");
    c.flush().unwrap();
    c.wait_idle();
    assert_eq!(c.info().sealed_segments, 1);
    check(&c, &written, "sealed");
    // More points that stay in the WAL and the appendable segment.
    let more = gen_points(&mut rng, 300..450);
    c.upsert(more.iter().map(|(i, p)| point(*i, p.clone())).collect())
        .unwrap();
    written.extend(more);
    check(&c, &written, "sealed + appendable");
    drop(c);
    drop(storage);
    let (_storage, c) = open(dir.path(), false);
    check(&c, &written, "reopened (sealed + WAL replay)");
}
