#!/usr/bin/env python3
"""sentence-transformers on CPU over the same texts as embed-bench: the peer
in the throughput table. Prints one JSON line per batch size:
{"batch": 32, "sentences_per_s": ..., "seconds": ...}.

Usage: bench_st.py MODEL_DIR TEXTS_FILE BATCH [BATCH ...]
TEXTS_FILE: one text per line (already length-sorted by embed-bench).
"""
import json
import os
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

model_dir, texts_file, *batches = sys.argv[1:]
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
texts = [line.rstrip("\n") for line in open(texts_file, encoding="utf-8")]
model = SentenceTransformer(model_dir, device="cpu")
model.encode(texts[:64], batch_size=32)  # warm up
for b in map(int, batches):
    t0 = time.perf_counter()
    model.encode(texts, batch_size=b, convert_to_numpy=True)
    dt = time.perf_counter() - t0
    print(json.dumps({"batch": b, "sentences_per_s": len(texts) / dt, "seconds": dt}), flush=True)
