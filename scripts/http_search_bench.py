#!/usr/bin/env python3
"""Vector search through the HTTP API beside Qdrant's engine in process.

Loads N vectors into a new collection through `PUT /collections/{name}/points`
(one segment: the flush threshold is set above N and idle indexing seals and
indexes it once the load ends), then for every `ef` of the sweep sends the
queries from one client over one keep-alive connection and reports:

- queries/s and recall@10 against the exact top 10 (numpy, cosine);
- the server's CPU per query (user + system time of the process listening
  on the port, from /proc, before and after the row; this machine's
  client shares the cores) and the engine's own time per query
  (`index_search_duration_seconds`, the collection search alone), and their
  ratio;
- Qdrant's engine (`qdrant-edge-py`, `EdgeShard`, in this process, one
  thread, the same vectors, M and ef_construct, `hnsw_ef` = the same ef):
  queries/s and recall@10.

    python3 scripts/http_search_bench.py --url http://127.0.0.1:8000 \
        --base bench-data/wordnet-base.fvecs --query bench-data/wordnet-query.fvecs \
        --n 50000 --ef 64,100,128,200

Needs numpy and (for the peer column) qdrant-edge-py. The client is a raw
socket with the request bodies encoded up front, so its own cost per query
stays small; it still shares the machine with the server.
"""
import argparse
import base64
import json
import os
import shutil
import socket
import tempfile
import time
import urllib.parse

import numpy as np

K = 10


def read_fvecs(path, limit=None):
    raw = np.fromfile(path, dtype=np.int32)
    d = int(raw[0])
    rows = raw.reshape(-1, d + 1)[:, 1:].view(np.float32)
    return np.ascontiguousarray(rows[:limit] if limit else rows)


class Conn:
    """One keep-alive HTTP/1.1 connection; just enough of the protocol for
    JSON requests with a Content-Length answer."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.host = u.hostname
        self.port = u.port or 80
        self.sock = socket.create_connection((self.host, self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def raw(self, method, path, body=b""):
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        self.sock.sendall(head.encode() + body)
        while b"\r\n\r\n" not in self.buf:
            got = self.sock.recv(65536)
            if not got:
                raise ConnectionError("the server closed the connection")
            self.buf += got
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        n = 0
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v)
        while len(rest) < n:
            got = self.sock.recv(65536)
            if not got:
                raise ConnectionError("the server closed the connection")
            rest += got
        self.buf = rest[n:]
        return status, rest[:n]

    def call(self, method, path, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        status, raw = self.raw(method, path, data)
        if status >= 400 and not (method == "DELETE" and status == 404):
            raise SystemExit(f"{method} {path}: {status} {raw[:300]!r}")
        return json.loads(raw) if raw else None


def server_pid(port):
    """The pid listening on `port` (from `ss`), or None."""
    import re
    import subprocess
    try:
        out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    except OSError:
        return None
    m = re.search(r"pid=(\d+)", out)
    return int(m.group(1)) if m else None


def cpu_seconds(pid):
    """User + system CPU of every thread of `pid`, in seconds (clock ticks
    of /proc/PID/stat: 10 ms; `process_cpu_seconds_total` is whole seconds)."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def metric(conn, name):
    _, body = conn.raw("GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def timed_queries(c, path, bodies, seconds):
    """Sends `bodies` to `path` in turn, over and over, until `seconds` have
    passed (whole passes). Returns the hit ids of the first pass, the number
    of queries sent and the time taken."""
    found, done, t = [], 0, time.perf_counter()
    while True:
        for b in bodies:
            st, raw = c.raw("POST", path, b)
            if st != 200:
                raise SystemExit(f"search: {st} {raw[:300]!r}")
            if done < len(bodies):
                found.append([int(h["id"]) for h in json.loads(raw)["results"]])
            done += 1
        if time.perf_counter() - t >= seconds:
            return found, done, time.perf_counter() - t


def exact_top(base, queries):
    b = base / np.linalg.norm(base, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    s = q @ b.T
    return np.argsort(-s, axis=1)[:, :K]


def recall(found, gt):
    return sum(len(set(f[:K]) & set(g.tolist())) for f, g in zip(found, gt)) / (K * len(gt))


def ours(a, base, queries, gt, efs):
    c = Conn(a.url)
    name = a.collection
    c.call("DELETE", f"/collections/{name}")
    c.call("POST", "/collections", {
        "name": name, "dimension": base.shape[1], "metric": "cosine",
        "flush_threshold": {"vectors": len(base) + 1, "bytes": 8 * base.nbytes},
        "hnsw": {"m": a.m, "ef_construction": a.efc},  # ef: the service's default
        "idle_indexing": {"idle_ms": 1000}})
    t0 = time.time()
    for i in range(0, len(base), 1000):
        pts = [{"id": i + j, "vector": v} for j, v in enumerate(base[i:i + 1000].tolist())]
        c.call("PUT", f"/collections/{name}/points", {"points": pts})
    while True:
        info = c.call("GET", f"/collections/{name}")
        if info["appendable_points"] == 0 and info["indexed_segments"] >= 1:
            break
        time.sleep(0.5)
    print(f"ours: loaded and indexed {len(base)} vectors in {time.time() - t0:.1f} s", flush=True)
    path = f"/collections/{name}/search"
    pid = a.pid or server_pid(urllib.parse.urlparse(a.url).port or 80)
    if pid is None:
        raise SystemExit("cannot find the server's pid (give --pid)")
    rows = {}
    for ef in efs:
        extra = {} if ef == "default" else {"ef": ef}
        if a.encoding == "base64":
            vecs = [base64.b64encode(q.astype("<f4").tobytes()).decode() for q in queries]
        else:
            vecs = queries.tolist()
        bodies = [json.dumps({"vector": v, "top_k": K, **extra}).encode() for v in vecs]
        for b in bodies[: min(200, len(bodies))]:  # warm-up
            c.raw("POST", path, b)
        cpu0 = cpu_seconds(pid)
        eng0 = metric(c, "index_search_duration_seconds_sum")
        n0 = metric(c, "index_search_duration_seconds_count")
        found, done, dt = timed_queries(c, path, bodies, a.seconds)
        cpu = cpu_seconds(pid) - cpu0
        eng = metric(c, "index_search_duration_seconds_sum") - eng0
        n = metric(c, "index_search_duration_seconds_count") - n0
        rows[ef] = {
            "qps": done / dt,
            "recall": recall(found, gt),
            "cpu_us": cpu / done * 1e6,
            "engine_us": eng / max(n, 1) * 1e6,
        }
    return rows


def qdrant(a, base, queries, gt, efs):
    import qdrant_edge as q
    path = tempfile.mkdtemp(prefix="qdrant-edge-")
    try:
        cfg = q.EdgeConfig(
            vectors=q.EdgeVectorParams(size=base.shape[1], distance=q.Distance.Cosine),
            hnsw_config=q.HnswIndexConfig(m=a.m, ef_construct=a.efc, full_scan_threshold=10000),
            optimizers=q.EdgeOptimizersConfig(default_segment_number=1))
        s = q.EdgeShard.create(path, cfg)
        t0 = time.time()
        bl = base.tolist()
        for i in range(0, len(bl), 1000):
            s.update(q.UpdateOperation.upsert_points(
                [q.Point(i + j, v, {}) for j, v in enumerate(bl[i:i + 1000])]))
        s.flush()
        s.optimize()
        info = s.info()
        print(f"qdrant-edge: loaded and indexed {len(base)} vectors in {time.time() - t0:.1f} s "
              f"({info.segments_count} segments, {info.indexed_vectors_count} indexed)", flush=True)
        ql = queries.tolist()
        rows = {}
        for ef in efs:
            params = q.SearchParams() if ef == "default" else q.SearchParams(hnsw_ef=ef)
            reqs = [q.SearchRequest(query=q.Query.Nearest(v), limit=K, with_payload=True,
                                    params=params) for v in ql]
            for r in reqs[:200]:
                s.search(r)
            found, done = [], 0
            t = time.perf_counter()
            while True:
                for r in reqs:
                    hits = s.search(r)
                    if done < len(reqs):
                        found.append([int(h.id) for h in hits])
                    done += 1
                if time.perf_counter() - t >= a.seconds:
                    break
            dt = time.perf_counter() - t
            rows[ef] = {"qps": done / dt, "recall": recall(found, gt)}
        s.close()
        return rows
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--base", required=True)
    p.add_argument("--query", required=True)
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--ef", default="default,64,128,256,512",
                   help="per-query ef values; `default` sends none (each engine's default: "
                        "ours the collection's hnsw.ef, Qdrant's its ef_construct)")
    p.add_argument("--m", type=int, default=24)
    p.add_argument("--efc", type=int, default=200)
    p.add_argument("--seconds", type=float, default=4.0, help="minimum seconds per row")
    p.add_argument("--collection", default="http_search_bench")
    p.add_argument("--pid", type=int, help="the server's pid (default: the process listening on --url's port)")
    p.add_argument("--skip", default="", help="ours,qdrant")
    p.add_argument("--encoding", choices=("json", "base64"), default="json",
                   help="query vectors as JSON arrays of numbers or as base64 of little-endian f32")
    a = p.parse_args()
    base = read_fvecs(a.base, a.n)
    queries = read_fvecs(a.query, a.queries)
    gt = exact_top(base, queries)
    efs = [x if x == "default" else int(x) for x in a.ef.split(",")]
    skip = set(filter(None, a.skip.split(",")))
    mine = {} if "ours" in skip else ours(a, base, queries, gt, efs)
    peer = {} if "qdrant" in skip else qdrant(a, base, queries, gt, efs)
    print(f"\n{len(base)} vectors x {base.shape[1]}, {len(queries)} queries, top {K}, "
          f"M={a.m}, ef_construction={a.efc}, 1 client, query vectors as {a.encoding}\n")
    print("| ef | ours: HTTP q/s | recall@10 | server CPU µs/query | engine µs/query | CPU / engine "
          "| qdrant-edge q/s | recall@10 | ours / qdrant-edge |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for ef in efs:
        m, q = mine.get(ef), peer.get(ef)
        cells = [str(ef)]
        cells += ([f"{m['qps']:,.0f}", f"{m['recall']:.4f}", f"{m['cpu_us']:.0f}", f"{m['engine_us']:.0f}",
                   f"{m['cpu_us'] / m['engine_us']:.2f}x"] if m else ["-"] * 5)
        cells += [f"{q['qps']:,.0f}", f"{q['recall']:.4f}"] if q else ["-"] * 2
        cells += [f"{m['qps'] / q['qps']:.2f}x" if m and q else "-"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
