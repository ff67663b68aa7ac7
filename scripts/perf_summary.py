#!/usr/bin/env python3
"""A text flame-graph summary of a `perf record -g` profile of the indexing
service: where the CPU of a request goes, by layer.

    perf record -e cpu-clock -F 2000 --call-graph dwarf -p <pid> -o perf.data -- sleep 5
    perf script -i perf.data > perf.txt
    python3 scripts/perf_summary.py perf.txt [--per-query-us 640] [--top 25]

Each sample's whole stack is matched against the layers below in order; the
first layer with a frame in the stack takes the sample (so the engine's own
memcpy counts as engine, a logging write(2) as logging). With
`--per-query-us` (the server's CPU per query from the benchmark) the shares
are also printed as microseconds per query. Then the hottest leaf frames.
"""
import argparse
import collections
import re

LAYERS = [
    ("engine: collection search (index, SQ8 kernels, re-score, top-k)",
     r"Collection::search_parts|indexing_service::index::"),
    ("logging: access-log line and request span (tracing)", r"tracing_subscriber|tracing_core|tracing::span"),
    ("metrics (prometheus)", r"prometheus::"),
    ("replication middleware: body scan for `consistency`",
     r"middleware::take_consistency|middleware::memchr_consistency|middleware::body_field"),
    ("JSON: request parse", r"serde_json::de|serde_core::de|ApiJson"),
    ("JSON: response write", r"serde_json::ser|Json<T> as axum_core::response::IntoResponse"),
    ("thread hand-offs: futex wake and wait, eventfd (spawn_blocking, runtime park)",
     r"futex|eventfd|spawn_blocking"),
    ("HTTP/1 (hyper), body collection and socket I/O",
     r"hyper::|hyper_util::|http_body|to_bytes|tcp_|sock_|__sys_sendto|__sys_recvfrom|sendmsg|recvmsg"),
    ("other middleware (request id, CORS, auth, body limit, errors, replication)",
     r"tower_http::|shared::http::|axum::middleware|replication::middleware"),
    ("routing and handler glue (axum)", r"axum::|indexing_service::api::"),
    ("runtime: epoll and scheduler", r"epoll|tokio::|schedule|try_to_wake_up"),
    ("allocator", r"malloc|_int_free|cfree|realloc"),
]


def samples(path):
    stack = []
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                if stack:
                    yield stack
                stack = []
            elif line.startswith(("\t", " ")):
                parts = line.strip().split(" ", 1)
                stack.append(parts[1] if len(parts) > 1 else parts[0])
    if stack:
        yield stack


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("perf_script")
    p.add_argument("--per-query-us", type=float)
    p.add_argument("--top", type=int, default=20)
    a = p.parse_args()
    rules = [(name, re.compile(rx)) for name, rx in LAYERS]
    by_layer, leaves = collections.Counter(), collections.Counter()
    total = 0
    for st in samples(a.perf_script):
        total += 1
        text = "\n".join(st)
        layer = next((name for name, rx in rules if rx.search(text)), "other")
        by_layer[layer] += 1
        leaves[re.sub(r"\+0x[0-9a-f]+ \(.*\)$", "", st[0])[:110]] += 1
    print(f"{total} samples\n")
    print("| layer | share |" + (" µs per query |" if a.per_query_us else ""))
    print("|---|---:|" + ("---:|" if a.per_query_us else ""))
    for name, n in by_layer.most_common():
        row = f"| {name} | {100 * n / total:.1f}% |"
        if a.per_query_us:
            row += f" {a.per_query_us * n / total:.0f} |"
        print(row)
    print(f"\nhottest leaf frames (top {a.top}):")
    for name, n in leaves.most_common(a.top):
        print(f"  {100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
