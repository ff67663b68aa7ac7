#!/usr/bin/env bash
# Runs the stack natively: builds in release, fetches the model, then starts
# the embedding service (port 8001). Ctrl-C stops it gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p embedding-service
./target/release/embedding-service fetch-model
exec ./target/release/embedding-service serve
