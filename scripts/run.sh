#!/usr/bin/env bash
# Runs the whole stack natively: builds in release, fetches the model, starts
# the embedding service, waits until it is healthy, then runs the indexing
# service in the foreground. Ports, hosts and the data directory come from
# the effective configuration (config.yaml, CONFIG_PATH, EMBEDDING__* and
# INDEXING__* variables), as `print-config` shows it. Ctrl-C stops both
# gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p embedding-service -p indexing-service
./target/release/embedding-service fetch-model

# `port:` directly under `section:` in the effective config.
port_of() {
  awk -v s="$1:" '/^[^ ]/ { in_s = ($1 == s) } in_s && /^  port:/ { print $2; exit }'
}
emb_port=$(./target/release/embedding-service print-config | port_of embedding)
idx_port=$(./target/release/indexing-service print-config | port_of indexing)

# The indexing service calls the embedding service started here, on
# whatever port that one was given (EMBEDDING_SERVICE_URL set by hand wins).
export EMBEDDING_SERVICE_URL="${EMBEDDING_SERVICE_URL:-http://127.0.0.1:$emb_port}"

./target/release/embedding-service serve &
emb=$!
trap 'kill -TERM $emb 2>/dev/null; wait $emb 2>/dev/null' EXIT INT TERM
echo "waiting for embedding-service on port $emb_port (model loading)..."
for _ in $(seq 1 600); do
  ./target/release/embedding-service healthcheck 2>/dev/null && break
  kill -0 $emb 2>/dev/null || { echo "embedding-service exited" >&2; exit 1; }
  sleep 0.2
done
./target/release/embedding-service healthcheck 2>/dev/null \
  || { echo "embedding-service not healthy after 120 s" >&2; exit 1; }
cat <<EOF
embedding-service: http://127.0.0.1:$emb_port (docs: /docs)
indexing-service:  http://127.0.0.1:$idx_port (docs: /docs), starting
Running in the foreground; Ctrl-C stops both.
EOF
./target/release/indexing-service serve
