#!/usr/bin/env python3
"""The service under GPU memory pressure: another process (PyTorch, plain
cudaMalloc through its caching allocator) takes all but a few hundred MiB of
the GPU, then large requests arrive. The service must answer each with 200
(its batch retried in halves until it fits) or 503 `out_of_memory` (a single
text did not fit), never 500 or a crash, and serve normally once the memory
is back.

    oom_check.py URL [--leave-mib 1024,256,64]

Prints one JSON line per level: {"leave_mib", "statuses", "codes",
"match_before"} and a final {"recovered": true|false}; exits 1 on a 500,
a dead service, or a 200 whose vectors differ from those before the
pressure.
"""
import argparse
import json
import math
import sys
import urllib.error
import urllib.request

import torch


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def cosine(a, b):
    d = sum(x * y for x, y in zip(a, b))
    return d / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--leave-mib", default="1024,256,64")
    a = p.parse_args()
    # 128 texts of 256 tokens (truncated), all different.
    texts = [f"text {i}: " + " ".join(f"word{(i * 7 + k) % 997}" for k in range(300)) for i in range(128)]
    s, before = post(a.url + "/embed", {"inputs": texts})
    assert s == 200, (s, before)
    failed = False
    for leave in map(int, a.leave_mib.split(",")):
        free, _ = torch.cuda.mem_get_info()
        hog = None
        if free > leave * 2**20:
            hog = torch.empty(free - leave * 2**20, dtype=torch.uint8, device="cuda")
        statuses, codes, match = [], [], True
        for _ in range(3):
            s, body = post(a.url + "/embed", {"inputs": texts})
            statuses.append(s)
            if s == 200:
                match &= all(cosine(x, y) > 0.9999 for x, y in zip(body, before)) and len(body) == len(texts)
            else:
                codes.append((body or {}).get("error", {}).get("code"))
        del hog
        torch.cuda.empty_cache()
        row = {"leave_mib": leave, "statuses": statuses, "codes": codes, "match_before": match}
        print(json.dumps(row), flush=True)
        bad = any(st not in (200, 503) for st in statuses) or any(c != "out_of_memory" for c in codes) or not match
        failed |= bad
    s, after = post(a.url + "/embed", {"inputs": texts})
    recovered = s == 200 and all(cosine(x, y) > 0.9999 for x, y in zip(after, before))
    print(json.dumps({"recovered": recovered}), flush=True)
    sys.exit(0 if recovered and not failed else 1)


if __name__ == "__main__":
    main()
