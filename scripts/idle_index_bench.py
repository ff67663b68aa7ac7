#!/usr/bin/env python3
"""Idle indexing, as a user sees it: loads N vectors (fewer than the flush
threshold) into a new collection with default settings through the HTTP
API, then leaves it alone and measures single-client search queries/s
through HTTP every second, with what the collection reports (points in the
appendable segment, indexed segments).

    python3 scripts/idle_index_bench.py --url http://127.0.0.1:8000 \
        --base bench-data/wordnet-base.fvecs --query bench-data/wordnet-query.fvecs \
        --n 13697 --seconds 15

Standard library only (one keep-alive HTTP connection).
"""
import argparse
import http.client
import json
import struct
import time
import urllib.parse


def read_fvecs(path, limit):
    out = []
    with open(path, "rb") as f:
        while len(out) < limit:
            h = f.read(4)
            if not h:
                break
            (d,) = struct.unpack("<i", h)
            out.append(list(struct.unpack(f"<{d}f", f.read(4 * d))))
    return out


class Api:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=600)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        self.conn.request(method, path, body=data, headers={"content-type": "application/json"})
        r = self.conn.getresponse()
        raw = r.read()
        if r.status >= 400 and not (method == "DELETE" and r.status == 404):
            raise SystemExit(f"{method} {path}: {r.status} {raw[:300]!r}")
        return json.loads(raw) if raw else None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--base", required=True)
    p.add_argument("--query", required=True)
    p.add_argument("--n", type=int, default=13697)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--collection", default="idle_bench")
    a = p.parse_args()
    base = read_fvecs(a.base, a.n)
    queries = read_fvecs(a.query, a.queries)
    api = Api(a.url)
    c = a.collection
    api.call("DELETE", f"/collections/{c}")
    api.call("POST", "/collections", {"name": c, "dimension": len(base[0])})
    t = time.time()
    for i in range(0, len(base), 500):
        pts = [{"id": i + j, "vector": v} for j, v in enumerate(base[i:i + 500])]
        api.call("PUT", f"/collections/{c}/points", {"points": pts})
    print(f"loaded {len(base)} vectors in {time.time() - t:.1f} s; then no writes")
    print("| seconds after the last write | appendable points | indexed segments | queries/s (1 client, HTTP) |")
    print("|---:|---:|---:|---:|")
    start = time.time()
    while time.time() - start < a.seconds:
        info = api.call("GET", f"/collections/{c}")
        t0 = time.time()
        for q in queries:
            api.call("POST", f"/collections/{c}/search", {"vector": q, "top_k": 10})
        qps = len(queries) / (time.time() - t0)
        print(f"| {t0 - start:.1f} | {info['appendable_points']} | {info['indexed_segments']} | {qps:.0f} |",
              flush=True)
        time.sleep(max(0.0, 1.0 - (time.time() - t0)))


if __name__ == "__main__":
    main()
