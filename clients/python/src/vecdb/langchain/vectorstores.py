"""LangChain ``VectorStore`` over an indexing-service collection.

Mapping: ``Document.page_content`` is the point's ``content``,
``Document.metadata`` its payload (``metadata``), ``Document.id`` its id (a
string; a UUID4 when a document has none). Vectors come from the
``embedding`` given (computed here), or, with no ``embedding``, from the
service itself (texts are sent as ``content`` and embedded by the indexing
service through its embedding service).

The collection is created on the first write, with the vectors' dimension
and ``metric``; reads of a collection that does not exist yet find nothing.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Type

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from ..async_client import AsyncClient
from ..client import Client
from ..errors import ConflictError, NotFoundError
from ..models import Point, ScoredPoint
from ._loop import PerLoop

__all__ = ["VecdbVectorStore", "to_filter"]

_FILTER_KEYS = {"must", "should", "must_not"}


def to_filter(filter: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """A LangChain metadata filter as the service's filter.

    A dict with only ``must`` / ``should`` / ``must_not`` is already in the
    service's language and passes unchanged; any other dict is read as
    ``{metadata_key: value}`` equalities that must all hold (a list value
    means "any of"): ``{"pos": "n", "year": [2000, 2001]}`` becomes
    ``{"must": [{"key": "pos", "match": "n"}, {"key": "year", "match": {"any": [2000, 2001]}}]}``.
    """
    if not filter:
        return None
    if set(filter) <= _FILTER_KEYS:
        return filter
    must = []
    for k, v in filter.items():
        if isinstance(v, (list, tuple)):
            must.append({"key": k, "match": {"any": list(v)}})
        else:
            must.append({"key": k, "match": v})
    return {"must": must}


def _doc(p: Point) -> Document:
    return Document(id=str(p.id), page_content=p.content or "", metadata=p.metadata or {})


class VecdbVectorStore(VectorStore):
    """A LangChain vector store in one collection of the indexing service.

    Args:
        collection_name: the collection (1 to 64 of ``A-Z a-z 0-9 _ -``);
            made on the first write when it does not exist.
        embedding: the LangChain embeddings computing vectors here; None to
            let the indexing service embed texts with its own model.
        url: the indexing service (default ``$VECDB_URL`` or
            ``http://localhost:8000``), when ``client`` is not given.
        api_key: its key (default ``$VECDB_API_KEY``).
        client: a :class:`vecdb.Client` to use instead of making one.
        async_client: a :class:`vecdb.AsyncClient` for the async methods
            (default: one per event loop, made on use).
        metric: ``cosine`` (default), ``dot`` or ``euclidean`` for a
            collection created here.
        collection_settings: further ``POST /collections`` fields for a
            collection created here (``index``, ``hnsw``, ...).
        batch_size: points per request when adding many texts.

    Scores of ``similarity_search_with_score`` are the service's: cosine
    or dot similarity (higher is closer) or euclidean distance (lower).
    """

    def __init__(
        self,
        collection_name: str,
        embedding: Optional[Embeddings] = None,
        *,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        client: Optional[Client] = None,
        async_client: Optional[AsyncClient] = None,
        metric: str = "cosine",
        collection_settings: Optional[Dict[str, Any]] = None,
        batch_size: int = 500,
    ) -> None:
        self.collection_name = collection_name
        self.embedding = embedding
        self.metric = metric
        self.collection_settings = dict(collection_settings or {})
        self.batch_size = batch_size
        self.client = client or Client(url, api_key)
        self._async = PerLoop(self.client.to_async, async_client)
        self._exists = False

    @property
    def embeddings(self) -> Optional[Embeddings]:
        """The embeddings this store computes vectors with (None: the
        service embeds)."""
        return self.embedding

    # -- writing ---------------------------------------------------------

    def _points(self, texts: List[str], metadatas: Optional[Sequence[Optional[dict]]],
                ids: Optional[Sequence[Optional[str]]],
                vectors: Optional[List[List[float]]]) -> Tuple[List[str], List[dict]]:
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"{len(metadatas)} metadatas for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        out_ids = [str(i) if i is not None else str(uuid.uuid4())
                   for i in (ids or [None] * len(texts))]
        points = []
        for n, t in enumerate(texts):
            p: Dict[str, Any] = {"id": out_ids[n], "content": t,
                                 "metadata": dict((metadatas[n] if metadatas else None) or {})}
            if vectors is not None:
                p["vector"] = [float(x) for x in vectors[n]]
            points.append(p)
        return out_ids, points

    def _create_args(self, vectors: Optional[List[List[float]]]) -> Dict[str, Any]:
        dim = len(vectors[0]) if vectors else None
        return {"name": self.collection_name, "dimension": dim, "metric": self.metric,
                **self.collection_settings}

    def _ensure(self, vectors: Optional[List[List[float]]]) -> None:
        if self._exists:
            return
        try:
            self.client.create_collection(**self._create_args(vectors))
        except ConflictError:
            pass
        self._exists = True

    async def _aensure(self, vectors: Optional[List[List[float]]]) -> None:
        if self._exists:
            return
        try:
            await self._async.get().create_collection(**self._create_args(vectors))
        except ConflictError:
            pass
        self._exists = True

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[Optional[str]]] = None,
        **kwargs: Any,
    ) -> List[str]:
        """Embeds and stores texts with their metadata; an id given again
        replaces that document. Returns the ids (given, or UUID4 strings)."""
        texts = list(texts)
        if not texts:
            return []
        vectors = self.embedding.embed_documents(texts) if self.embedding else None
        out_ids, points = self._points(texts, metadatas, ids, vectors)
        self._ensure(vectors)
        if len(points) <= self.batch_size:
            self.client.upsert(self.collection_name, points)
        else:
            self.client.upload_points(self.collection_name, points, batch_size=self.batch_size,
                                      progress=kwargs.get("progress", False))
        return out_ids

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[Optional[str]]] = None,
        **kwargs: Any,
    ) -> List[str]:
        """Async :meth:`add_texts`."""
        texts = list(texts)
        if not texts:
            return []
        vectors = await self.embedding.aembed_documents(texts) if self.embedding else None
        out_ids, points = self._points(texts, metadatas, ids, vectors)
        await self._aensure(vectors)
        client = self._async.get()
        if len(points) <= self.batch_size:
            await client.upsert(self.collection_name, points)
        else:
            await client.upload_points(self.collection_name, points,
                                       batch_size=self.batch_size,
                                       progress=kwargs.get("progress", False))
        return out_ids

    def delete(self, ids: Optional[List[str]] = None, **kwargs: Any) -> Optional[bool]:
        """Deletes by ``ids``, or by ``filter=`` (a metadata filter, see
        :func:`to_filter`). Absent ids (or a collection not made yet) are
        not an error. Returns True."""
        filter = to_filter(kwargs.get("filter"))
        if ids is None and filter is None:
            raise ValueError("delete needs `ids` or `filter=`")
        try:
            self.client.delete(self.collection_name, ids=ids, filter=filter
                               if ids is None else None)
        except NotFoundError:
            pass
        return True

    async def adelete(self, ids: Optional[List[str]] = None, **kwargs: Any) -> Optional[bool]:
        """Async :meth:`delete`."""
        filter = to_filter(kwargs.get("filter"))
        if ids is None and filter is None:
            raise ValueError("delete needs `ids` or `filter=`")
        try:
            await self._async.get().delete(self.collection_name, ids=ids,
                                           filter=filter if ids is None else None)
        except NotFoundError:
            pass
        return True

    def delete_collection(self) -> None:
        """Deletes the whole collection (absent: nothing happens)."""
        try:
            self.client.delete_collection(self.collection_name)
        except NotFoundError:
            pass
        self._exists = False

    # -- reading ---------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> List[Document]:
        """The documents with these ids, in the order asked; absent ids
        are left out."""
        if not ids:
            return []
        try:
            return [_doc(p) for p in self.client.retrieve(self.collection_name, list(ids))]
        except NotFoundError:
            return []

    async def aget_by_ids(self, ids: Sequence[str], /) -> List[Document]:
        """Async :meth:`get_by_ids`."""
        if not ids:
            return []
        try:
            points = await self._async.get().retrieve(self.collection_name, list(ids))
        except NotFoundError:
            return []
        return [_doc(p) for p in points]

    def _search(self, query: Optional[str], vector: Optional[List[float]], k: int,
                filter: Optional[dict], with_vector: bool = False) -> List[ScoredPoint]:
        try:
            return self.client.search(self.collection_name, query=query, vector=vector,
                                      limit=k, filter=to_filter(filter),
                                      with_vector=with_vector)
        except NotFoundError:
            return []

    async def _asearch(self, query: Optional[str], vector: Optional[List[float]], k: int,
                       filter: Optional[dict], with_vector: bool = False) -> List[ScoredPoint]:
        try:
            return await self._async.get().search(
                self.collection_name, query=query, vector=vector, limit=k,
                filter=to_filter(filter), with_vector=with_vector)
        except NotFoundError:
            return []

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Tuple[Document, float]]:
        """The ``k`` documents closest to ``query`` (matching the metadata
        ``filter``), best first, with the service's score."""
        if self.embedding is not None:
            hits = self._search(None, self.embedding.embed_query(query), k, filter)
        else:
            hits = self._search(query, None, k, filter)
        return [(_doc(h), h.score) for h in hits]

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Tuple[Document, float]]:
        """Async :meth:`similarity_search_with_score`."""
        if self.embedding is not None:
            hits = await self._asearch(None, await self.embedding.aembed_query(query), k,
                                       filter)
        else:
            hits = await self._asearch(query, None, k, filter)
        return [(_doc(h), h.score) for h in hits]

    def similarity_search(
        self, query: str, k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Document]:
        """The ``k`` documents closest to ``query``, best first."""
        return [d for d, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Document]:
        """Async :meth:`similarity_search`."""
        return [d for d, _ in
                await self.asimilarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score_by_vector(
        self, embedding: List[float], k: int = 4, filter: Optional[dict] = None,
        **kwargs: Any,
    ) -> List[Tuple[Document, float]]:
        """The ``k`` documents closest to a vector, with scores."""
        return [(_doc(h), h.score) for h in self._search(None, embedding, k, filter)]

    def similarity_search_by_vector(
        self, embedding: List[float], k: int = 4, filter: Optional[dict] = None,
        **kwargs: Any,
    ) -> List[Document]:
        """The ``k`` documents closest to a vector, best first."""
        return [_doc(h) for h in self._search(None, embedding, k, filter)]

    async def asimilarity_search_by_vector(
        self, embedding: List[float], k: int = 4, filter: Optional[dict] = None,
        **kwargs: Any,
    ) -> List[Document]:
        """Async :meth:`similarity_search_by_vector`."""
        return [_doc(h) for h in await self._asearch(None, embedding, k, filter)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Scores mapped to [0, 1], 1 the closest: cosine and dot
        similarity as ``(1 + s) / 2`` (exact in [0, 1] for unit vectors),
        euclidean distance as LangChain's ``1 - d / sqrt(2)``."""
        if self.metric == "euclidean":
            return self._euclidean_relevance_score_fn
        return lambda s: (1.0 + s) / 2.0

    # -- maximal marginal relevance -------------------------------------

    def _mmr(self, query_vector: List[float], hits: List[ScoredPoint], k: int,
             lambda_mult: float) -> List[Document]:
        if not hits:
            return []
        picked = maximal_marginal_relevance(
            np.array(query_vector, dtype=np.float32),
            [h.vector or [] for h in hits], lambda_mult=lambda_mult, k=k)
        return [_doc(hits[i]) for i in picked]

    def max_marginal_relevance_search_by_vector(
        self, embedding: List[float], k: int = 4, fetch_k: int = 20,
        lambda_mult: float = 0.5, filter: Optional[dict] = None, **kwargs: Any,
    ) -> List[Document]:
        """``k`` documents picked from the ``fetch_k`` closest by maximal
        marginal relevance (``lambda_mult``: 1 = closeness only, 0 =
        diversity only)."""
        hits = self._search(None, embedding, fetch_k, filter, with_vector=True)
        return self._mmr(embedding, hits, k, lambda_mult)

    async def amax_marginal_relevance_search_by_vector(
        self, embedding: List[float], k: int = 4, fetch_k: int = 20,
        lambda_mult: float = 0.5, filter: Optional[dict] = None, **kwargs: Any,
    ) -> List[Document]:
        """Async :meth:`max_marginal_relevance_search_by_vector`."""
        hits = await self._asearch(None, embedding, fetch_k, filter, with_vector=True)
        return self._mmr(embedding, hits, k, lambda_mult)

    def _require_embedding(self) -> Embeddings:
        if self.embedding is None:
            raise ValueError(
                "maximal marginal relevance by text needs the store's `embedding` "
                "(use max_marginal_relevance_search_by_vector otherwise)")
        return self.embedding

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
        filter: Optional[dict] = None, **kwargs: Any,
    ) -> List[Document]:
        """MMR by a text query (needs the store's ``embedding``)."""
        vector = self._require_embedding().embed_query(query)
        return self.max_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, filter)

    async def amax_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
        filter: Optional[dict] = None, **kwargs: Any,
    ) -> List[Document]:
        """Async :meth:`max_marginal_relevance_search`."""
        vector = await self._require_embedding().aembed_query(query)
        return await self.amax_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, filter)

    # -- construction ----------------------------------------------------

    @classmethod
    def from_texts(
        cls: Type["VecdbVectorStore"],
        texts: List[str],
        embedding: Optional[Embeddings],
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[str]] = None,
        collection_name: str = "langchain",
        **kwargs: Any,
    ) -> "VecdbVectorStore":
        """A store on ``collection_name`` (other keyword arguments as for
        the constructor) with ``texts`` added."""
        store = cls(collection_name, embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    async def afrom_texts(
        cls: Type["VecdbVectorStore"],
        texts: List[str],
        embedding: Optional[Embeddings],
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[str]] = None,
        collection_name: str = "langchain",
        **kwargs: Any,
    ) -> "VecdbVectorStore":
        """Async :meth:`from_texts`."""
        store = cls(collection_name, embedding, **kwargs)
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store
