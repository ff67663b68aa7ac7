#!/usr/bin/env python3
"""Builds the benchmark text file from WordNet 3.0: one row per synset,
`synset_id<TAB>lemmas<TAB>gloss` (117,659 rows).

    sudo apt-get install wordnet-base        # Debian/Ubuntu: /usr/share/wordnet/data.*
    python3 scripts/wordnet_glosses.py --out bench-data/wordnet-glosses.tsv

- `synset_id`: the synset's byte offset and part of speech (`00001740-n`;
  `s` marks adjective satellites);
- `lemmas`: its words, comma-separated, multi-word lemmas joined by `_`
  (adjective markers such as `(a)` removed);
- `gloss`: the definition and examples.

Rows come in the order of data.noun, data.verb, data.adj, data.adv. WordNet
3.0 licence: free to use, copy and distribute with Princeton University's
copyright notice kept (see the copyright file of the `wordnet-base` package).
`tests/fixtures/wordnet-3000.tsv` is a 3,000-row sample in the same format.
"""
import argparse
import os
import re
import sys

FILES = ("data.noun", "data.verb", "data.adj", "data.adv")


def rows(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("  "):  # licence header
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            offset, ss_type, w_cnt = fields[0], fields[2], int(fields[3], 16)
            words = [re.sub(r"\([a-z]+\)$", "", fields[4 + 2 * i]) for i in range(w_cnt)]
            yield f"{offset}-{ss_type}\t{','.join(words)}\t{gloss.strip()}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dict", default="/usr/share/wordnet",
                   help="directory holding WordNet's data.noun, data.verb, data.adj, data.adv")
    p.add_argument("--out", default="bench-data/wordnet-glosses.tsv")
    a = p.parse_args()
    missing = [f for f in FILES if not os.path.exists(os.path.join(a.dict, f))]
    if missing:
        sys.exit(f"{a.dict}: no {', '.join(missing)}; install WordNet 3.0 "
                 "(`apt-get install wordnet-base`) or pass --dict DIR")
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    n = 0
    with open(a.out, "w", encoding="utf-8") as out:
        for name in FILES:
            for row in rows(os.path.join(a.dict, name)):
                out.write(row + "\n")
                n += 1
    print(f"{a.out}: {n} synsets")


if __name__ == "__main__":
    main()
