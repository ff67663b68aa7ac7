#!/usr/bin/env bash
# Runs the whole stack natively: builds in release, fetches the model, starts
# the embedding service (:8001) and the indexing service (:8000, data in
# ./data). Ctrl-C stops both gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p embedding-service -p indexing-service
./target/release/embedding-service fetch-model
./target/release/embedding-service serve &
emb=$!
trap 'kill -TERM $emb 2>/dev/null; wait $emb 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 600); do
  curl -fsS "http://127.0.0.1:${EMBEDDING__PORT:-8001}/health" >/dev/null 2>&1 && break
  kill -0 $emb 2>/dev/null || { echo "embedding-service exited" >&2; exit 1; }
  sleep 0.2
done
./target/release/indexing-service
