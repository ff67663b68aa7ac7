#!/usr/bin/env python3
"""Load benchmark of a running indexing service with wrk (Debian: `apt-get
install wrk`): queries/s and p50/p99 latency at 1, 8 and 32 concurrent
connections, for vector queries and text queries, and vector queries while
another wrk upserts concurrently. Prints a markdown table.

    python3 scripts/load_bench.py --url http://127.0.0.1:8000 \
        --base bench-data/wordnet-base.fvecs --query bench-data/wordnet-query.fvecs --points 100000

Loads --points vectors into collection `loadbench` first: the base vectors,
then (past their count) each base vector with small noise, re-normalised.
Text queries are WordNet lemmas (from --tsv), embedded per request by the
embedding service. Standard library only.
"""
import argparse
import json
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

LUA = r"""
local bodies = {}
local path = "%s"
local method = "%s"
local target = "%s"
for line in io.lines(path) do bodies[#bodies + 1] = line end
local i = math.random(#bodies)
request = function()
  i = i %% #bodies + 1
  return wrk.format(method, target, {["Content-Type"] = "application/json"}, bodies[i])
end
"""


def call(url, method, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read() or b"null")


def fvecs(path):
    raw = open(path, "rb").read()
    d = struct.unpack_from("<i", raw, 0)[0]
    row = 4 * (d + 1)
    return [list(struct.unpack_from(f"<{d}f", raw, i * row + 4)) for i in range(len(raw) // row)]


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, pct(50), pct(99), int(non2xx.group(1)) if non2xx else 0


def wrk(url, method, path, bodies_file, conns, secs):
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(LUA % (bodies_file, method, path))
    script.close()
    threads = min(conns, 2)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{secs}s", "--latency", "-s", script.name, url],
                         capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    return parse_wrk(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--base", default="bench-data/wordnet-base.fvecs")
    p.add_argument("--query", default="bench-data/wordnet-query.fvecs")
    p.add_argument("--tsv", default="bench-data/wordnet-glosses.tsv")
    p.add_argument("--points", type=int, default=100000)
    p.add_argument("--seconds", type=int, default=10)
    a = p.parse_args()
    for path, how in ((a.base, "python3 scripts/make_ann_data.py (see docs/BENCHMARKS.md)"),
                      (a.query, "python3 scripts/make_ann_data.py (see docs/BENCHMARKS.md)"),
                      (a.tsv, f"python3 scripts/wordnet_glosses.py --out {a.tsv}")):
        if not os.path.exists(path):
            sys.exit(f"{path} not found: make it with {how}")
    rng = random.Random(7)
    base, queries = fvecs(a.base), fvecs(a.query)
    dim = len(base[0])
    try:
        call(f"{a.url}/collections/loadbench", "DELETE")
    except Exception:
        pass
    call(f"{a.url}/collections", "POST", {"name": "loadbench", "dimension": dim, "metric": "cosine", "fsync": "always"})
    t0 = time.time()
    for start in range(0, a.points, 1000):
        pts = []
        for i in range(start, min(start + 1000, a.points)):
            v = base[i % len(base)]
            if i >= len(base):
                v = [x + rng.gauss(0, 0.02) for x in v]
            pts.append({"id": i, "vector": v, "metadata": {"g": i % 10}})
        call(f"{a.url}/collections/loadbench/points", "PUT", {"points": pts})
    load_s = time.time() - t0
    while call(f"{a.url}/collections/loadbench", "GET")["building_segments"] > 0:
        time.sleep(1)
    info = call(f"{a.url}/collections/loadbench", "GET")
    tmp = tempfile.mkdtemp()
    vec_file, text_file, up_file = f"{tmp}/vec.jsonl", f"{tmp}/text.jsonl", f"{tmp}/upsert.jsonl"
    with open(vec_file, "w") as f:
        for q in queries:
            f.write(json.dumps({"vector": [round(x, 6) for x in q], "top_k": 10}) + "\n")
    lemmas = [line.split("\t")[1].split(",")[0].replace("_", " ") for line in open(a.tsv, encoding="utf-8")][::97][:1000]
    with open(text_file, "w") as f:
        for l in lemmas:
            f.write(json.dumps({"query": l, "top_k": 10, "collection": "loadbench"}) + "\n")
    with open(up_file, "w") as f:
        for j in range(200):
            pts = [{"id": 1_000_000 + j * 10 + k, "vector": [round(x, 6) for x in base[rng.randrange(len(base))]], "metadata": {"g": k}} for k in range(10)]
            f.write(json.dumps({"points": pts}) + "\n")
    print(f"# {info['points']} points ({dim}-d) loaded in {load_s:.1f}s through PUT /points (batches of 1000, fsync always); "
          f"{info['sealed_segments']} sealed segments, {info['indexed_segments']} with HNSW; wrk {a.seconds}s per row, "
          f"client and services on the same {os.cpu_count()} cores\n")
    print("| workload | connections | queries/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, path, f in (("vector query", "/collections/loadbench/search", vec_file), ("text query", "/search", text_file)):
        for c in (1, 8, 32):
            rps, p50, p99, bad = wrk(a.url, "POST", path, f, c, a.seconds)
            print(f"| {name} | {c} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {bad} |", flush=True)
    # Mixed: vector queries at 8 connections while 2 connections upsert 10 points per request.
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(LUA % (up_file, "PUT", "/collections/loadbench/points"))
    script.close()
    writer = subprocess.Popen(["wrk", "-t1", "-c2", f"-d{a.seconds}s", "--latency", "-s", script.name, a.url],
                              stdout=subprocess.PIPE, text=True)
    rps, p50, p99, bad = wrk(a.url, "POST", "/collections/loadbench/search", vec_file, 8, a.seconds)
    wout = writer.communicate()[0]
    w = parse_wrk(wout)
    print(f"| vector query, with concurrent upserts | 8 | {rps:.0f} | {p50:.2f} | {p99:.2f} | {bad} |")
    print(f"| upsert (10 points/request) beside it | 2 | {w[0]:.0f} req/s = {w[0] * 10:.0f} points/s | {w[1]:.2f} | {w[2]:.2f} | {w[3]} |")


if __name__ == "__main__":
    main()
