#!/usr/bin/env python3
"""Retrieval quality of dense, keyword (BM25) and hybrid (RRF) search
through the HTTP API, on WordNet: the documents are synset glosses, a
query is one synset's lemmas ("abstraction, abstract entity"), and the one
relevant document is that synset's gloss.

Needs the stack running (`scripts/run.sh`, or both binaries by hand):

    python3 scripts/retrieval_bench.py --url http://127.0.0.1:8000 \
        --glosses ../shared/datasets/wordnet-glosses.tsv [--docs 117659] [--queries 1000]

Loads the glosses through `POST /embed` into a new collection (text
embedded by the embedding service, BM25 index on `content`), then asks
each query with `mode` dense, keyword and hybrid (`top_k` 10) and prints
recall@10, nDCG@10 (one relevant document: 1 / log2(rank + 1)), MRR@10
and q/s (one client) per mode, as a markdown table.
"""
import argparse
import json
import math
import random
import sys
import time
import urllib.request


def call(url, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--glosses", required=True)
    ap.add_argument("--docs", type=int, default=0, help="first N glosses (0: all)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--collection", default="wordnet_retrieval")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="reuse the collection if loaded")
    a = ap.parse_args()

    rows = [l.rstrip("\n").split("\t") for l in open(a.glosses, encoding="utf-8")]
    if a.docs:
        rows = rows[: a.docs]
    st, info = call(a.url, "GET", f"/collections/{a.collection}")
    if not (a.keep and st == 200 and info["points"] == len(rows)):
        call(a.url, "DELETE", f"/collections/{a.collection}")
        st, b = call(a.url, "POST", "/collections", {"name": a.collection})
        assert st == 201, b
        t0 = time.time()
        batch = 256
        for i in range(0, len(rows), batch):
            docs = [{"id": j, "content": rows[j][2]} for j in range(i, min(i + batch, len(rows)))]
            st, b = call(a.url, "POST", "/embed", {"collection": a.collection, "documents": docs})
            assert st == 200, b
            if (i // batch) % 40 == 0:
                print(f"  loaded {i + len(docs)}/{len(rows)} ({time.time() - t0:.0f} s)",
                      file=sys.stderr)
        print(f"loaded {len(rows)} glosses in {time.time() - t0:.0f} s", file=sys.stderr)
    # Wait for the background index builds.
    for _ in range(600):
        st, info = call(a.url, "GET", f"/collections/{a.collection}")
        if info["building_segments"] == 0:
            break
        time.sleep(1)

    rng = random.Random(a.seed)
    picked = rng.sample(range(len(rows)), a.queries)
    queries = [(", ".join(l.replace("_", " ") for l in rows[i][1].split(",")), i) for i in picked]
    print(f"{len(rows)} documents, {len(queries)} queries; collection: {info}", file=sys.stderr)
    out = []
    for mode in ["dense", "keyword", "hybrid"]:
        hits = 0
        ndcg = 0.0
        mrr = 0.0
        t0 = time.time()
        for q, rel in queries:
            st, b = call(a.url, "POST", f"/collections/{a.collection}/search",
                         {"query": q, "top_k": 10, "mode": mode, "with_payload": False})
            assert st == 200, b
            ids = [h["id"] for h in b["results"]]
            if rel in ids:
                r = ids.index(rel) + 1
                hits += 1
                ndcg += 1.0 / math.log2(r + 1)
                mrr += 1.0 / r
        dt = time.time() - t0
        n = len(queries)
        out.append((mode, hits / n, ndcg / n, mrr / n, n / dt))
    print("| mode | recall@10 | nDCG@10 | MRR@10 | q/s (1 client) |")
    print("|---|---|---|---|---|")
    for mode, r, nd, m, qps in out:
        print(f"| {mode} | {r:.3f} | {nd:.3f} | {m:.3f} | {qps:.0f} |")


if __name__ == "__main__":
    main()
