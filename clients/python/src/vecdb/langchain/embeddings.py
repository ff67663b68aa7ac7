"""LangChain ``Embeddings`` computed by the embedding service."""

from __future__ import annotations

from typing import List, Optional

from langchain_core.embeddings import Embeddings

from .._transport import RetryPolicy
from ..embedding import AsyncEmbeddingClient, EmbeddingClient
from ._loop import PerLoop

__all__ = ["VecdbEmbeddings"]


class VecdbEmbeddings(Embeddings):
    """Embeddings from the embedding service's ``POST /embed`` (sync and
    native async; lists split within the service's ``/info`` limits).

    Args:
        url: the embedding service (default ``$VECDB_EMBEDDING_URL`` or
            ``http://localhost:8001``).
        api_key: its key, if it has one (default ``$VECDB_EMBEDDING_API_KEY``).
        query_prompt_name: a key of the model's ``prompts`` prepended to
            queries (e.g. ``"query"`` for E5-style models); default none.
        document_prompt_name: the same for documents.
        normalize: L2-normalise (default: what the model says).
        dimensions: keep the first N dimensions (Matryoshka models).
        timeout: seconds per request.
        retry: retry policy for 429, 503 and connection errors.

    Returns lists of ``float`` of the model's dimension (``/info``).
    Errors: :class:`vecdb.ApiError` subclasses with the server's code.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        query_prompt_name: Optional[str] = None,
        document_prompt_name: Optional[str] = None,
        normalize: Optional[bool] = None,
        dimensions: Optional[int] = None,
        timeout: float = 120.0,
        retry: Optional[RetryPolicy] = None,
    ) -> None:
        self.query_prompt_name = query_prompt_name
        self.document_prompt_name = document_prompt_name
        self.normalize = normalize
        self.dimensions = dimensions
        self.client = EmbeddingClient(url, api_key, timeout, retry)
        self._async = PerLoop(lambda: AsyncEmbeddingClient(url, api_key, timeout, retry))

    def embed_documents(self, texts: List[str]) -> List[List[float]]:
        """One vector per text, in order."""
        return self.client.embed(texts, self.normalize, self.document_prompt_name,
                                 self.dimensions)

    def embed_query(self, text: str) -> List[float]:
        """The vector of one query text."""
        return self.client.embed([text], self.normalize, self.query_prompt_name,
                                 self.dimensions)[0]

    async def aembed_documents(self, texts: List[str]) -> List[List[float]]:
        """One vector per text, in order (asyncio)."""
        return await self._async.get().embed(texts, self.normalize,
                                             self.document_prompt_name, self.dimensions)

    async def aembed_query(self, text: str) -> List[float]:
        """The vector of one query text (asyncio)."""
        out = await self._async.get().embed([text], self.normalize, self.query_prompt_name,
                                            self.dimensions)
        return out[0]
