#!/usr/bin/env python3
"""sentence-transformers on CPU over the same texts as embed-bench: the peers
in the throughput table. Prints one JSON line per backend and batch size:
{"backend": "torch", "batch": 32, "sentences_per_s": ..., "seconds": ...}.

Usage: bench_st.py MODEL_DIR TEXTS_FILE BATCH [BATCH ...]
TEXTS_FILE: one text per line (already length-sorted by embed-bench).

BENCH_BACKENDS (default "torch"), comma-separated:
  torch        sentence-transformers' default PyTorch backend;
  onnx         backend="onnx": ONNX Runtime on the model exported by
               optimum (f32, no graph optimisation beyond ORT's defaults);
  onnx-o3      the same export run through optimum's O3 graph optimisations
               (fused attention, GELU and layer norm);
  onnx-qint8   export_dynamic_quantized_onnx_model(..., "avx512_vnni"):
               int8 weights, activations quantised per batch (ORT's
               dynamic quantisation).
The ONNX files are exported once into a copy of MODEL_DIR under
$TMPDIR/bench_st_onnx/ (the model directory itself is not written).
BENCH_THREADS: intra-op threads of both runtimes (default: all cores).
"""
import json
import os
import shutil
import sys
import tempfile
import time

import torch
from sentence_transformers import SentenceTransformer

model_dir, texts_file, *batches = sys.argv[1:]
threads = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
torch.set_num_threads(threads)
texts = [line.rstrip("\n") for line in open(texts_file, encoding="utf-8")]


def onnx_copy():
    """A copy of model_dir holding the exported ONNX files."""
    dst = os.path.join(tempfile.gettempdir(), "bench_st_onnx",
                       os.path.basename(os.path.normpath(model_dir)))
    if not os.path.exists(os.path.join(dst, "onnx", "model.onnx")):
        shutil.copytree(model_dir, dst, dirs_exist_ok=True)
        m = SentenceTransformer(dst, device="cpu", backend="onnx")
        m.save_pretrained(dst)
    return dst


def load(backend):
    if backend == "torch":
        return SentenceTransformer(model_dir, device="cpu")
    from sentence_transformers import (export_dynamic_quantized_onnx_model,
                                       export_optimized_onnx_model)
    d = onnx_copy()
    kwargs = {"provider": "CPUExecutionProvider"}
    if backend == "onnx-o3":
        f = os.path.join(d, "onnx", "model_O3.onnx")
        if not os.path.exists(f):
            export_optimized_onnx_model(SentenceTransformer(d, device="cpu", backend="onnx"), "O3", d)
        kwargs["file_name"] = "onnx/model_O3.onnx"
    elif backend == "onnx-qint8":
        f = os.path.join(d, "onnx", "model_qint8_avx512_vnni.onnx")
        if not os.path.exists(f):
            export_dynamic_quantized_onnx_model(
                SentenceTransformer(d, device="cpu", backend="onnx"), "avx512_vnni", d)
        kwargs["file_name"] = "onnx/model_qint8_avx512_vnni.onnx"
    elif backend != "onnx":
        sys.exit(f"unknown backend {backend!r}")
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    kwargs["session_options"] = opts
    return SentenceTransformer(d, device="cpu", backend="onnx", model_kwargs=kwargs)


for backend in os.environ.get("BENCH_BACKENDS", "torch").split(","):
    model = load(backend)
    model.encode(texts[:64], batch_size=32)  # warm up
    for b in map(int, batches):
        t0 = time.perf_counter()
        model.encode(texts, batch_size=b, convert_to_numpy=True)
        dt = time.perf_counter() - t0
        print(json.dumps({"backend": backend, "batch": b,
                          "sentences_per_s": len(texts) / dt, "seconds": dt}), flush=True)
    del model
