#!/usr/bin/env python3
"""Parity of a running embedding service against reference embeddings,
through HTTP (standard library only).

    parity.py URL REFERENCE_JSONL MIN_COSINE [--against OTHER_JSONL] [--save OUT_JSONL] [--label L]

Sends every reference text alone (`POST /embed`), then all texts in
mixed-length requests of 100, and checks:
- each single-text vector against the reference: cosine >= MIN_COSINE;
- each batched vector against the same text sent alone: cosine >= 0.9999
  (padding and batch composition must not change a result beyond the
  dtype's rounding);
- unit norm (the model's pipeline normalises).
`--against` adds a second comparison (e.g. the CPU f32 run from the same
weights) without a threshold; `--save` writes the single-text vectors.
Prints one JSON line with the worst cosines; exits 1 when a check fails.
"""
import argparse
import json
import math
import sys
import urllib.request


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def cosine(a, b):
    d = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return d / (na * nb)


def load(path):
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("reference")
    p.add_argument("min_cosine", type=float)
    p.add_argument("--against")
    p.add_argument("--save")
    p.add_argument("--label", default="")
    a = p.parse_args()
    refs = load(a.reference)
    other = load(a.against) if a.against else None
    singles, failures = [], []
    worst_ref, worst_other, worst_batch, worst_norm = 1.0, 1.0, 1.0, 0.0
    worst_text = ""
    for i, r in enumerate(refs):
        v = post(a.url + "/embed", {"inputs": r["text"]})[0]
        singles.append(v)
        c = cosine(v, r["embedding"])
        if c < worst_ref:
            worst_ref, worst_text = c, r["text"][:60]
        if c < a.min_cosine:
            failures.append(f"text {i}: cosine {c:.7f} < {a.min_cosine}")
        worst_norm = max(worst_norm, abs(math.sqrt(sum(x * x for x in v)) - 1.0))
        if other:
            worst_other = min(worst_other, cosine(v, other[i]["embedding"]))
    for start in range(0, len(refs), 100):
        chunk = refs[start : start + 100]
        vs = post(a.url + "/embed", {"inputs": [r["text"] for r in chunk]})
        for j, v in enumerate(vs):
            c = cosine(v, singles[start + j])
            worst_batch = min(worst_batch, c)
            if c < 0.9999:
                failures.append(f"text {start + j}: batched vs alone cosine {c:.7f}")
    if worst_norm > 1e-3:
        failures.append(f"norm off by {worst_norm}")
    if a.save:
        with open(a.save, "w", encoding="utf-8") as f:
            for r, v in zip(refs, singles):
                f.write(json.dumps({"text": r["text"], "embedding": v}) + "\n")
    out = {
        "label": a.label,
        "texts": len(refs),
        "min_cosine_vs_reference": round(worst_ref, 9),
        "worst_text": worst_text,
        "min_cosine_batched_vs_alone": round(worst_batch, 9),
        "max_norm_error": worst_norm,
        "threshold": a.min_cosine,
        "passed": not failures,
    }
    if other:
        out["min_cosine_vs_against"] = round(worst_other, 9)
    print(json.dumps(out), flush=True)
    for f in failures[:10]:
        print("  FAILED " + f, file=sys.stderr)
    sys.exit(0 if not failures else 1)


if __name__ == "__main__":
    main()
