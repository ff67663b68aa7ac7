"""The blocking client of the indexing service (port 8000).

One :class:`Client` holds one pooled ``httpx.Client``; it is safe to share
between threads. Errors are :class:`vecdb.errors.ApiError` subclasses
carrying the server's ``code`` and ``message``; 429 and 503 answers and
connection errors are retried with backoff (:class:`RetryPolicy`).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

from tqdm import tqdm

from . import _ops as ops
from ._ops import Call
from ._transport import RetryPolicy, SyncTransport
from .bulk import DEFAULT_MAX_BYTES, PointLike, split_batches
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

if TYPE_CHECKING:
    from .async_client import AsyncClient

__all__ = ["Client", "DEFAULT_URL"]

#: Where the indexing service listens by default.
DEFAULT_URL = "http://localhost:8000"


def _sized(points: Iterable[Any]) -> Optional[int]:
    try:
        return len(points)  # type: ignore[arg-type]
    except TypeError:
        return None


class Client:
    """Blocking client of the indexing service.

    Args:
        url: base URL of the indexing service (default
            ``$VECDB_URL`` or ``http://localhost:8000``).
        api_key: sent as ``Authorization: Bearer <key>`` (default
            ``$VECDB_API_KEY``; none when unset).
        timeout: seconds per request (connect at most 10 s).
        retry: the retry policy for 429, 503 and connection errors.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        timeout: float = 60.0,
        retry: Optional[RetryPolicy] = None,
    ) -> None:
        url = url or os.environ.get("VECDB_URL") or DEFAULT_URL
        api_key = api_key if api_key is not None else os.environ.get("VECDB_API_KEY")
        self._t = SyncTransport(url, api_key, timeout, retry)

    @property
    def url(self) -> str:
        """The base URL requests go to."""
        return self._t.base_url

    def to_async(self) -> "AsyncClient":
        """An :class:`AsyncClient` with this client's URL, key, timeout and
        retry policy (its own connection pool)."""
        from .async_client import AsyncClient

        t = self._t
        return AsyncClient(t.base_url, t.api_key or "", t.timeout_s, t.retry)

    def _call(self, c: Call) -> Any:
        r = self._t.request(c.method, c.path, json_body=c.json_body, params=c.params,
                            content=c.content, headers=c.headers)
        return c.parse(r)

    def close(self) -> None:
        """Closes the pooled connections."""
        self._t.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- service ---------------------------------------------------------

    def health(self) -> Dict[str, Any]:
        """``GET /health``: ``{"status": "ok"}`` when the service is up."""
        return self._call(ops.health())

    # -- collections -----------------------------------------------------

    def list_collections(self) -> List[CollectionInfo]:
        """Every collection with its settings and point count."""
        return self._call(ops.list_collections())

    def get_collection(self, name: str) -> CollectionInfo:
        """One collection's settings and state. Raises NotFoundError."""
        return self._call(ops.get_collection(name))

    def collection_exists(self, name: str) -> bool:
        """Whether a collection of that name exists."""
        try:
            self.get_collection(name)
            return True
        except NotFoundError:
            return False

    def create_collection(
        self,
        name: str,
        dimension: Optional[int] = None,
        metric: Optional[str] = None,
        **settings: Any,
    ) -> CollectionInfo:
        """Creates a collection.

        Args:
            name: 1 to 64 of ``A-Z a-z 0-9 _ -``.
            dimension: vector length, 1 to 65536 (default: the embedding
                model's dimension).
            metric: ``cosine`` (default), ``dot`` or ``euclidean``.
            **settings: further fields of ``POST /collections`` as the
                service names them: ``index`` (``hnsw``, ``ivf_pq``,
                ``flat``), ``hnsw`` (``{"m", "ef_construction", "ef"}``),
                ``ivf``, ``quantization``, ``flush_threshold``, ``fsync``.

        Raises ConflictError when it exists, BadRequestError for bad settings.
        """
        return self._call(ops.create_collection(name, dimension, metric, settings))

    def delete_collection(self, name: str) -> None:
        """Deletes a collection and its data. Raises NotFoundError."""
        self._call(ops.delete_collection(name))

    # -- points ----------------------------------------------------------

    def upsert(self, collection: str, points: Sequence[PointLike]) -> UpdateResult:
        """Inserts or replaces points (at most 10,000 in one call; see
        :meth:`upload_points` for more). Each point is a
        :class:`PointInput` or a dict with ``id``, ``vector`` and/or
        ``content`` (embedded by the service when there is no vector), and
        ``metadata`` (Qdrant's ``payload`` is read as ``metadata``)."""
        return self._call(ops.upsert(collection, points))

    def retrieve(
        self,
        collection: str,
        ids: Sequence[PointId],
        with_vector: bool = False,
        with_payload: bool = True,
        consistency_after: Optional[int] = None,
    ) -> List[Point]:
        """The points with these ids (at most 10,000), in the order asked;
        absent ids are left out."""
        return self._call(
            ops.retrieve(collection, ids, with_vector, with_payload, consistency_after))

    def delete(
        self,
        collection: str,
        ids: Optional[Sequence[PointId]] = None,
        filter: Optional[Filter] = None,
    ) -> int:
        """Deletes by ``ids`` (at most 10,000) or by ``filter`` (exactly one
        of them). Returns how many points were deleted; absent ids are not
        an error."""
        return self._call(ops.delete(collection, ids, filter))

    def set_metadata(
        self, collection: str, id: PointId, metadata: Mapping[str, Any], merge: bool = True
    ) -> None:
        """Merges ``metadata`` into a point's payload (or replaces it with
        ``merge=False``). Raises NotFoundError for an absent point."""
        self._call(ops.set_metadata(collection, id, metadata, merge))

    def scroll(
        self,
        collection: str,
        filter: Optional[Filter] = None,
        limit: int = 100,
        cursor: Optional[PointId] = None,
        with_vector: bool = False,
        with_payload: bool = True,
        consistency_after: Optional[int] = None,
    ) -> ScrollPage:
        """One page of points in id order (``limit`` 1 to 10,000); pass the
        page's ``next_cursor`` as ``cursor`` for the next."""
        return self._call(ops.scroll(collection, filter, limit, cursor, with_vector,
                                     with_payload, consistency_after))

    def scroll_all(
        self,
        collection: str,
        filter: Optional[Filter] = None,
        page_size: int = 1000,
        with_vector: bool = False,
        with_payload: bool = True,
    ) -> Iterator[Point]:
        """Every point (matching ``filter``), in id order, page by page."""
        cursor: Optional[PointId] = None
        while True:
            page = self.scroll(collection, filter, page_size, cursor, with_vector, with_payload)
            yield from page.points
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def count(
        self, collection: str, filter: Optional[Filter] = None,
        consistency_after: Optional[int] = None,
    ) -> int:
        """How many points (matching ``filter``) the collection holds."""
        return self._call(ops.count(collection, filter, consistency_after))

    # -- search ----------------------------------------------------------

    def search(
        self,
        collection: str,
        query: Optional[str] = None,
        vector: Optional[Sequence[float]] = None,
        limit: int = 10,
        filter: Optional[Filter] = None,
        with_vector: bool = False,
        with_payload: bool = True,
        ef: Optional[int] = None,
        nprobe: Optional[int] = None,
        exact: Optional[bool] = None,
        consistency_after: Optional[int] = None,
    ) -> List[ScoredPoint]:
        """Top ``limit`` (1 to 1000) points by text ``query`` (embedded by
        the service) or by ``vector``, best first, optionally ``filter``-ed.
        ``ef`` (HNSW beam), ``nprobe`` (IVF lists) and ``exact`` (brute
        force) tune one query."""
        body = ops.search_body(query, vector, limit, filter, with_vector, with_payload,
                               ef, nprobe, exact, consistency_after)
        return self._call(ops.search(collection, body))

    def search_batch(
        self, collection: str, searches: Sequence[Mapping[str, Any]]
    ) -> List[List[ScoredPoint]]:
        """Up to 100 searches in one request, answered in order; each is a
        dict of :meth:`search`'s keyword arguments."""
        return self._call(ops.search_batch(collection, ops.search_bodies(searches)))

    def query(self, collection: str, request: Optional[Mapping[str, Any]] = None,
              **fields: Any) -> QueryResponse:
        """The Query API, ``POST /collections/{name}/query`` in Qdrant's
        shape (``prefetch``, ``query`` with ``fusion``: ``rrf`` or ``dbsf``,
        ``filter``, ``limit``...): ``request`` and ``fields`` are sent as
        the body unchanged."""
        return self._call(ops.query(collection, {**(request or {}), **fields}))

    # -- bulk upload -----------------------------------------------------

    def upload_points(
        self,
        collection: str,
        points: Iterable[PointLike],
        batch_size: int = 1000,
        max_batch_bytes: int = DEFAULT_MAX_BYTES,
        parallel: int = 2,
        progress: bool = True,
        total: Optional[int] = None,
    ) -> UploadSummary:
        """Uploads any number of points in batches split by count
        (``batch_size``, at most 10,000) and body size (``max_batch_bytes``),
        ``parallel`` requests in flight, with a ``tqdm`` progress bar
        (points; rate and ETA when ``total`` is known, taken from
        ``len(points)`` when it has one). ``points`` is read lazily.

        Each batch is retried on 429/503/connection errors (ids are fixed
        before the first try, so a retry is idempotent). On a failure the
        error is raised once the batches in flight have finished; batches
        acknowledged before stay written.
        """
        total = total if total is not None else _sized(points)
        t0 = time.perf_counter()
        bar = tqdm(total=total, unit="pt", desc=f"upload {collection}", disable=not progress,
                   smoothing=0.1)
        results: Dict[int, UpdateResult] = {}
        n_batches = 0

        def send(i: int, body: bytes, n: int) -> None:
            results[i] = self._call(ops.upsert_raw(collection, body))
            bar.update(n)

        try:
            with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
                pending: "set[Future[None]]" = set()
                for i, batch in enumerate(split_batches(points, batch_size, max_batch_bytes)):
                    n_batches += 1
                    while len(pending) >= max(1, parallel):
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in done:
                            f.result()
                    pending.add(pool.submit(send, i, batch.body, len(batch)))
                for f in pending:
                    f.result()
        finally:
            bar.close()
        ids: List[PointId] = []
        last_op = 0
        for i in sorted(results):
            ids.extend(results[i].ids)
            last_op = max(last_op, results[i].operation)
        return UploadSummary(len(ids), n_batches, time.perf_counter() - t0, ids, last_op)

    # -- snapshots -------------------------------------------------------

    def create_snapshot(self, collection: Optional[str]) -> SnapshotDescription:
        """Makes a consistent snapshot of a collection while writes go on
        (``collection=None``: of the whole storage, every collection);
        returns its description (``name``, ``size``, ``checksum``)."""
        return self._call(ops.create_snapshot(collection))

    def list_snapshots(self, collection: Optional[str]) -> List[SnapshotDescription]:
        """The complete snapshots of a collection (None: of the whole
        storage), oldest first."""
        return self._call(ops.list_snapshots(collection))

    def delete_snapshot(self, collection: Optional[str], snapshot: str) -> None:
        """Removes one snapshot file. Raises NotFoundError."""
        self._call(ops.delete_snapshot(collection, snapshot))

    def download_snapshot(
        self, collection: Optional[str], snapshot: str, path: PathLike
    ) -> Path:
        """Streams a snapshot to ``path`` (a file, or a directory to put
        ``snapshot`` in), checking its SHA-256 against the server's
        ``x-checksum-sha256`` header. Returns the file's path; raises
        ChecksumMismatchError (and removes the file) on a mismatch."""
        with self._t.stream("GET", ops.snapshot_path(collection, snapshot)) as r:
            d = Download(path, snapshot)
            try:
                for chunk in r.iter_bytes(CHUNK):
                    d.write(chunk)
            except BaseException:
                d.abort()
                raise
            return d.finish(r.headers.get(CHECKSUM_HEADER))

    def recover_snapshot(
        self, collection: str, location: str, checksum: Optional[str] = None
    ) -> RecoverResult:
        """Replaces ``collection`` (creating it if absent) with a snapshot
        file already on the server: ``location`` is an absolute path, a
        ``file://`` URL or the name of one of the collection's snapshots.
        With ``checksum`` (SHA-256 hex) a different file restores nothing.
        A damaged file is refused (BadRequestError, code
        ``snapshot_invalid``) and the collection is left as it was."""
        return self._call(ops.recover_snapshot(collection, location, checksum))

    def upload_snapshot(
        self, collection: str, path: PathLike, checksum: Optional[str] = None
    ) -> RecoverResult:
        """Uploads a snapshot file (streamed, not retried) and replaces
        ``collection`` with it (creating it if absent). The file's SHA-256
        (``checksum``, else computed here) goes with it, so a body that
        arrives different restores nothing; a damaged file is refused
        (BadRequestError, code ``snapshot_invalid``)."""
        checksum = checksum or file_sha256(path)
        with open(path, "rb") as f:
            chunks = iter(lambda: f.read(CHUNK), b"")
            r = self._t.request("POST", ops.upload_snapshot_path(collection), content=chunks,
                                params={"checksum": checksum},
                                headers={"content-type": "application/x-tar"}, retry=False)
        return RecoverResult.from_json(r.json())
