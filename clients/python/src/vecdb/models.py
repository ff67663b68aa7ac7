"""Typed request and response shapes of the indexing service (dataclasses).

Field names are the service's wire names (Qdrant's where it has them:
``payload``-style metadata, ``limit``, ``with_vector``, ``with_payload``).
Filters are plain dicts in the service's filter language, e.g.
``{"must": [{"key": "pos", "match": "n"}, {"key": "year", "range": {"gte": 2000}}]}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

__all__ = [
    "PointId",
    "Filter",
    "PointInput",
    "Point",
    "ScoredPoint",
    "ScrollPage",
    "UpdateResult",
    "CollectionInfo",
    "SnapshotDescription",
    "QueryResponse",
    "UploadSummary",
    "RecoverResult",
]

#: A point id: an unsigned 64-bit integer or a string of 1 to 256 bytes.
PointId = Union[int, str]
#: A filter object (``must`` / ``should`` / ``must_not`` lists of conditions).
Filter = Dict[str, Any]


@dataclass
class PointInput:
    """A point to upsert: a ``vector``, or ``content`` for the service to
    embed (or both: the vector is stored and the content kept as text).

    ``metadata`` is the point's payload (a JSON object, filterable). A point
    without ``id`` gets a UUID4 string from the SDK before it is sent.
    """

    id: Optional[PointId] = None
    vector: Optional[List[float]] = None
    content: Optional[str] = None
    metadata: Optional[Dict[str, Any]] = None

    def to_json(self) -> Dict[str, Any]:
        """The wire object, leaving out absent fields."""
        out: Dict[str, Any] = {}
        for k in ("id", "vector", "content", "metadata"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        return out


@dataclass
class Point:
    """A stored point as read back (``retrieve``, ``scroll``).

    ``content`` and ``metadata`` are None when the point has none or
    ``with_payload`` was false; ``vector`` is None unless ``with_vector``.
    """

    id: PointId
    content: Optional[str] = None
    metadata: Optional[Dict[str, Any]] = None
    vector: Optional[List[float]] = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Point":
        return cls(d["id"], d.get("content"), d.get("metadata"), d.get("vector"))


@dataclass
class ScoredPoint(Point):
    """A search hit: a point with its ``score`` (cosine and dot: similarity,
    higher is closer; euclidean: distance, lower is closer)."""

    score: float = 0.0

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ScoredPoint":
        return cls(
            d["id"], d.get("content"), d.get("metadata"), d.get("vector"), float(d["score"])
        )


@dataclass
class ScrollPage:
    """One page of ``scroll``: the points in id order and the cursor of the
    next page (None after the last)."""

    points: List[Point]
    next_cursor: Optional[PointId]


@dataclass
class UpdateResult:
    """Answer of an upsert: the ids in input order and the collection's WAL
    operation number (usable as ``consistency_after`` on reads)."""

    ids: List[PointId]
    operation: int


@dataclass
class CollectionInfo:
    """``GET /collections/{name}``: settings and state of a collection.

    ``index`` is the service's index description (``kind``: ``hnsw``,
    ``ivf_pq`` or ``flat``, with the settings of that kind); ``raw`` keeps
    the whole answer, including fields newer than this SDK.
    """

    name: str
    dimension: int
    metric: str
    points: int
    index: Dict[str, Any] = field(default_factory=dict)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "CollectionInfo":
        return cls(
            d["name"], int(d["dimension"]), d["metric"], int(d["points"]),
            dict(d.get("index") or {}), dict(d),
        )


@dataclass
class SnapshotDescription:
    """A snapshot file (a tar archive on the server): ``name``,
    ``creation_time`` (RFC 3339, UTC), ``size`` in bytes and ``checksum``
    (SHA-256 of the whole file, 64 lowercase hex digits)."""

    name: str
    creation_time: Optional[str] = None
    size: Optional[int] = None
    checksum: Optional[str] = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "SnapshotDescription":
        return cls(d["name"], d.get("creation_time"), d.get("size"), d.get("checksum"))


@dataclass
class RecoverResult:
    """Answer of a restore: the ``collection`` restored, the
    ``source_collection`` the snapshot was made of, the last ``operation``
    number it holds and the live ``points`` now in the collection."""

    collection: str
    source_collection: str
    operation: int
    points: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "RecoverResult":
        return cls(d["collection"], d["source_collection"], int(d["operation"]),
                   int(d["points"]))


@dataclass
class QueryResponse:
    """Answer of the Query API (``POST /collections/{name}/query``): the hits
    (``points``) and the answer as sent (``raw``)."""

    points: List[ScoredPoint]
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "QueryResponse":
        hits = d.get("points")
        if hits is None:
            hits = d.get("results") or []
        if isinstance(hits, dict):  # {"points": {"points": [...]}} style nesting
            hits = hits.get("points") or []
        return cls([ScoredPoint.from_json(h) for h in hits], dict(d))


@dataclass
class UploadSummary:
    """What a bulk upload did: ``points`` written, in ``batches`` requests,
    over ``seconds`` of wall time; ``ids`` in input order; ``last_operation``
    is the highest WAL operation number acknowledged."""

    points: int
    batches: int
    seconds: float
    ids: List[PointId] = field(default_factory=list, repr=False)
    last_operation: int = 0

    @property
    def points_per_second(self) -> float:
        return self.points / self.seconds if self.seconds > 0 else float("inf")
