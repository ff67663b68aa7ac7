"""Clients of the embedding service (port 8001): texts to vectors through
its text-embeddings-inference route ``POST /embed``.

Long lists are split into calls within the service's limits from
``GET /info`` (``max_client_batch_size`` inputs and ``body_limit_bytes``
per call, read once and cached); vectors come back in input order.
Errors and retries as in :mod:`vecdb.client` (429 ``overloaded`` and 503
are retried with backoff).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence

from ._transport import AsyncTransport, RetryPolicy, SyncTransport

__all__ = ["EmbeddingClient", "AsyncEmbeddingClient", "DEFAULT_EMBEDDING_URL"]

#: Where the embedding service listens by default.
DEFAULT_EMBEDDING_URL = "http://localhost:8001"


def _chunks(texts: Sequence[str], max_inputs: int, max_bytes: int) -> Iterator[List[str]]:
    """Texts in order, in lists of at most ``max_inputs`` whose JSON stays
    under ``max_bytes`` (a longer single text alone)."""
    out: List[str] = []
    size = 256
    for t in texts:
        n = len(json.dumps(t, ensure_ascii=False).encode()) + 1
        if out and (len(out) >= max_inputs or size + n > max_bytes):
            yield out
            out, size = [], 256
        out.append(t)
        size += n
    if out:
        yield out


def _body(texts: List[str], normalize: Optional[bool], prompt_name: Optional[str],
          dimensions: Optional[int]) -> Dict[str, Any]:
    b: Dict[str, Any] = {"inputs": texts}
    if normalize is not None:
        b["normalize"] = normalize
    if prompt_name is not None:
        b["prompt_name"] = prompt_name
    if dimensions is not None:
        b["dimensions"] = dimensions
    return b


def _limits(info: Dict[str, Any]) -> "tuple[int, int]":
    return (max(1, int(info.get("max_client_batch_size") or 32)),
            int(info.get("body_limit_bytes") or 4 * 1024 * 1024) * 3 // 4)


class EmbeddingClient:
    """Blocking client of the embedding service.

    Args:
        url: base URL (default ``$VECDB_EMBEDDING_URL`` or
            ``http://localhost:8001``).
        api_key: the embedding service's key, sent as a bearer token
            (default ``$VECDB_EMBEDDING_API_KEY``).
        timeout: seconds per request.
        retry: retry policy for 429, 503 and connection errors.
    """

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None,
                 timeout: float = 120.0, retry: Optional[RetryPolicy] = None) -> None:
        url = url or os.environ.get("VECDB_EMBEDDING_URL") or DEFAULT_EMBEDDING_URL
        if api_key is None:
            api_key = os.environ.get("VECDB_EMBEDDING_API_KEY")
        self._t = SyncTransport(url, api_key, timeout, retry)
        self._info: Optional[Dict[str, Any]] = None

    def info(self) -> Dict[str, Any]:
        """``GET /info``: model id, ``dimension``, ``max_seq_length``, limits
        (cached after the first call)."""
        if self._info is None:
            self._info = self._t.request("GET", "/info").json()
        return self._info

    def embed(self, texts: Sequence[str], normalize: Optional[bool] = None,
              prompt_name: Optional[str] = None,
              dimensions: Optional[int] = None) -> List[List[float]]:
        """One vector (``dimension`` floats) per text, in order.

        ``normalize`` (default: the model's), ``prompt_name`` (a key of the
        model's ``prompts``) and ``dimensions`` (keep the first N) are
        ``POST /embed``'s fields. An empty list gives an empty list.
        """
        if not texts:
            return []
        max_inputs, max_bytes = _limits(self.info())
        out: List[List[float]] = []
        for chunk in _chunks(list(texts), max_inputs, max_bytes):
            r = self._t.request("POST", "/embed",
                                json_body=_body(chunk, normalize, prompt_name, dimensions))
            out.extend(r.json())
        return out

    def close(self) -> None:
        """Closes the pooled connections."""
        self._t.close()

    def __enter__(self) -> "EmbeddingClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncEmbeddingClient:
    """Asyncio client of the embedding service; see :class:`EmbeddingClient`.
    Calls for one ``embed`` run ``concurrency`` at a time."""

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None,
                 timeout: float = 120.0, retry: Optional[RetryPolicy] = None,
                 concurrency: int = 4) -> None:
        url = url or os.environ.get("VECDB_EMBEDDING_URL") or DEFAULT_EMBEDDING_URL
        if api_key is None:
            api_key = os.environ.get("VECDB_EMBEDDING_API_KEY")
        self._t = AsyncTransport(url, api_key, timeout, retry)
        self._info: Optional[Dict[str, Any]] = None
        self._concurrency = max(1, concurrency)

    async def info(self) -> Dict[str, Any]:
        """See :meth:`EmbeddingClient.info`."""
        if self._info is None:
            self._info = (await self._t.request("GET", "/info")).json()
        return self._info

    async def embed(self, texts: Sequence[str], normalize: Optional[bool] = None,
                    prompt_name: Optional[str] = None,
                    dimensions: Optional[int] = None) -> List[List[float]]:
        """See :meth:`EmbeddingClient.embed`."""
        if not texts:
            return []
        max_inputs, max_bytes = _limits(await self.info())
        sem = asyncio.Semaphore(self._concurrency)

        async def one(chunk: List[str]) -> List[List[float]]:
            async with sem:
                r = await self._t.request(
                    "POST", "/embed", json_body=_body(chunk, normalize, prompt_name, dimensions))
                return r.json()

        parts = await asyncio.gather(
            *(one(c) for c in _chunks(list(texts), max_inputs, max_bytes)))
        return [v for part in parts for v in part]

    async def close(self) -> None:
        """Closes the pooled connections."""
        await self._t.close()

    async def __aenter__(self) -> "AsyncEmbeddingClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
