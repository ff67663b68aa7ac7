#!/usr/bin/env python3
"""A large collection loaded through the HTTP API: load time, the server's
peak memory while it seals and indexes segments, disk, and q/s and recall
at the end.

Creates a collection with `max_segment_size` (KiB of vectors) and a flush
threshold of that many points, loads N synthetic clustered vectors (unit
centres plus Gaussian noise, cosine; generated in chunks from fixed seeds so
the ground truth can regenerate them) through `PUT .../points` in batches of
1,000 with base64 vectors and a small payload, waits until every segment is
sealed and indexed, then reports:

- load time (first request to the last segment indexed) and vectors/s;
- the server's peak RSS (`VmHWM` of /proc/PID/status, which counts
  memory-mapped file pages it touched as well as its heap) and the peak of
  its anonymous memory (`RssAnon`, sampled every 0.2 s), each beside the
  raw vector bytes of one segment and of the collection;
- disk used by the collection's directory;
- queries/s from one client (keep-alive, base64 vectors, top 10, default
  ef) and recall@10 against the exact top 10 (numpy, in chunks).

    ./target/release/indexing-service &          # INDEXING__PORT=18400
    python3 scripts/large_load_bench.py --url http://127.0.0.1:18400 \\
        --data-dir data --n 1000000 --segment-points 1000000

Needs numpy. The server must be local (its pid is found from the port, or
give --pid). Start it fresh so that its peak RSS is this run's.
"""
import argparse
import base64
import json
import os
import subprocess
import threading
import time
import urllib.parse

import numpy as np

from http_search_bench import Conn, server_pid, timed_queries

K = 10
CHUNK = 100_000
CENTRES = 2_000


def centres(dim, seed):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((CENTRES, dim)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def chunk(i, n, dim, cs, seed, sigma):
    """Rows i*CHUNK .. min(n, (i+1)*CHUNK) of the data set (unit vectors)."""
    rng = np.random.default_rng([seed, i])
    rows = min(n, (i + 1) * CHUNK) - i * CHUNK
    x = cs[rng.integers(0, CENTRES, rows)] + rng.standard_normal((rows, dim)).astype(np.float32) * sigma
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def status(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0]) * 1024
    return out


class Sampler(threading.Thread):
    """Peak RssAnon and RSS of `pid`, sampled every 0.2 s."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.anon, self.rss, self.stop = pid, 0, 0, False

    def run(self):
        while not self.stop:
            s = status(self.pid)
            self.anon = max(self.anon, s["RssAnon"])
            self.rss = max(self.rss, s["VmRSS"])
            time.sleep(0.2)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--pid", type=int)
    p.add_argument("--data-dir", required=True, help="the server's data directory (for disk use)")
    p.add_argument("--collection", default="large")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--segment-points", type=int, default=1_000_000,
                   help="max_segment_size in points (sent as KiB of vectors) and the flush threshold")
    p.add_argument("--m", type=int, help="hnsw.m (default: the collection default, 24)")
    p.add_argument("--ef-construction", type=int, help="hnsw.ef_construction (default: the collection default, 200)")
    p.add_argument("--sigma", type=float, default=0.04, help="noise per dimension around a centre")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-max-segment-size", action="store_true",
                   help="leave max_segment_size out of the create request (builds without the setting)")
    a = p.parse_args()

    pid = a.pid or server_pid(urllib.parse.urlparse(a.url).port or 80)
    if pid is None:
        raise SystemExit("cannot find the server's pid (give --pid)")
    c = Conn(a.url)
    name = a.collection
    c.call("DELETE", f"/collections/{name}")
    seg_kb = a.segment_points * a.dim * 4 // 1024
    create = {
        "name": name, "dimension": a.dim, "metric": "cosine",
        "max_segment_size": seg_kb,
        "flush_threshold": {"vectors": a.segment_points, "bytes": 16 << 30}}
    hnsw = {k: v for k, v in (("m", a.m), ("ef_construction", a.ef_construction)) if v is not None}
    if hnsw:
        create["hnsw"] = hnsw
    if a.no_max_segment_size:
        del create["max_segment_size"]
    c.call("POST", "/collections", create)
    cs = centres(a.dim, a.seed)
    sampler = Sampler(pid)
    sampler.start()
    t0 = time.time()
    sent = 0
    for i in range(0, (a.n + CHUNK - 1) // CHUNK):
        x = chunk(i, a.n, a.dim, cs, a.seed, a.sigma)
        for j in range(0, len(x), 1000):
            part = x[j:j + 1000]
            base = i * CHUNK + j
            pts = ",".join(
                '{"id":%d,"vector":"%s","payload":{"g":%d}}'
                % (base + k, base64.b64encode(v.astype("<f4").tobytes()).decode(), (base + k) % 100)
                for k, v in enumerate(part))
            st, raw = c.raw("PUT", f"/collections/{name}/points", ('{"points":[%s]}' % pts).encode())
            if st != 200:
                raise SystemExit(f"upsert: {st} {raw[:300]!r}")
            sent += len(part)
        print(f"  sent {sent:,} ({time.time() - t0:.0f} s, server RSS {status(pid)['VmRSS'] / 2**30:.2f} GiB)",
              flush=True)
    t_sent = time.time() - t0
    while True:
        info = c.call("GET", f"/collections/{name}")
        if info["appendable_points"] == 0 and info["building_segments"] == 0 \
                and info["indexed_segments"] == info["sealed_segments"]:
            break
        time.sleep(1)
    t_load = time.time() - t0
    sampler.stop = True
    sampler.join()
    hwm = status(pid)["VmHWM"]
    disk = int(subprocess.run(["du", "-sb", os.path.join(a.data_dir, "collections", name)],
                              capture_output=True, text=True).stdout.split()[0] or 0) \
        if os.path.isdir(os.path.join(a.data_dir, "collections", name)) else \
        int(subprocess.run(["du", "-sb", a.data_dir], capture_output=True, text=True).stdout.split()[0])
    raw_seg = min(a.segment_points, a.n) * a.dim * 4
    raw_all = a.n * a.dim * 4

    # Queries from the same distribution (another seed); exact top 10.
    rng = np.random.default_rng([a.seed, 999_999])
    q = cs[rng.integers(0, CENTRES, a.queries)] + rng.standard_normal((a.queries, a.dim)).astype(np.float32) * a.sigma
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    best_s = np.full((a.queries, K), -np.inf, dtype=np.float32)
    best_i = np.zeros((a.queries, K), dtype=np.int64)
    for i in range(0, (a.n + CHUNK - 1) // CHUNK):
        x = chunk(i, a.n, a.dim, cs, a.seed, a.sigma)
        s = q @ x.T
        top = np.argpartition(-s, K, axis=1)[:, :K]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        cand_i = np.concatenate([best_i, top + i * CHUNK], 1)
        o = np.argsort(-cand_s, axis=1)[:, :K]
        best_s, best_i = np.take_along_axis(cand_s, o, 1), np.take_along_axis(cand_i, o, 1)
    bodies = [json.dumps({"vector": base64.b64encode(v.astype("<f4").tobytes()).decode(), "top_k": K}).encode()
              for v in q]
    c = Conn(a.url)  # the server closes a connection left idle meanwhile
    path = f"/collections/{name}/search"
    for b in bodies[:200]:
        c.raw("POST", path, b)
    found, done, dt = timed_queries(c, path, bodies, a.seconds)
    qps = done / dt
    rec = sum(len(set(f) & set(g.tolist())) for f, g in zip(found, best_i)) / (K * len(found))

    gib = 2 ** 30
    print(f"\n{a.n:,} vectors x {a.dim} (cosine), max_segment_size {seg_kb:,} KiB "
          f"({a.segment_points:,} points), m {a.m or 'default (24)'}, "
          f"ef_construction {a.ef_construction or 'default (200)'}")
    print(f"segments: {info['sealed_segments']} sealed, all indexed; points {info['points']:,}")
    print("| points | load s (sent / indexed) | vectors/s | peak RSS GiB | / segment raw | / collection raw "
          "| peak anon GiB | / segment raw | disk GiB | q/s | recall@10 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {a.n:,} | {t_sent:.0f} / {t_load:.0f} | {a.n / t_load:,.0f} | {hwm / gib:.2f} | {hwm / raw_seg:.2f}x "
          f"| {hwm / raw_all:.2f}x | {sampler.anon / gib:.2f} | {sampler.anon / raw_seg:.2f}x | {disk / gib:.2f} "
          f"| {qps:,.0f} | {rec:.4f} |")


if __name__ == "__main__":
    main()
