#!/usr/bin/env python3
"""Copies a sentence-transformers model directory with its float32 weights
stored as float16, for carrying a model where size is short (the GPU check's
64 MiB working-tree limit: all-MiniLM-L6-v2 is 91 MB in f32, 45 MB in f16).

    f16_model.py SRC_MODEL_DIR DST_DIR

Standard library only (struct's 'e' format is IEEE half precision, round to
nearest even). Every F32 tensor of model.safetensors becomes F16 unless a
value is outside the f16 range, in which case that tensor stays F32. The
other files (config, tokenizer, pooling, modules.json) are copied as they
are. Loaders upcast on load: candle with `dtype: f32`, transformers with
`.float()`; the f32 results then differ from the original weights' by the
weights' f16 rounding alone.
"""
import json
import os
import shutil
import struct
import sys


def convert(src, dst):
    raw = open(src, "rb").read()
    (hlen,) = struct.unpack_from("<Q", raw, 0)
    header = json.loads(raw[8 : 8 + hlen])
    base = 8 + hlen
    meta = header.pop("__metadata__", None)
    out_header, chunks, offset, kept = {}, [], 0, 0
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = t["data_offsets"]
        data = raw[base + a : base + b]
        dtype = t["dtype"]
        if dtype == "F32":
            n = len(data) // 4
            vals = struct.unpack(f"<{n}f", data)
            try:
                data = struct.pack(f"<{n}e", *vals)
                dtype = "F16"
            except (OverflowError, struct.error):
                kept += 1
        out_header[name] = {"dtype": dtype, "shape": t["shape"], "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if meta is not None:
        out_header["__metadata__"] = meta
    hdr = json.dumps(out_header, separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for c in chunks:
            f.write(c)
    return len(out_header) - (meta is not None), kept


def main():
    src_dir, dst_dir = sys.argv[1:3]
    os.makedirs(dst_dir, exist_ok=True)
    for root, _, files in os.walk(src_dir):
        rel = os.path.relpath(root, src_dir)
        for f in files:
            if f in ("model.safetensors", "README.md", "data_config.json", ".gitattributes") or f.endswith(
                (".bin", ".onnx", ".h5", ".msgpack", ".ot")
            ):
                continue
            os.makedirs(os.path.join(dst_dir, rel), exist_ok=True)
            shutil.copyfile(os.path.join(root, f), os.path.join(dst_dir, rel, f))
    n, kept = convert(os.path.join(src_dir, "model.safetensors"), os.path.join(dst_dir, "model.safetensors"))
    size = os.path.getsize(os.path.join(dst_dir, "model.safetensors"))
    print(f"{dst_dir}: {n} tensors, {kept} kept in f32, model.safetensors {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
