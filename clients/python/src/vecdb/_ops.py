"""The indexing service's operations as data: for each SDK method, the
request (method, path, JSON body, query) and how its answer is read.
The sync and async clients both send these, so the two never differ in
what they send or how they read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence
from urllib.parse import quote

import httpx

from .bulk import point_json
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
)


@dataclass
class Call:
    method: str
    path: str
    parse: Callable[[httpx.Response], Any]
    json_body: Any = None
    params: Optional[Dict[str, Any]] = None
    content: Optional[bytes] = None
    headers: Optional[Dict[str, str]] = None


def seg(s: str) -> str:
    """A URL path segment, percent-encoded."""
    return quote(str(s), safe="")


def _none(_: httpx.Response) -> None:
    return None


def _drop_none(d: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _consistency(after: Optional[int]) -> Optional[Dict[str, int]]:
    return None if after is None else {"after": after}


def health() -> Call:
    return Call("GET", "/health", lambda r: r.json())


def list_collections() -> Call:
    return Call("GET", "/collections", lambda r: [CollectionInfo.from_json(c) for c in r.json()])


def get_collection(name: str) -> Call:
    return Call("GET", f"/collections/{seg(name)}", lambda r: CollectionInfo.from_json(r.json()))


def create_collection(name: str, dimension: Optional[int], metric: Optional[str],
                      settings: Mapping[str, Any]) -> Call:
    body = _drop_none({"name": name, "dimension": dimension, "metric": metric, **settings})
    return Call("POST", "/collections", lambda r: CollectionInfo.from_json(r.json()), body)


def delete_collection(name: str) -> Call:
    return Call("DELETE", f"/collections/{seg(name)}", _none)


def _update(r: httpx.Response) -> UpdateResult:
    d = r.json()
    return UpdateResult(list(d["ids"]), int(d["operation"]))


def upsert(collection: str, points: Sequence[Any]) -> Call:
    body = {"points": [point_json(p) for p in points]}
    return Call("PUT", f"/collections/{seg(collection)}/points", _update, body)


def upsert_raw(collection: str, body: bytes) -> Call:
    return Call("PUT", f"/collections/{seg(collection)}/points", _update, content=body,
                headers={"content-type": "application/json"})


def retrieve(collection: str, ids: Sequence[PointId], with_vector: bool, with_payload: bool,
             consistency_after: Optional[int]) -> Call:
    body = _drop_none({"ids": list(ids), "with_vector": with_vector,
                       "with_payload": with_payload,
                       "consistency": _consistency(consistency_after)})
    return Call("POST", f"/collections/{seg(collection)}/points",
                lambda r: [Point.from_json(p) for p in r.json()["points"]], body)


def delete(collection: str, ids: Optional[Sequence[PointId]], filter: Optional[Filter]) -> Call:
    if (ids is None) == (filter is None):
        raise ValueError("delete takes exactly one of `ids` and `filter`")
    body = {"ids": list(ids)} if ids is not None else {"filter": filter}
    return Call("POST", f"/collections/{seg(collection)}/points/delete",
                lambda r: int(r.json()["deleted"]), body)


def set_metadata(collection: str, id: PointId, metadata: Mapping[str, Any], merge: bool) -> Call:
    id_type = "string" if isinstance(id, str) else "integer"
    return Call("PATCH", f"/collections/{seg(collection)}/points/{seg(id)}", _none,
                {"metadata": dict(metadata), "merge": merge}, params={"id_type": id_type})


def scroll(collection: str, filter: Optional[Filter], limit: int, cursor: Optional[PointId],
           with_vector: bool, with_payload: bool, consistency_after: Optional[int]) -> Call:
    body = _drop_none({"filter": filter, "limit": limit, "cursor": cursor,
                       "with_vector": with_vector, "with_payload": with_payload,
                       "consistency": _consistency(consistency_after)})

    def parse(r: httpx.Response) -> ScrollPage:
        d = r.json()
        return ScrollPage([Point.from_json(p) for p in d["points"]], d.get("next_cursor"))

    return Call("POST", f"/collections/{seg(collection)}/points/scroll", parse, body)


def count(collection: str, filter: Optional[Filter], consistency_after: Optional[int]) -> Call:
    body = _drop_none({"filter": filter, "consistency": _consistency(consistency_after)})
    return Call("POST", f"/collections/{seg(collection)}/points/count",
                lambda r: int(r.json()["count"]), body)


def search_body(query: Optional[str], vector: Optional[Sequence[float]], limit: int,
                filter: Optional[Filter], with_vector: bool, with_payload: bool,
                ef: Optional[int], nprobe: Optional[int], exact: Optional[bool],
                consistency_after: Optional[int]) -> Dict[str, Any]:
    if (query is None) == (vector is None):
        raise ValueError("search takes exactly one of `query` (text) and `vector`")
    return _drop_none({
        "query": query, "vector": list(vector) if vector is not None else None,
        "top_k": limit, "filter": filter, "with_vector": with_vector,
        "with_payload": with_payload, "ef": ef, "nprobe": nprobe, "exact": exact,
        "consistency": _consistency(consistency_after),
    })


def search_bodies(searches: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Bodies of a batch: each item holds ``search``'s keyword arguments."""
    defaults: Dict[str, Any] = {
        "query": None, "vector": None, "limit": 10, "filter": None, "with_vector": False,
        "with_payload": True, "ef": None, "nprobe": None, "exact": None,
        "consistency_after": None,
    }
    return [search_body(**{**defaults, **s}) for s in searches]


def search(collection: str, body: Dict[str, Any]) -> Call:
    return Call("POST", f"/collections/{seg(collection)}/search",
                lambda r: [ScoredPoint.from_json(h) for h in r.json()["results"]], body)


def search_batch(collection: str, bodies: List[Dict[str, Any]]) -> Call:
    return Call("POST", f"/collections/{seg(collection)}/search/batch",
                lambda r: [[ScoredPoint.from_json(h) for h in res["results"]]
                           for res in r.json()["results"]], {"searches": bodies})


def query(collection: str, body: Mapping[str, Any]) -> Call:
    return Call("POST", f"/collections/{seg(collection)}/query",
                lambda r: QueryResponse.from_json(r.json()), dict(body))


def _snapshots_root(collection: Optional[str]) -> str:
    """``/collections/{name}/snapshots``, or ``/snapshots`` (the whole
    storage) when ``collection`` is None."""
    return "/snapshots" if collection is None else f"/collections/{seg(collection)}/snapshots"


def create_snapshot(collection: Optional[str]) -> Call:
    return Call("POST", _snapshots_root(collection),
                lambda r: SnapshotDescription.from_json(r.json()))


def list_snapshots(collection: Optional[str]) -> Call:
    def parse(r: httpx.Response) -> List[SnapshotDescription]:
        d = r.json()
        items = d["snapshots"] if isinstance(d, dict) else d
        return [SnapshotDescription.from_json(s) for s in items]

    return Call("GET", _snapshots_root(collection), parse)


def snapshot_path(collection: Optional[str], snapshot: str) -> str:
    return f"{_snapshots_root(collection)}/{seg(snapshot)}"


def delete_snapshot(collection: Optional[str], snapshot: str) -> Call:
    return Call("DELETE", snapshot_path(collection, snapshot), _none)


def recover_snapshot(collection: str, location: str, checksum: Optional[str]) -> Call:
    return Call("POST", f"/collections/{seg(collection)}/snapshots/recover",
                lambda r: RecoverResult.from_json(r.json()),
                _drop_none({"location": location, "checksum": checksum}))


def upload_snapshot_path(collection: str) -> str:
    return f"/collections/{seg(collection)}/snapshots/upload"
