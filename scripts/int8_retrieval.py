#!/usr/bin/env python3
"""What `dtype: int8` changes for retrieval: the same WordNet glosses and
lemma queries embedded by two running embedding services (f32 and int8),
then exact cosine top-10 in each space.

    EMBEDDING__PORT=18011 ./target/release/embedding-service serve &
    EMBEDDING__PORT=18012 EMBEDDING__DTYPE=int8 ./target/release/embedding-service serve &
    python3 scripts/int8_retrieval.py --f32 http://127.0.0.1:18011 \
        --int8 http://127.0.0.1:18012 --n 20000 --queries 1000

Prints, per dtype, hit@10 (the query's own synset among the top 10 glosses:
the task) and, for int8, overlap@10 with the f32 top 10 (how many of the
f32 neighbours it keeps) and the cosine between the two vectors of each
gloss. Needs numpy; the TSV comes from scripts/wordnet_glosses.py.
"""
import argparse
import json
import sys
import urllib.request

import numpy as np


def embed(url, texts, batch=64):
    out = []
    for i in range(0, len(texts), batch):
        req = urllib.request.Request(
            url + "/embed", data=json.dumps({"inputs": texts[i:i + batch]}).encode(),
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            out.extend(json.loads(r.read()))
    v = np.asarray(out, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def top10(base, queries):
    s = queries @ base.T
    idx = np.argpartition(-s, 10, axis=1)[:, :10]
    return [set(row) for row in idx]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tsv", default="bench-data/wordnet-glosses.tsv")
    p.add_argument("--f32", required=True, help="URL of a service with dtype f32")
    p.add_argument("--int8", required=True, help="URL of a service with dtype int8")
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--queries", type=int, default=1000)
    a = p.parse_args()
    try:
        rows = [line.rstrip("\n").split("\t") for line in open(a.tsv, encoding="utf-8")]
    except FileNotFoundError:
        sys.exit(f"{a.tsv} missing: python3 scripts/wordnet_glosses.py --out {a.tsv}")
    rows = rows[:: max(1, len(rows) // a.n)][: a.n]
    glosses = [r[-1] for r in rows]
    step = max(1, len(rows) // a.queries)
    qi = list(range(0, len(rows), step))[: a.queries]
    queries = [rows[i][1].split(",")[0].replace("_", " ") for i in qi]
    got = {}
    for name, url in (("f32", a.f32), ("int8", a.int8)):
        info = json.loads(urllib.request.urlopen(url + "/info").read())
        if info.get("dtype") != name:
            sys.exit(f"{url} runs dtype {info.get('dtype')}, expected {name}")
        base, q = embed(url, glosses), embed(url, queries)
        got[name] = (base, q, top10(base, q))
    print(f"# {len(glosses)} glosses, {len(queries)} lemma queries, exact cosine top 10")
    print("| dtype | hit@10 (own synset) | overlap@10 with f32 | gloss cosine to f32: min / mean |")
    print("|---|---:|---:|---:|")
    f32_top = got["f32"][2]
    for name, (base, q, top) in got.items():
        hit = np.mean([i in t for i, t in zip(qi, top)])
        if name == "f32":
            print(f"| f32 | {hit:.4f} | 1 | 1 / 1 |")
            continue
        overlap = np.mean([len(t & f) / 10 for t, f in zip(top, f32_top)])
        cos = np.sum(base * got["f32"][0], axis=1)
        print(f"| {name} | {hit:.4f} | {overlap:.4f} | {cos.min():.4f} / {cos.mean():.5f} |")


if __name__ == "__main__":
    main()
