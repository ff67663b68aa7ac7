#!/usr/bin/env python3
"""Makes the BM25 reference fixture: real WordNet glosses, lemma queries,
and the scores `bm25s` (method "lucene", float64) gives them with the
tokens our tokenizer makes (dumped by the ignored test
`text::tests::dump_tokens`), for two settings: the defaults (k1 1.2,
b 0.75, no stemming) and k1 0.9, b 0.4 with the English stemmer.

    python3 scripts/bm25_reference.py \
        --glosses ../shared/datasets/wordnet-glosses.tsv \
        --out indexing-service/tests/fixtures/bm25

Queries: the first lemma of 150 of the corpus's synsets, the first five
words of 100 glosses outside it, and a few edge cases. Writes `corpus.txt` (one document per line; its line number is its id),
`queries.txt` (one per line) and `reference.json`:
`{"settings": [{"k1", "b", "stemmer", "top": [[[doc, score], ...] per query]}]}`
with each query's top 30 documents (ties broken by doc id) and their scores.
Needs: pip install bm25s numpy scipy.
"""
import argparse
import json
import os
import subprocess
import tempfile

import bm25s
import numpy as np

TOP = 30


def tokens(lines, stemmer):
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.txt"), os.path.join(d, "out.json")
        with open(inp, "w") as f:
            f.write("\n".join(lines) + "\n")
        env = dict(os.environ, TOKENS_IN=inp, TOKENS_OUT=out, TOKENS_STEMMER=stemmer or "")
        subprocess.run(
            ["cargo", "test", "-q", "-p", "indexing-service", "--lib", "text::tests::dump_tokens",
             "--", "--ignored", "--exact"],
            check=True, env=env, stdout=subprocess.DEVNULL)
        with open(out) as f:
            return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--glosses", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--queries", type=int, default=150)
    ap.add_argument("--phrases", type=int, default=100)
    a = ap.parse_args()
    rows = [l.rstrip("\n").split("\t") for l in open(a.glosses, encoding="utf-8")]
    step = len(rows) // a.docs
    picked = rows[::step][: a.docs]
    corpus = [r[2] for r in picked]
    # Queries: lemmas of every n-th picked synset, plus cases that stress
    # the scoring: a repeated term, a term no document holds, frequent words.
    qstep = len(picked) // a.queries
    queries = [r[1].split(",")[0].replace("_", " ") for r in picked[::qstep][: a.queries]]
    # Phrases from glosses outside the corpus: many common words.
    queries += [" ".join(r[2].split()[:5]) for r in rows[step // 2::step][: a.phrases]]
    queries += ["dog dog cat", "zzzqqq unknownword", "the of a", "Plants AND animals!",
                "running runner runs"]
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "corpus.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(corpus) + "\n")
    with open(os.path.join(a.out, "queries.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(queries) + "\n")
    settings = []
    for k1, b, stemmer in [(1.2, 0.75, None), (0.9, 0.4, "english")]:
        ctok = tokens(corpus, stemmer)
        qtok = tokens(queries, stemmer)
        # Documents without tokens are not documents for BM25 (N, avgdl).
        assert all(ctok), "every fixture document has a token"
        r = bm25s.BM25(k1=k1, b=b, method="lucene", dtype="float64")
        r.index(ctok, show_progress=False)
        vocab = r.vocab_dict
        top = []
        for q in qtok:
            known = [t for t in q if t in vocab]
            if not known:
                top.append([])
                continue
            s = np.asarray(r.get_scores(known), dtype=np.float64)
            order = sorted((i for i in range(len(s)) if s[i] > 0), key=lambda i: (-s[i], i))
            top.append([[i, float(s[i])] for i in order[:TOP]])
        settings.append({"k1": k1, "b": b, "stemmer": stemmer, "top": top})
    with open(os.path.join(a.out, "reference.json"), "w") as f:
        json.dump({"generator": f"bm25s {bm25s.__version__} method=lucene float64",
                   "settings": settings}, f)
    print(f"{len(corpus)} documents, {len(queries)} queries")


if __name__ == "__main__":
    main()
