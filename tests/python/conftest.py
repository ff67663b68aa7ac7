"""Where the pytest modules of this folder find the running services.

The Rust test that runs them (`tests/tests/python_sdk.rs`) starts the real
embedding and indexing services and passes their addresses in
`VECDB_URL` / `VECDB_EMBEDDING_URL` (and the indexing service's key in
`VECDB_API_KEY`); the SDK reads the same variables.
"""
import os

import pytest


def _need(name: str) -> str:
    v = os.environ.get(name)
    if not v:
        pytest.exit(f"{name} is not set: run through tests/tests/python_sdk.rs", returncode=2)
    return v


@pytest.fixture(scope="session")
def indexing_url() -> str:
    return _need("VECDB_URL")


@pytest.fixture(scope="session")
def embedding_url() -> str:
    return _need("VECDB_EMBEDDING_URL")


@pytest.fixture(scope="session")
def api_key() -> str:
    return _need("VECDB_API_KEY")
