#!/usr/bin/env python3
"""Resident memory of one embedding-service process serving two models,
beside the same two models served by one process each (the deployment it
replaces), after the same requests.

Usage: multi_model_memory.py BINARY MODEL_A_DIR MODEL_B_DIR TEXTS_TSV [PORT]

Each configuration is started from the environment (`EMBEDDING__MODELS__N__
PATH/ALIAS`, CPU), waited for on /health, sent the first 1,024 texts of
TEXTS_TSV (third column: WordNet glosses) in requests of 32 to every model
it serves, and read once from /metrics (`process_resident_memory_bytes`,
kernel RSS). Prints one JSON line per process and a summary line. Only the
standard library is used; ports PORT.. PORT+2 (default 18760).
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

binary, dir_a, dir_b, tsv = sys.argv[1:5]
port0 = int(sys.argv[5]) if len(sys.argv) > 5 else 18760
texts = [line.split("\t")[2].strip() for line in open(tsv, encoding="utf-8")][:1024]


def get(url):
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.status, r.read().decode()


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def start(port, models):
    env = dict(os.environ, EMBEDDING__PORT=str(port), EMBEDDING__HOST="127.0.0.1",
               EMBEDDING__DEVICE="cpu", RUST_LOG="warn")
    for i, (alias, d) in enumerate(models):
        env[f"EMBEDDING__MODELS__{i}__ALIAS"] = alias
        env[f"EMBEDDING__MODELS__{i}__PATH"] = d
    p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while True:
        try:
            if get(base + "/health")[0] == 200:
                break
        except OSError:
            pass
        if p.poll() is not None or time.time() - t0 > 300:
            raise SystemExit(f"{models}: not healthy")
        time.sleep(0.1)
    return p, base, time.time() - t0


def measure(port, models):
    p, base, ready_s = start(port, models)
    try:
        for alias, _ in models:
            for i in range(0, len(texts), 32):
                post(base + "/v1/embeddings", {"input": texts[i:i + 32], "model": alias})
        m = get(base + "/metrics")[1]
        rss = next(float(l.split()[-1]) for l in m.splitlines()
                   if l.startswith("process_resident_memory_bytes "))
        row = {"models": [a for a, _ in models], "ready_s": round(ready_s, 2),
               "rss_mib": round(rss / 2**20, 1)}
        print(json.dumps(row), flush=True)
        return row
    finally:
        p.terminate()
        p.wait(30)


a = ("a", dir_a)
b = ("b", dir_b)
one_a = measure(port0, [a])
one_b = measure(port0 + 1, [b])
both = measure(port0 + 2, [a, b])
print(json.dumps({
    "one_process_two_models_mib": both["rss_mib"],
    "two_processes_one_model_each_mib": round(one_a["rss_mib"] + one_b["rss_mib"], 1),
    "second_model_adds_mib": round(both["rss_mib"] - one_a["rss_mib"], 1),
}))
