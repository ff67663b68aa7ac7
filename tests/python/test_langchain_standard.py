"""LangChain's own standard test suites (`langchain-tests`, unmodified)
against the real services:

- `VectorStoreIntegrationTests` on `VecdbVectorStore` with the suite's own
  embeddings (`DeterministicFakeEmbedding`, 6 dimensions, computed client
  side), and again with no client-side embeddings, the indexing service
  embedding every text with its model through the embedding service;
- `EmbeddingsIntegrationTests` on `VecdbEmbeddings` (the embedding service).

Each vector-store test gets a fresh collection, deleted afterwards.
"""
import os
import uuid
from typing import Generator

import pytest
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import (
    EmbeddingsIntegrationTests,
    VectorStoreIntegrationTests,
)

from vecdb.langchain import VecdbEmbeddings, VecdbVectorStore


def _store(embedding) -> Generator[VectorStore, None, None]:
    store = VecdbVectorStore(f"lc-std-{uuid.uuid4().hex[:16]}", embedding)
    try:
        yield store
    finally:
        store.delete_collection()


class TestVecdbVectorStore(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self) -> Generator[VectorStore, None, None]:  # type: ignore[override]
        """An empty store on a new collection, vectors from the suite's embeddings."""
        yield from _store(self.get_embeddings())


class TestVecdbVectorStoreServerEmbedding(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self) -> Generator[VectorStore, None, None]:  # type: ignore[override]
        """An empty store on a new collection, texts embedded by the service."""
        yield from _store(None)


class TestVecdbEmbeddings(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[VecdbEmbeddings]:
        return VecdbEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"url": os.environ["VECDB_EMBEDDING_URL"]}
