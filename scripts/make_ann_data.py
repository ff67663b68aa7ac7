#!/usr/bin/env python3
"""Embeds WordNet glosses (base) and lemma strings (queries) through a running
embedding service and writes TexMex files for the ANN benchmark.

    python3 scripts/wordnet_glosses.py --out bench-data/wordnet-glosses.tsv   # once
    python3 scripts/make_ann_data.py --tsv bench-data/wordnet-glosses.tsv \
        --url http://127.0.0.1:8001 --out bench-data --n 50000 --queries 1000

Writes OUT/wordnet-base.fvecs (glosses of the first N synsets, in file
order), OUT/wordnet-query.fvecs (a lemma of each of --queries synsets spread
over those N, '_' read as a space: "hot dog" should find its gloss). The
exact ground truth is computed by the benchmark (ann-bench writes
OUT/wordnet-query.gt.ivecs) or by scripts/ann_peers.py. Standard
library only; the vectors are unit length (cosine = inner product).
"""
import argparse
import json
import os
import struct
import sys
import urllib.request


def embed(url, texts):
    req = urllib.request.Request(url + "/embed", data=json.dumps({"inputs": texts}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def write_fvecs(path, vecs):
    with open(path, "wb") as f:
        for v in vecs:
            f.write(struct.pack("<i", len(v)))
            f.write(struct.pack(f"<{len(v)}f", *v))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tsv", default="bench-data/wordnet-glosses.tsv")
    p.add_argument("--url", default="http://127.0.0.1:8001")
    p.add_argument("--out", default="bench-data")
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--batch", type=int, default=256)
    a = p.parse_args()
    if not os.path.exists(a.tsv):
        sys.exit(f"{a.tsv} not found: make it with `python3 scripts/wordnet_glosses.py "
                 f"--out {a.tsv}` (needs WordNet 3.0: `apt-get install wordnet-base`)")
    rows = [line.rstrip("\n").split("\t") for line in open(a.tsv, encoding="utf-8")][: a.n]
    glosses = [r[2] for r in rows]
    step = max(1, len(rows) // a.queries)
    lemmas = [rows[i][1].split(",")[0].replace("_", " ") for i in range(0, len(rows), step)][: a.queries]
    os.makedirs(a.out, exist_ok=True)
    for name, texts in (("wordnet-base", glosses), ("wordnet-query", lemmas)):
        vecs = []
        for i in range(0, len(texts), a.batch):
            vecs.extend(embed(a.url, texts[i: i + a.batch]))
            if (i // a.batch) % 40 == 0:
                print(f"{name}: {len(vecs)}/{len(texts)}", flush=True)
        write_fvecs(f"{a.out}/{name}.fvecs", vecs)
        print(f"wrote {a.out}/{name}.fvecs ({len(vecs)} x {len(vecs[0])})", flush=True)


if __name__ == "__main__":
    main()
