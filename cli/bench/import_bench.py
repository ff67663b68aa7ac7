"""Bulk import benchmark: `vdb import` beside Qdrant's (qdrant-edge-py) and
Chroma's (chromadb) own Python clients, in one run, on the same WordNet
glosses.

Two loads:

* text: documents embedded on the way in. `vdb import` sends the texts and
  the indexing service embeds them through the embedding service; for the
  peers this script embeds the same texts through the same embedding
  service (HTTP, `POST /embed`, 256 texts a call) and hands the vectors to
  their clients. Same model, same embedder: what differs is the loading.
* vectors: precomputed vectors (feature-hashed bags of words, see below)
  loaded into all three, with the texts and metadata as payload.

Our import of the text load is interrupted with Ctrl-C (typed into the
pseudo-terminal `script` gives it) at about half way, and resumed by
running the same command again; the figure is documents over the time of
both runs. The vector load is interrupted and resumed the same way.

Usage (services already running):
  python cli/bench/import_bench.py --url http://127.0.0.1:18400 \
      --embed-url http://127.0.0.1:18401 --vdb target/debug/vdb \
      --tsv ../shared/datasets/wordnet-glosses.tsv --n 100000 --text-n 100000 \
      --peer-text-n 10000 --work /tmp/import-bench
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import httpx


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_jsonl(tsv, n, path):
    rows = []
    with open(tsv, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                continue
            synset, lemma, gloss = parts[0], parts[1], parts[2]
            rows.append({"id": len(rows), "content": gloss, "synset": synset,
                         "lemma": lemma.split(",")[0], "pos": synset.rsplit("-", 1)[-1]})
            if len(rows) == n:
                break
    # Repeat rows with new ids when the file is shorter than n.
    base = len(rows)
    while len(rows) < n:
        r = dict(rows[len(rows) % base])
        r["id"] = len(rows)
        rows.append(r)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return rows


class Api:
    def __init__(self, url):
        self.url = url
        self.http = httpx.Client(timeout=120)

    def count(self, name):
        r = self.http.post(f"{self.url}/collections/{name}/points/count", json={})
        return r.json()["count"] if r.status_code == 200 else 0

    def drop(self, name):
        self.http.delete(f"{self.url}/collections/{name}")


def vdb(args, cmd):
    return [args.vdb, "--url", args.url] + cmd


def import_interrupted(args, api, name, path, total, extra=()):
    """`vdb import` in a pseudo-terminal, Ctrl-C at ~50%, then the rerun.
    Returns (seconds of both runs, count at the stop, rerun summary line,
    exit code of the first run, count at the end)."""
    cmd = " ".join(vdb(args, ["import", path, "-c", name, "--parallel", str(args.parallel),
                              "--batch-size", str(args.batch_size), *extra]))
    t0 = time.perf_counter()
    p = subprocess.Popen(["script", "-qfec", cmd, "/dev/null"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env={**os.environ, "TERM": "xterm"})
    screen = []
    reader = threading.Thread(target=lambda: screen.append(p.stdout.read()))
    reader.start()
    while True:
        n = api.count(name)
        if n >= total // 2:
            p.stdin.write(b"\x03")
            p.stdin.flush()
            break
        if p.poll() is not None:
            raise SystemExit(f"import ended before half way: {screen}")
        time.sleep(0.05)
    code = p.wait()
    t1 = time.perf_counter()
    reader.join()
    stopped = api.count(name)
    shown = screen[0].decode("utf-8", "replace")
    has_bar = "ETA" in shown and "docs" in shown
    log(f"{name}: Ctrl-C at {n}, exit {code}, {stopped} stored; progress bar seen: {has_bar}")
    r = subprocess.run(vdb(args, ["import", path, "-c", name, "--parallel", str(args.parallel),
                                  "--batch-size", str(args.batch_size), *extra]),
                       capture_output=True, text=True)
    t2 = time.perf_counter()
    assert r.returncode == 0, r.stderr
    final = api.count(name)
    log(f"{name}: rerun: {r.stdout.strip()}")
    return {"seconds": (t1 - t0) + (t2 - t1), "first_run_s": t1 - t0, "rerun_s": t2 - t1,
            "stopped_at": stopped, "first_exit": code, "final_count": final,
            "progress_bar_seen": has_bar, "rerun_summary": r.stdout.strip()}


def import_plain(args, name, path):
    t0 = time.perf_counter()
    r = subprocess.run(vdb(args, ["import", path, "-c", name, "--parallel", str(args.parallel),
                                  "--batch-size", str(args.batch_size), "--create"]),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return time.perf_counter() - t0


def embed(http, embed_url, texts):
    out = []
    for i in range(0, len(texts), 256):
        r = http.post(f"{embed_url}/embed", json={"inputs": texts[i:i + 256]})
        r.raise_for_status()
        out.extend(r.json())
    return out


def hashed_vectors(texts, dim=384):
    import zlib
    import numpy as np
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().split():
            h = zlib.crc32(w.encode())
            out[i, h % dim] += 1.0 if (h >> 16) & 1 else -1.0
        out[i, i % dim] += 1e-3  # never all zero
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def qdrant_load(work, rows, vectors, batch, embed_fn=None):
    import qdrant_edge as q
    path = os.path.join(work, "qdrant-edge")
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    shard = q.EdgeShard.create(path, q.EdgeConfig(vectors=q.EdgeVectorParams(size=384, distance=q.Distance.Cosine)))
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        vecs = embed_fn([r["content"] for r in chunk]) if embed_fn else vectors[i:i + batch].tolist()
        pts = [q.Point(r["id"], v, {"content": r["content"], "synset": r["synset"],
                                    "lemma": r["lemma"], "pos": r["pos"]})
               for r, v in zip(chunk, vecs)]
        shard.update(q.UpdateOperation.upsert_points(pts))
    shard.flush()
    secs = time.perf_counter() - t0
    n = shard.count(q.CountRequest(exact=True))
    shard.close()
    return secs, n


def chroma_load(work, rows, vectors, batch, embed_fn=None):
    import chromadb
    path = os.path.join(work, "chroma")
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    client = chromadb.PersistentClient(path=path)
    col = client.create_collection("bench", metadata={"hnsw:space": "cosine"}, embedding_function=None)
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        vecs = embed_fn([r["content"] for r in chunk]) if embed_fn else vectors[i:i + batch].tolist()
        col.add(ids=[str(r["id"]) for r in chunk], embeddings=vecs,
                documents=[r["content"] for r in chunk],
                metadatas=[{"synset": r["synset"], "lemma": r["lemma"], "pos": r["pos"]} for r in chunk])
    secs = time.perf_counter() - t0
    return secs, col.count()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--embed-url", required=True)
    ap.add_argument("--vdb", required=True)
    ap.add_argument("--tsv", required=True)
    ap.add_argument("--n", type=int, default=100_000, help="documents of the vector load")
    ap.add_argument("--text-n", type=int, default=100_000, help="documents of our interrupted text load")
    ap.add_argument("--peer-text-n", type=int, default=10_000, help="documents of the side-by-side text load")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--work", required=True)
    ap.add_argument("--skip", default="", help="comma-separated steps to skip: text,vectors,peer_text,vdb_peer_text "
                    "(the last: our uninterrupted run of the side-by-side text load, "
                    "when step 1 already loaded the same documents)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    os.makedirs(args.work, exist_ok=True)
    api = Api(args.url)
    res = {"n": args.n, "text_n": args.text_n, "peer_text_n": args.peer_text_n,
           "batch_size": args.batch_size, "parallel": args.parallel}
    rows = make_jsonl(args.tsv, max(args.n, args.text_n), os.path.join(args.work, "all.jsonl"))

    # 1. Our text load, interrupted and resumed.
    text_path = os.path.join(args.work, "text.jsonl")
    with open(text_path, "w", encoding="utf-8") as f:
        for r in rows[:args.text_n]:
            f.write(json.dumps(r) + "\n")
    if "text" not in skip:
        api.drop("bench_text")
        subprocess.run(vdb(args, ["collections", "create", "bench_text"]), check=True, capture_output=True)
        r = import_interrupted(args, api, "bench_text", text_path, args.text_n)
        r["docs_per_s"] = args.text_n / r["seconds"]
        res["vdb_text_interrupted"] = r
        log("vdb text:", r)

    # 2. Vectors: precomputed, the same for all three. Embedding n texts on
    # the shared cores would take longer than the load itself, so these are
    # feature-hashed bags of words (384 dimensions, unit length, numpy):
    # deterministic per text, a load test of the loading, not of a model.
    vec_rows = rows[:args.n]
    vectors = hashed_vectors([r["content"] for r in vec_rows])
    # Parquet (a list column of float32): 100k x 384 floats as JSON text
    # would be ~800 MB and take longer to write here than to load.
    import pyarrow as pa
    import pyarrow.parquet as pq
    vin = os.path.join(args.work, "vectors_in.parquet")
    table = pa.table({
        "id": pa.array([r["id"] for r in vec_rows], pa.uint64()),
        "content": [r["content"] for r in vec_rows],
        "synset": [r["synset"] for r in vec_rows],
        "lemma": [r["lemma"] for r in vec_rows],
        "pos": [r["pos"] for r in vec_rows],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 384),
    })
    pq.write_table(table, vin)
    if "vectors" not in skip:
        api.drop("bench_vec")
        subprocess.run(vdb(args, ["collections", "create", "bench_vec", "--dimension", "384"]),
                       check=True, capture_output=True)
        r = import_interrupted(args, api, "bench_vec", vin, args.n)
        r["vectors_per_s"] = args.n / r["seconds"]
        res["vdb_vectors_interrupted"] = r
        log("vdb vectors:", r)
        secs, n = qdrant_load(args.work, vec_rows, vectors, args.batch_size)
        res["qdrant_edge_vectors"] = {"seconds": secs, "count": n, "vectors_per_s": len(vec_rows) / secs}
        log("qdrant-edge vectors:", res["qdrant_edge_vectors"])
        secs, n = chroma_load(args.work, vec_rows, vectors, args.batch_size)
        res["chroma_vectors"] = {"seconds": secs, "count": n, "vectors_per_s": len(vec_rows) / secs}
        log("chroma vectors:", res["chroma_vectors"])

    # 3. Text side by side at peer_text_n: all three embed through our service.
    if "peer_text" not in skip:
        m = args.peer_text_n
        small = os.path.join(args.work, "text_small.jsonl")
        with open(small, "w", encoding="utf-8") as f:
            for r in rows[:m]:
                f.write(json.dumps(r) + "\n")
        if "vdb_peer_text" not in skip:
            api.drop("bench_text_small")
            secs = import_plain(args, "bench_text_small", small)
            res["vdb_text_small"] = {"seconds": secs, "docs_per_s": m / secs,
                                     "count": api.count("bench_text_small")}
            log("vdb text small:", res["vdb_text_small"])
        ef = lambda texts: embed(api.http, args.embed_url, texts)  # noqa: E731
        secs, n = qdrant_load(args.work, rows[:m], None, args.batch_size, ef)
        res["qdrant_edge_text_small"] = {"seconds": secs, "count": n, "docs_per_s": m / secs}
        log("qdrant-edge text small:", res["qdrant_edge_text_small"])
        secs, n = chroma_load(args.work, rows[:m], None, args.batch_size, ef)
        res["chroma_text_small"] = {"seconds": secs, "count": n, "docs_per_s": m / secs}
        log("chroma text small:", res["chroma_text_small"])

    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
