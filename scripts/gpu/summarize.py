#!/usr/bin/env python3
"""Turns the GPU check's JSON lines (results.jsonl) into summary.md:
parity per run, HTTP throughput per run × clients × texts per request, and
sentence-transformers beside it.

    summarize.py RESULTS_JSONL > summary.md
"""
import json
import sys


def main():
    rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip().startswith("{")]
    env = [r for r in rows if r.get("kind") == "env"]
    parity = [r for r in rows if "min_cosine_vs_reference" in r]
    http = [r for r in rows if "clients" in r]
    st = [r for r in rows if str(r.get("label", "")).startswith("sentence-transformers")]
    oom = [r for r in rows if "leave_mib" in r or "recovered" in r]
    out = []
    for e in env:
        out.append(f"- {e.get('what')}: {e.get('value')}")
    if parity:
        out += ["", "| run | min cosine vs float64 reference | threshold | batched vs alone | vs CPU f32, same weights | passed |",
                "|---|---:|---:|---:|---:|---|"]
        for r in parity:
            out.append(
                f"| {r['label']} | {r['min_cosine_vs_reference']:.7f} | {r['threshold']} | "
                f"{r['min_cosine_batched_vs_alone']:.7f} | {r.get('min_cosine_vs_against', '-')} | {r['passed']} |"
            )
    if http:
        out += ["", "| run | clients | texts/request | sentences/s | requests/s | p50 ms | p99 ms | 429s | errors |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in http:
            out.append(
                f"| {r['label']} | {r['clients']} | {r['per_request']} | {r['sentences_per_s']:.0f} | "
                f"{r['requests_per_s']:.0f} | {r['p50_ms']} | {r['p99_ms']} | {r['retries_429']} | {r['errors']} |"
            )
    if st:
        out += ["", "| peer (in process, no HTTP) | batch | sentences/s | peak MiB |", "|---|---:|---:|---:|"]
        for r in st:
            out.append(f"| {r['label']} | {r['batch']} | {r['sentences_per_s']:.0f} | {r.get('peak_mib', '-')} |")
    if oom:
        out += ["", "Memory pressure (another process holds all but `leave_mib` of the GPU):", ""]
        out += [f"- {json.dumps(r)}" for r in oom]
    print("\n".join(out))


if __name__ == "__main__":
    main()
