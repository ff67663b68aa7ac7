#!/usr/bin/env python3
"""sentence-transformers on the GPU beside the service: throughput of
`encode` in fp32 and fp16 on the same texts, in the same run.

    st_bench.py MODEL_DIR TEXTS_FILE --batches 32,256 [--device cuda] [--label-prefix ...]

TEXTS_FILE as for http_bench.py. Prints one JSON line per (precision, batch):
{"label": "sentence-transformers fp16", "batch", "sentences_per_s", "seconds",
 "peak_mib"}; `encode` sorts by length itself, as our batcher does.
"""
import argparse
import json
import time

import torch
from sentence_transformers import SentenceTransformer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("texts")
    p.add_argument("--batches", default="32,256")
    p.add_argument("--device", default="cuda")
    p.add_argument("--precisions", default="fp32,fp16")
    a = p.parse_args()
    texts = [l.rstrip("\n").split("\t")[-1].strip() for l in open(a.texts, encoding="utf-8")]
    texts = [t for t in texts if t]
    model = SentenceTransformer(a.model_dir, device=a.device)
    cuda = a.device.startswith("cuda")
    for precision in a.precisions.split(","):
        model = model.half() if precision == "fp16" else model.float()
        model.encode(texts[:512], batch_size=64)  # warm-up
        for b in map(int, a.batches.split(",")):
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            model.encode(texts, batch_size=b, convert_to_numpy=True)
            if cuda:
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            row = {
                "label": f"sentence-transformers {precision}",
                "batch": b,
                "sentences_per_s": round(len(texts) / dt, 1),
                "seconds": round(dt, 3),
            }
            if cuda:
                row["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
