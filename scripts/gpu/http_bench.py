#!/usr/bin/env python3
"""Throughput of a running embedding service through HTTP, at several
numbers of concurrent clients (standard library only).

    http_bench.py URL TEXTS_FILE --clients 1,32,256 --per-request 1,32 [--seconds 4] [--label L]

TEXTS_FILE: a TSV whose last column is the text (the WordNet fixture), or one
text a line. Each client is a thread with its own keep-alive connection
sending `POST /embed` with `--per-request` consecutive texts, round-robin
over the file, for `--seconds` after a one-second warm-up; only requests that complete
inside that window count, and a request still in flight at its end is
abandoned a few seconds later (it is neither counted nor an error). The
clients are spread over up to 8 processes so the client's own JSON work is
not the bottleneck. Every response must be 200 with as many vectors as texts (one
response in 16 is parsed fully; the rest are checked by status and count of
rows); a 429 is retried and counted. Prints one JSON line per cell:
{"label", "clients", "per_request", "sentences_per_s", "requests_per_s",
 "p50_ms", "p99_ms", "retries_429", "errors"}.
"""
import argparse
import http.client
import json
import multiprocessing as mp
import threading
import time
import urllib.parse


def texts_of(path):
    out = []
    for line in open(path, encoding="utf-8"):
        t = line.rstrip("\n").split("\t")[-1].strip()
        if t:
            out.append(t)
    return out


GRACE_S = 3.0


def client_thread(url, bodies, n_texts, start_at, stop_at, stats, lock, offset):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=stop_at + GRACE_S - time.perf_counter())
    i, done, lat, retries, errors = offset, 0, [], 0, 0
    while True:
        now = time.perf_counter()
        if now >= stop_at:
            break
        body = bodies[i % len(bodies)]
        i += 1
        t0 = time.perf_counter()
        try:
            if conn.sock is not None:
                conn.sock.settimeout(max(0.1, stop_at + GRACE_S - t0))
            conn.request("POST", "/embed", body, {"content-type": "application/json"})
            r = conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException):
            if time.perf_counter() < stop_at:
                errors += 1
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=max(0.1, stop_at + GRACE_S - time.perf_counter()))
            continue
        t1 = time.perf_counter()
        if r.status == 429:
            retries += 1
            time.sleep(0.002)
            continue
        if r.status != 200:
            errors += 1
            continue
        if i % 16 == 0:
            ok = len(json.loads(data)) == n_texts
        else:
            ok = data.count(b"],[") + 1 == n_texts
        if not ok:
            errors += 1
            continue
        if t0 >= start_at and t1 <= stop_at:
            done += 1
            lat.append(t1 - t0)
    with lock:
        stats["requests"] += done
        stats["lat"].extend(lat)
        stats["retries"] += retries
        stats["errors"] += errors


def process_main(url, bodies, n_texts, threads, start_at, stop_at, first, q):
    stats = {"requests": 0, "lat": [], "retries": 0, "errors": 0}
    lock = threading.Lock()
    ts = [
        threading.Thread(
            target=client_thread,
            args=(url, bodies, n_texts, start_at, stop_at, stats, lock, (first + k) * 97),
        )
        for k in range(threads)
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    q.put(stats)


def cell(url, texts, clients, per_request, seconds, label):
    bodies = [
        json.dumps({"inputs": texts[s : s + per_request]}).encode()
        for s in range(0, len(texts) - per_request + 1, per_request)
    ]
    procs_n = min(clients, 8)
    per = [clients // procs_n + (1 if k < clients % procs_n else 0) for k in range(procs_n)]
    start_at = time.perf_counter() + 1.0
    stop_at = start_at + seconds
    q = mp.Queue()
    procs, first = [], 0
    for k in range(procs_n):
        pr = mp.Process(target=process_main, args=(url, bodies, per_request, per[k], start_at, stop_at, first, q))
        first += per[k]
        pr.start()
        procs.append(pr)
    total = {"requests": 0, "lat": [], "retries": 0, "errors": 0}
    for _ in procs:
        s = q.get()
        for k in ("requests", "retries", "errors"):
            total[k] += s[k]
        total["lat"].extend(s["lat"])
    for pr in procs:
        pr.join()
    lat = sorted(total["lat"]) or [0.0]
    row = {
        "label": label,
        "clients": clients,
        "per_request": per_request,
        "sentences_per_s": round(total["requests"] * per_request / seconds, 1),
        "requests_per_s": round(total["requests"] / seconds, 1),
        "p50_ms": round(1000 * lat[len(lat) // 2], 2),
        "p99_ms": round(1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2),
        "retries_429": total["retries"],
        "errors": total["errors"],
    }
    print(json.dumps(row), flush=True)
    return row


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("texts")
    p.add_argument("--clients", default="1,32,256")
    p.add_argument("--per-request", default="1,32")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--label", default="")
    a = p.parse_args()
    texts = texts_of(a.texts)
    failed = False
    for per_request in map(int, a.per_request.split(",")):
        for clients in map(int, a.clients.split(",")):
            row = cell(a.url, texts, clients, per_request, a.seconds, a.label)
            failed |= row["errors"] > 0 or row["requests_per_s"] == 0
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
