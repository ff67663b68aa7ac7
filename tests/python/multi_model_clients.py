#!/usr/bin/env python3
"""Two models served by one embedding service, through OpenAI's SDK
(`openai`, unmodified) choosing each with `model=`.

Usage: multi_model_clients.py BASE_URL MINILM_REFERENCE XLMR_REFERENCE

The service serves `minilm` (all-MiniLM-L6-v2, the default) and `xlmr`
(the tiny XLM-RoBERTa fixture). Checked: `models.list()` names both;
every embedding equals its model's reference (cosine >= 0.9999), from 8
threads at once alternating models for a few seconds, each call with a
deadline (a stall fails); an unknown model raises `NotFoundError` with
`model_not_found` and the served names.
"""
import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import openai

BASE = sys.argv[1].rstrip("/")
REFS = {
    "minilm": [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")],
    "xlmr": [json.loads(l) for l in open(sys.argv[3], encoding="utf-8")],
}
DIMS = {"minilm": 384, "xlmr": 32}
client = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", timeout=120, max_retries=0)


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def cosine(a, b):
    d = sum(x * y for x, y in zip(a, b))
    return d / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


ids = [m.id for m in client.models.list()]
check(ids == ["minilm", "xlmr"], f"models.list() names both models: {ids}")


def one_call(worker, round_):
    model = ["minilm", "xlmr"][(worker + round_) % 2]
    refs = REFS[model]
    picks = [(worker * 31 + round_ * 17 + k * 13) % len(refs) for k in range(1 + (worker + round_) % 5)]
    resp = client.embeddings.create(model=model, input=[refs[i]["text"] for i in picks])
    assert resp.model == model, (resp.model, model)
    worst = 1.0
    for d, i in zip(resp.data, picks):
        assert len(d.embedding) == DIMS[model], (model, len(d.embedding))
        c = cosine(d.embedding, refs[i]["embedding"])
        assert c >= 0.9999, (model, refs[i]["text"], c)
        worst = min(worst, c)
    return model, len(picks), worst


def worker(w, seconds=5.0):
    t_end = time.time() + seconds
    out, r = [], 0
    while time.time() < t_end:
        out.append(one_call(w, r))
        r += 1
    return out


with ThreadPoolExecutor(8) as pool:
    results = [x for f in [pool.submit(worker, w) for w in range(8)] for x in f.result(timeout=300)]
per_model = {m: sum(n for mm, n, _ in results if mm == m) for m in DIMS}
worst = min(w for _, _, w in results)
check(all(per_model[m] > 0 for m in DIMS), f"8 threads, both models: texts per model {per_model}, worst cosine {worst:.9f}")

try:
    client.embeddings.create(model="text-embedding-3-small", input="a")
    check(False, "an unknown model is refused")
except openai.NotFoundError as e:
    body = e.body if isinstance(e.body, dict) else {}
    err = body.get("error", body)
    check(err.get("code") == "model_not_found" and "`minilm`, `xlmr`" in err.get("message", ""),
          f"an unknown model is a 404 naming the served ones: {err}")

print("all checks passed")
