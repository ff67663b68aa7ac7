"""Bulk upload: splitting points into requests by count and by bytes.

A point is encoded to JSON once; a batch closes when adding the next point
would pass ``max_points`` points or ``max_bytes`` bytes of request body
(the indexing service accepts at most 10,000 points and, by default,
32 MiB per request). A single point larger than ``max_bytes`` goes alone
(the service then answers 413 ``payload_too_large`` if it is over its
limit). Points without an id get a UUID4 string here, so a retried batch
replaces what a lost answer may have written instead of duplicating it.

The upload loops themselves (threads for the sync client, tasks for the
async one, both with a ``tqdm`` progress bar) live in the clients'
``upload_points``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, List, Mapping, Union

from .models import PointId, PointInput

__all__ = ["Batch", "split_batches", "MAX_POINTS_PER_REQUEST", "DEFAULT_MAX_BYTES"]

#: The indexing service's bound on points in one upsert.
MAX_POINTS_PER_REQUEST = 10_000
#: Default body size per request: well under the service's 32 MiB limit.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024

PointLike = Union[PointInput, Mapping[str, Any]]
_HEAD = b'{"points":['
_TAIL = b"]}"


@dataclass
class Batch:
    """One upsert request: the points' ``ids`` (in order) and the JSON
    ``body`` (``{"points": [...]}``, UTF-8)."""

    ids: List[PointId]
    body: bytes

    def __len__(self) -> int:
        return len(self.ids)


def point_json(p: PointLike) -> dict:
    """The wire object of a point, with a UUID4 id when it has none."""
    d = p.to_json() if isinstance(p, PointInput) else dict(p)
    if d.get("id") is None:
        d["id"] = str(uuid.uuid4())
    return d


def split_batches(
    points: Iterable[PointLike],
    max_points: int = 1000,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[Batch]:
    """Yields the points in order as batches of at most ``max_points``
    points (1 to 10,000) and ``max_bytes`` bytes of body (a larger single
    point alone). Lazy: reads ``points`` as it goes.

    Raises ValueError for bounds out of range.
    """
    if not 1 <= max_points <= MAX_POINTS_PER_REQUEST:
        raise ValueError(f"max_points must be 1 to {MAX_POINTS_PER_REQUEST}, got {max_points}")
    if max_bytes < 1024:
        raise ValueError(f"max_bytes must be at least 1024, got {max_bytes}")
    ids: List[PointId] = []
    parts: List[bytes] = []
    size = len(_HEAD) + len(_TAIL)
    for p in points:
        d = point_json(p)
        enc = json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode()
        extra = len(enc) + (1 if parts else 0)
        if parts and (len(parts) >= max_points or size + extra > max_bytes):
            yield Batch(ids, _HEAD + b",".join(parts) + _TAIL)
            ids, parts, size = [], [], len(_HEAD) + len(_TAIL)
            extra = len(enc)
        ids.append(d["id"])
        parts.append(enc)
        size += extra
    if parts:
        yield Batch(ids, _HEAD + b",".join(parts) + _TAIL)
