#!/usr/bin/env python3
"""Filtered vector search at 0.1%, 1%, 10% and 50% selectivity: this
service through its HTTP API with and without a payload index on the
filtered field, and Qdrant's engine (`qdrant-edge-py`, in this process,
with an integer payload index on the same field), on the same vectors and
filters in one run.

    python3 scripts/filtered_bench.py --url http://127.0.0.1:8000 \
        --vectors bench-data/wordnet-117k.npy [--queries 1000] [--seconds 5] \
        [--export-from wordnet_retrieval]

`--export-from NAME` first writes `--vectors` from collection NAME on the
same service (scroll with vectors, in id order) when the file does not
exist: e.g. the collection `scripts/retrieval_bench.py` loads.

Vectors: a float32 .npy of unit vectors (e.g. the 117,659 all-MiniLM-L6-v2
WordNet gloss embeddings); the last `--queries` rows are held out as
queries. Each point gets `{"bucket": b}` with `b` uniform in 0..999
(seeded); the filters are `bucket == 0` (0.1%), `bucket < 10` (1%),
`bucket < 100` (10%) and `bucket < 500` (50%). Ground truth: exact
filtered top-10 by cosine (numpy). Prints a markdown table of q/s (one
client, sequential) and recall@10 per cell, and the ratio against Qdrant's
engine.
"""
import argparse
import base64
import http.client
import json
import shutil
import sys
import tempfile
import time
import urllib.parse

import numpy as np

K = 10
CELLS = [("0.1%", {"key": "bucket", "match": 0}, lambda b: b == 0),
         ("1%", {"key": "bucket", "range": {"lt": 10}}, lambda b: b < 10),
         ("10%", {"key": "bucket", "range": {"lt": 100}}, lambda b: b < 100),
         ("50%", {"key": "bucket", "range": {"lt": 500}}, lambda b: b < 500)]


class Conn:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        self.c.request(method, path, body=data, headers={"content-type": "application/json"})
        r = self.c.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)


def b64(v):
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()


def load_ours(c, name, base, buckets, indexed):
    c.call("DELETE", f"/collections/{name}")
    # One segment, as Qdrant's below (`default_segment_number=1`): the
    # flush threshold above the collection, then idle indexing seals it.
    st, b = c.call("POST", "/collections", {"name": name, "dimension": base.shape[1],
                                            "flush_threshold": {"vectors": 1000000}})
    assert st == 201, b
    if indexed:
        st, b = c.call("PUT", f"/collections/{name}/index?wait=true",
                       {"field_name": "bucket", "field_schema": "integer"})
        assert st == 200, b
    t0 = time.time()
    for i in range(0, len(base), 1000):
        pts = [{"id": i + j, "vector": b64(v), "metadata": {"bucket": int(buckets[i + j])}}
               for j, v in enumerate(base[i:i + 1000])]
        st, b = c.call("PUT", f"/collections/{name}/points", {"points": pts})
        assert st == 200, b
    # Sealed and indexed: the flush threshold, then idle indexing.
    while True:
        st, info = c.call("GET", f"/collections/{name}")
        if info["building_segments"] == 0 and info["appendable_points"] == 0:
            break
        time.sleep(1)
    print(f"{name}: {len(base)} points loaded and indexed in {time.time() - t0:.0f} s "
          f"({info['sealed_segments']} segments)", file=sys.stderr, flush=True)


def run_ours(c, name, queries, flt, gt, seconds):
    bodies = [json.dumps({"vector": b64(q), "top_k": K, "filter": {"must": [flt]},
                          "with_payload": False}).encode() for q in queries]
    path = f"/collections/{name}/search"

    def one(body):
        c.c.request("POST", path, body=body, headers={"content-type": "application/json"})
        r = c.c.getresponse()
        raw = r.read()
        assert r.status == 200, raw[:300]
        return raw

    for body in bodies[:50]:
        one(body)
    found, done = [], 0
    t = time.perf_counter()
    while True:
        for body in bodies:
            raw = one(body)
            if done < len(bodies):
                found.append([h["id"] for h in json.loads(raw)["results"]])
            done += 1
        if time.perf_counter() - t >= seconds:
            break
    return done / (time.perf_counter() - t), recall(found, gt)


def run_qdrant(base, buckets, queries, cells, gts, seconds):
    import qdrant_edge as q
    path = tempfile.mkdtemp(prefix="qdrant-edge-")
    try:
        cfg = q.EdgeConfig(
            vectors=q.EdgeVectorParams(size=base.shape[1], distance=q.Distance.Cosine),
            optimizers=q.EdgeOptimizersConfig(default_segment_number=1))
        s = q.EdgeShard.create(path, cfg)
        s.update(q.UpdateOperation.create_field_index("bucket", q.PayloadSchemaType.Integer))
        t0 = time.time()
        bl = base.tolist()
        for i in range(0, len(bl), 1000):
            s.update(q.UpdateOperation.upsert_points(
                [q.Point(i + j, v, {"bucket": int(buckets[i + j])}) for j, v in enumerate(bl[i:i + 1000])]))
        s.flush()
        s.optimize()
        print(f"qdrant-edge: loaded and indexed in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        out = []
        ql = queries.tolist()
        for (label, flt, _), gt in zip(cells, gts):
            if "match" in flt:
                cond = q.FieldCondition(key="bucket", match=q.MatchValue(flt["match"]))
            else:
                cond = q.FieldCondition(key="bucket", range=q.RangeFloat(lt=float(flt["range"]["lt"])))
            f = q.Filter(must=[cond])
            reqs = [q.SearchRequest(query=q.Query.Nearest(v), limit=K, filter=f) for v in ql]
            for r in reqs[:50]:
                s.search(r)
            found, done = [], 0
            t = time.perf_counter()
            while True:
                for r in reqs:
                    hits = s.search(r)
                    if done < len(reqs):
                        found.append([int(h.id) for h in hits])
                    done += 1
                if time.perf_counter() - t >= seconds:
                    break
            out.append((done / (time.perf_counter() - t), recall(found, gt)))
        s.close()
        return out
    finally:
        shutil.rmtree(path, ignore_errors=True)


def recall(found, gt):
    return float(np.mean([len(set(f) & set(g)) / max(1, len(g)) for f, g in zip(found, gt)]))


def export(url, name, path):
    c = Conn(url)
    ids, vecs, cursor = [], [], None
    while True:
        body = {"limit": 2000, "with_vector": True, "with_payload": False}
        if cursor is not None:
            body["cursor"] = cursor
        st, r = c.call("POST", f"/collections/{name}/points/scroll", body)
        assert st == 200, r
        for p in r["points"]:
            ids.append(p["id"])
            vecs.append(p["vector"])
        cursor = r.get("next_cursor")
        if cursor is None:
            break
    v = np.asarray(vecs, dtype=np.float32)[np.argsort(ids)]
    np.save(path, v)
    print(f"exported {v.shape} from {name} to {path}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--vectors", required=True)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip", default="", help="comma list of: plain,indexed,qdrant")
    ap.add_argument("--export-from", help="collection to export --vectors from when missing")
    a = ap.parse_args()
    import os
    if not os.path.exists(a.vectors):
        if not a.export_from:
            raise SystemExit(f"{a.vectors} is missing: give --export-from COLLECTION "
                             "(e.g. the one scripts/retrieval_bench.py loads)")
        export(a.url, a.export_from, a.vectors)
    skip = set(a.skip.split(",")) - {""}
    allv = np.load(a.vectors).astype(np.float32)
    allv /= np.linalg.norm(allv, axis=1, keepdims=True)
    base, queries = allv[:-a.queries], allv[-a.queries:]
    buckets = np.random.default_rng(a.seed).integers(0, 1000, len(base))
    gts = []
    for _, _, pred in CELLS:
        ids = np.nonzero(pred(buckets))[0]
        sims = queries @ base[ids].T
        top = np.argsort(-sims, axis=1)[:, :K]
        gts.append([list(ids[t]) for t in top])
    print(f"{len(base)} vectors of {base.shape[1]}, {len(queries)} held-out queries",
          file=sys.stderr)
    c = Conn(a.url)
    cols = {}
    for name, indexed in [("plain", False), ("indexed", True)]:
        if name in skip:
            continue
        coll = f"filtered_bench_{name}"
        load_ours(c, coll, base, buckets, indexed)
        cols[name] = [run_ours(c, coll, queries, flt, gt, a.seconds)
                      for (_, flt, _), gt in zip(CELLS, gts)]
    if "qdrant" not in skip:
        cols["qdrant"] = run_qdrant(base, buckets, queries, CELLS, gts, a.seconds)
    names = {"plain": "ours, no payload index (HTTP)", "indexed": "ours, payload index (HTTP)",
             "qdrant": "qdrant-edge, payload index (in process)"}
    print("| selectivity | " + " | ".join(f"{names[k]} q/s (recall@10)" for k in cols)
          + (" | indexed / qdrant-edge |" if "indexed" in cols and "qdrant" in cols else " |"))
    print("|---" * (len(cols) + 1 + ("indexed" in cols and "qdrant" in cols)) + "|")
    for i, (label, _, _) in enumerate(CELLS):
        row = f"| {label} | " + " | ".join(f"{cols[k][i][0]:,.0f} ({cols[k][i][1]:.3f})" for k in cols)
        if "indexed" in cols and "qdrant" in cols:
            row += f" | {cols['indexed'][i][0] / cols['qdrant'][i][0]:.2f}x"
        print(row + " |")


if __name__ == "__main__":
    main()
