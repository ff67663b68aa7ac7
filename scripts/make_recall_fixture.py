#!/usr/bin/env python3
"""Writes the real-vector recall fixture of the indexing tests from the
files of scripts/make_ann_data.py (all-MiniLM-L6-v2 embeddings of WordNet
glosses, and lemma queries, through our embedding service):

    python3 scripts/make_recall_fixture.py --base bench-data/wordnet-base.fvecs \
        --query bench-data/wordnet-query.fvecs --n 10000 --queries 300 \
        --out indexing-service/tests/fixtures/minilm-wordnet-10k.i8

Takes the first N base vectors and QUERIES queries spread over the query
file, and stores each vector as one f32 scale and DIM signed bytes
(component = byte × scale, scale = max |component| / 127): 388 bytes a
vector instead of 1,536, so the fixture stays a few MB. The test searches
these de-quantized vectors and compares with an exact scan of the same
vectors, so the rounding does not bias recall; what the fixture keeps is
the shape of real sentence embeddings (clusters, near-duplicates,
anisotropy) that generated data lacks.

Format (little-endian): u32 n, u32 queries, u32 dim, then n + queries
records of (f32 scale, dim × i8), base first. Standard library only.
"""
import argparse
import struct


def read_fvecs(path):
    out = []
    with open(path, "rb") as f:
        while True:
            h = f.read(4)
            if not h:
                return out
            (d,) = struct.unpack("<i", h)
            out.append(struct.unpack(f"<{d}f", f.read(4 * d)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--query", required=True)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    base = read_fvecs(a.base)[: a.n]
    allq = read_fvecs(a.query)
    step = max(len(allq) // a.queries, 1)
    queries = allq[::step][: a.queries]
    dim = len(base[0])
    with open(a.out, "wb") as f:
        f.write(struct.pack("<III", len(base), len(queries), dim))
        for v in base + queries:
            m = max(abs(x) for x in v) or 1.0
            scale = m / 127.0
            f.write(struct.pack("<f", scale))
            f.write(struct.pack(f"<{dim}b", *(max(-127, min(127, round(x / scale))) for x in v)))
    print(f"{len(base)} base + {len(queries)} queries, dim {dim} -> {a.out}")


if __name__ == "__main__":
    main()
