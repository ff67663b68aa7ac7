"""The asyncio client of the indexing service: the same methods as
:class:`vecdb.Client`, awaited, over one pooled ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import (
    Any, AsyncIterator, Dict, Iterable, List, Mapping, Optional, Sequence,
)

from tqdm import tqdm

from . import _ops as ops
from ._ops import Call
from ._transport import AsyncTransport, RetryPolicy
from .bulk import DEFAULT_MAX_BYTES, PointLike, split_batches
from .client import DEFAULT_URL, _sized
from .errors import NotFoundError
from .snapshots import CHECKSUM_HEADER, CHUNK, Download, PathLike, file_sha256
from .models import (
    CollectionInfo,
    Filter,
    Point,
    PointId,
    QueryResponse,
    RecoverResult,
    ScoredPoint,
    ScrollPage,
    SnapshotDescription,
    UpdateResult,
    UploadSummary,
)

__all__ = ["AsyncClient"]



class AsyncClient:
    """Asyncio client of the indexing service; arguments, answers and
    errors as for :class:`vecdb.Client`. Use ``async with`` or await
    :meth:`close`."""

    def __init__(
        self,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        timeout: float = 60.0,
        retry: Optional[RetryPolicy] = None,
    ) -> None:
        url = url or os.environ.get("VECDB_URL") or DEFAULT_URL
        api_key = api_key if api_key is not None else os.environ.get("VECDB_API_KEY")
        self._t = AsyncTransport(url, api_key, timeout, retry)

    @property
    def url(self) -> str:
        """The base URL requests go to."""
        return self._t.base_url

    async def _call(self, c: Call) -> Any:
        r = await self._t.request(c.method, c.path, json_body=c.json_body, params=c.params,
                                  content=c.content, headers=c.headers)
        return c.parse(r)

    async def close(self) -> None:
        """Closes the pooled connections."""
        await self._t.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def health(self) -> Dict[str, Any]:
        """See :meth:`vecdb.Client.health`."""
        return await self._call(ops.health())

    async def list_collections(self) -> List[CollectionInfo]:
        """See :meth:`vecdb.Client.list_collections`."""
        return await self._call(ops.list_collections())

    async def get_collection(self, name: str) -> CollectionInfo:
        """See :meth:`vecdb.Client.get_collection`."""
        return await self._call(ops.get_collection(name))

    async def collection_exists(self, name: str) -> bool:
        """See :meth:`vecdb.Client.collection_exists`."""
        try:
            await self.get_collection(name)
            return True
        except NotFoundError:
            return False

    async def create_collection(
        self, name: str, dimension: Optional[int] = None, metric: Optional[str] = None,
        **settings: Any,
    ) -> CollectionInfo:
        """See :meth:`vecdb.Client.create_collection`."""
        return await self._call(ops.create_collection(name, dimension, metric, settings))

    async def delete_collection(self, name: str) -> None:
        """See :meth:`vecdb.Client.delete_collection`."""
        await self._call(ops.delete_collection(name))

    async def upsert(self, collection: str, points: Sequence[PointLike]) -> UpdateResult:
        """See :meth:`vecdb.Client.upsert`."""
        return await self._call(ops.upsert(collection, points))

    async def retrieve(
        self, collection: str, ids: Sequence[PointId], with_vector: bool = False,
        with_payload: bool = True, consistency_after: Optional[int] = None,
    ) -> List[Point]:
        """See :meth:`vecdb.Client.retrieve`."""
        return await self._call(
            ops.retrieve(collection, ids, with_vector, with_payload, consistency_after))

    async def delete(
        self, collection: str, ids: Optional[Sequence[PointId]] = None,
        filter: Optional[Filter] = None,
    ) -> int:
        """See :meth:`vecdb.Client.delete`."""
        return await self._call(ops.delete(collection, ids, filter))

    async def set_metadata(
        self, collection: str, id: PointId, metadata: Mapping[str, Any], merge: bool = True
    ) -> None:
        """See :meth:`vecdb.Client.set_metadata`."""
        await self._call(ops.set_metadata(collection, id, metadata, merge))

    async def scroll(
        self, collection: str, filter: Optional[Filter] = None, limit: int = 100,
        cursor: Optional[PointId] = None, with_vector: bool = False,
        with_payload: bool = True, consistency_after: Optional[int] = None,
    ) -> ScrollPage:
        """See :meth:`vecdb.Client.scroll`."""
        return await self._call(ops.scroll(collection, filter, limit, cursor, with_vector,
                                           with_payload, consistency_after))

    async def scroll_all(
        self, collection: str, filter: Optional[Filter] = None, page_size: int = 1000,
        with_vector: bool = False, with_payload: bool = True,
    ) -> AsyncIterator[Point]:
        """See :meth:`vecdb.Client.scroll_all` (an async iterator)."""
        cursor: Optional[PointId] = None
        while True:
            page = await self.scroll(collection, filter, page_size, cursor, with_vector,
                                     with_payload)
            for p in page.points:
                yield p
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def count(
        self, collection: str, filter: Optional[Filter] = None,
        consistency_after: Optional[int] = None,
    ) -> int:
        """See :meth:`vecdb.Client.count`."""
        return await self._call(ops.count(collection, filter, consistency_after))

    async def search(
        self, collection: str, query: Optional[str] = None,
        vector: Optional[Sequence[float]] = None, limit: int = 10,
        filter: Optional[Filter] = None, with_vector: bool = False,
        with_payload: bool = True, ef: Optional[int] = None, nprobe: Optional[int] = None,
        exact: Optional[bool] = None, consistency_after: Optional[int] = None,
    ) -> List[ScoredPoint]:
        """See :meth:`vecdb.Client.search`."""
        body = ops.search_body(query, vector, limit, filter, with_vector, with_payload,
                               ef, nprobe, exact, consistency_after)
        return await self._call(ops.search(collection, body))

    async def search_batch(
        self, collection: str, searches: Sequence[Mapping[str, Any]]
    ) -> List[List[ScoredPoint]]:
        """See :meth:`vecdb.Client.search_batch`."""
        return await self._call(ops.search_batch(collection, ops.search_bodies(searches)))

    async def query(self, collection: str, request: Optional[Mapping[str, Any]] = None,
                    **fields: Any) -> QueryResponse:
        """See :meth:`vecdb.Client.query`."""
        return await self._call(ops.query(collection, {**(request or {}), **fields}))

    async def upload_points(
        self,
        collection: str,
        points: Iterable[PointLike],
        batch_size: int = 1000,
        max_batch_bytes: int = DEFAULT_MAX_BYTES,
        parallel: int = 2,
        progress: bool = True,
        total: Optional[int] = None,
    ) -> UploadSummary:
        """See :meth:`vecdb.Client.upload_points`: ``parallel`` requests in
        flight as tasks, the same batching and progress bar."""
        total = total if total is not None else _sized(points)
        t0 = time.perf_counter()
        bar = tqdm(total=total, unit="pt", desc=f"upload {collection}", disable=not progress,
                   smoothing=0.1)
        results: Dict[int, UpdateResult] = {}
        pending: "set[asyncio.Task[Any]]" = set()
        n_batches = 0

        async def send(i: int, body: bytes, n: int) -> None:
            results[i] = await self._call(ops.upsert_raw(collection, body))
            bar.update(n)

        try:
            for i, batch in enumerate(split_batches(points, batch_size, max_batch_bytes)):
                n_batches += 1
                while len(pending) >= max(1, parallel):
                    done, pending = await asyncio.wait(
                        pending, return_when=asyncio.FIRST_COMPLETED)
                    for t in done:
                        t.result()
                pending.add(asyncio.ensure_future(send(i, batch.body, len(batch))))
            if pending:
                done, _ = await asyncio.wait(pending)
                for t in done:
                    t.result()
        finally:
            for t in pending:
                if not t.done():
                    t.cancel()
            bar.close()
        ids: List[PointId] = []
        last_op = 0
        for i in sorted(results):
            ids.extend(results[i].ids)
            last_op = max(last_op, results[i].operation)
        return UploadSummary(len(ids), n_batches, time.perf_counter() - t0, ids, last_op)

    async def create_snapshot(self, collection: Optional[str]) -> SnapshotDescription:
        """See :meth:`vecdb.Client.create_snapshot`."""
        return await self._call(ops.create_snapshot(collection))

    async def list_snapshots(self, collection: Optional[str]) -> List[SnapshotDescription]:
        """See :meth:`vecdb.Client.list_snapshots`."""
        return await self._call(ops.list_snapshots(collection))

    async def delete_snapshot(self, collection: Optional[str], snapshot: str) -> None:
        """See :meth:`vecdb.Client.delete_snapshot`."""
        await self._call(ops.delete_snapshot(collection, snapshot))

    async def download_snapshot(
        self, collection: Optional[str], snapshot: str, path: PathLike
    ) -> Path:
        """See :meth:`vecdb.Client.download_snapshot`."""
        async with self._t.stream("GET", ops.snapshot_path(collection, snapshot)) as r:
            d = Download(path, snapshot)
            try:
                async for chunk in r.aiter_bytes(CHUNK):
                    d.write(chunk)
            except BaseException:
                d.abort()
                raise
            return d.finish(r.headers.get(CHECKSUM_HEADER))

    async def recover_snapshot(
        self, collection: str, location: str, checksum: Optional[str] = None
    ) -> RecoverResult:
        """See :meth:`vecdb.Client.recover_snapshot`."""
        return await self._call(ops.recover_snapshot(collection, location, checksum))

    async def upload_snapshot(
        self, collection: str, path: PathLike, checksum: Optional[str] = None
    ) -> RecoverResult:
        """See :meth:`vecdb.Client.upload_snapshot`."""
        checksum = checksum or await asyncio.to_thread(file_sha256, path)

        async def chunks() -> AsyncIterator[bytes]:
            with open(path, "rb") as f:
                while True:
                    b = f.read(CHUNK)
                    if not b:
                        return
                    yield b

        r = await self._t.request("POST", ops.upload_snapshot_path(collection),
                                  content=chunks(), params={"checksum": checksum},
                                  headers={"content-type": "application/x-tar"}, retry=False)
        return RecoverResult.from_json(r.json())
