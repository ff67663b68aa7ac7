"""The Python SDK (`clients/python`, package `vecdb`) against the real
services: collections, points, search (checked against an exact numpy
reference), errors carrying the server's code and message, the API key,
retries (against a local HTTP server that answers 503/429 on purpose), the
bulk uploader (split by count and by bytes, progress bar), the async client,
the embedding client, and the LangChain store with the service's model.
"""
import asyncio
import hashlib
import json
import os
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

import vecdb
from vecdb import (
    ApiError,
    AsyncClient,
    AsyncEmbeddingClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ConflictError,
    EmbeddingClient,
    NotFoundError,
    PointInput,
    RateLimitError,
    RetryPolicy,
    ServiceUnavailableError,
    TransportError,
    split_batches,
)
from vecdb.langchain import VecdbEmbeddings, VecdbVectorStore

ROOT = Path(__file__).resolve().parents[2]
FAST_RETRY = RetryPolicy(max_retries=3, initial_delay=0.01, max_delay=0.05)


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def glosses(n: int, step: int = 1):
    """The first `n` of every `step`-th WordNet gloss of the fixture (the
    file is sorted by part of speech: a step mixes them)."""
    out = []
    with open(ROOT / "tests/fixtures/wordnet-3000.tsv", encoding="utf-8") as f:
        for k, line in enumerate(f):
            if k % step:
                continue
            synset, lemmas, gloss = line.rstrip("\n").split("\t")
            out.append({"synset": synset, "lemma": lemmas.split(",")[0].replace("_", " "),
                        "pos": synset.rsplit("-", 1)[1], "gloss": gloss})
            if len(out) == n:
                break
    return out


@pytest.fixture()
def client(indexing_url):
    with Client(indexing_url) as c:
        yield c


@pytest.fixture()
def collection(client):
    """A fresh 16-dimensional cosine collection, deleted afterwards."""
    n = name("sdk")
    client.create_collection(n, dimension=16, metric="cosine")
    yield n
    try:
        client.delete_collection(n)
    except NotFoundError:
        pass


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def exact_top(vectors, ids, query, k, mask=None):
    """The exact cosine top-k ids (numpy, float64), best first."""
    s = unit(vectors) @ unit(query)
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    order = np.argsort(-s, kind="stable")[:k]
    return [ids[i] for i in order if np.isfinite(s[i])]


# -- collections ------------------------------------------------------------


def test_collections_create_get_list_delete(client):
    n = name("coll")
    info = client.create_collection(n, dimension=8, metric="dot", index="flat")
    assert (info.name, info.dimension, info.metric, info.points) == (n, 8, "dot", 0)
    assert info.index["kind"] == "flat"
    assert client.get_collection(n).dimension == 8
    assert n in [c.name for c in client.list_collections()]
    assert client.collection_exists(n)
    with pytest.raises(ConflictError) as e:
        client.create_collection(n, dimension=8)
    assert e.value.status == 409 and e.value.code == "already_exists"
    assert n in e.value.message
    client.delete_collection(n)
    assert not client.collection_exists(n)
    with pytest.raises(NotFoundError) as e:
        client.get_collection(n)
    assert e.value.code == "not_found"


# -- points and search, against an exact reference -----------------------------


def test_points_and_search_match_an_exact_reference(client, collection):
    rng = np.random.default_rng(7)
    vecs = rng.normal(size=(600, 16)).astype(np.float32)
    ids = list(range(1, 601))
    points = [PointInput(id=i, vector=v.tolist(), content=f"doc {i}",
                         metadata={"group": i % 5, "tag": "even" if i % 2 == 0 else "odd"})
              for i, v in zip(ids, vecs)]
    res = client.upsert(collection, points)
    assert res.ids == ids and res.operation >= 1
    assert client.count(collection) == 600
    assert client.count(collection, {"must": [{"key": "group", "match": 3}]}) == 120

    got = client.retrieve(collection, [5, 999999, 2], with_vector=True)
    assert [p.id for p in got] == [5, 2]
    assert got[0].content == "doc 5" and got[0].metadata == {"group": 0, "tag": "odd"}
    np.testing.assert_allclose(unit(got[0].vector), unit(vecs[4]), atol=1e-5)

    client.set_metadata(collection, 5, {"reviewed": True})
    assert client.retrieve(collection, [5])[0].metadata == {
        "group": 0, "tag": "odd", "reviewed": True}
    client.set_metadata(collection, 5, {"group": 0, "tag": "odd"}, merge=False)

    page = client.scroll(collection, limit=250)
    assert [p.id for p in page.points] == ids[:250] and page.next_cursor is not None
    page2 = client.scroll(collection, limit=250, cursor=page.next_cursor)
    assert [p.id for p in page2.points] == ids[250:500]
    assert [p.id for p in client.scroll_all(collection, page_size=77)] == ids

    for qi in range(5):
        q = rng.normal(size=16)
        hits = client.search(collection, vector=q.tolist(), limit=10, exact=True)
        assert [h.id for h in hits] == exact_top(vecs, ids, q, 10)
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
        np.testing.assert_allclose(
            [h.score for h in hits],
            [float(unit(vecs[h.id - 1]) @ unit(q)) for h in hits], atol=1e-4)
        flt = {"must": [{"key": "group", "match": {"any": [1, 2]}}],
               "must_not": [{"key": "tag", "match": "even"}]}
        mask = np.array([(i % 5 in (1, 2)) and i % 2 == 1 for i in ids])
        hits = client.search(collection, vector=q.tolist(), limit=10, filter=flt, exact=True)
        assert [h.id for h in hits] == exact_top(vecs, ids, q, 10, mask)

    batch = client.search_batch(collection, [{"vector": vecs[0].tolist(), "limit": 1},
                                             {"vector": vecs[9].tolist(), "limit": 2}])
    assert [h.id for h in batch[0]] == [1] and batch[1][0].id == 10

    assert client.delete(collection, ids=[1, 2, 3, 123456]) == 3
    assert client.delete(collection, filter={"must": [{"key": "group", "match": 4}]}) == 120
    assert client.count(collection) == 600 - 3 - 120
    assert client.retrieve(collection, [1, 2, 3]) == []


def test_string_ids_and_uuid_assignment(client, collection):
    v = [1.0] + [0.0] * 15
    res = client.upsert(collection, [{"id": "424242", "vector": v}, {"vector": v},
                                     PointInput(vector=v, metadata={"a": 1})])
    assert res.ids[0] == "424242"
    for i in res.ids[1:]:
        assert isinstance(i, str) and uuid.UUID(i).version == 4
    # An all-digit string id stays a string id, also in a path route.
    client.set_metadata(collection, "424242", {"k": "v"})
    assert client.retrieve(collection, ["424242"])[0].metadata == {"k": "v"}
    assert client.retrieve(collection, [424242]) == []


# -- errors -------------------------------------------------------------------


def test_errors_carry_the_servers_code_and_message(client, collection, indexing_url,
                                                   api_key):
    with pytest.raises(BadRequestError) as e:
        client.upsert(collection, [{"id": 1, "vector": [0.5] * 3}])
    err = e.value
    assert err.status == 422 and err.code == "dimension_mismatch"
    # The same request by hand: the exception holds exactly what the server said.
    raw = httpx.put(f"{indexing_url}/collections/{collection}/points",
                    json={"points": [{"id": 1, "vector": [0.5] * 3}]},
                    headers={"authorization": f"Bearer {api_key}"}).json()["error"]
    assert (err.code, err.message) == (raw["code"], raw["message"])
    assert err.request_id

    with pytest.raises(BadRequestError) as e:
        client.search(collection, vector=[0.0] * 16, filter={"must": [{"key": "a"}]})
    assert e.value.code == "invalid_filter" and "`a`" in e.value.message

    with pytest.raises(NotFoundError) as e:
        client.search("no-such-collection", vector=[0.0] * 16)
    assert e.value.code == "not_found" and "no-such-collection" in e.value.message
    assert isinstance(e.value, ApiError) and isinstance(e.value, vecdb.VecdbError)

    with pytest.raises(ValueError):
        client.search(collection)  # neither query nor vector: refused before sending


def test_api_key(indexing_url, api_key):
    with Client(indexing_url, api_key="wrong-key") as c:
        with pytest.raises(AuthenticationError) as e:
            c.list_collections()
        assert e.value.status == 401 and e.value.code == "unauthorized"
    with Client(indexing_url, api_key="") as c:  # no key at all
        with pytest.raises(AuthenticationError):
            c.list_collections()
    with Client(indexing_url, api_key=api_key) as c:
        assert isinstance(c.list_collections(), list)
    assert os.environ["VECDB_API_KEY"] == api_key
    with Client(indexing_url) as c:  # taken from VECDB_API_KEY
        assert c.health()["status"] == "ok"


# -- retries, against a local server that fails on purpose -------------------


class Script:
    """A local HTTP server answering from a list of (status, headers, body);
    it records each request's method, path, headers and body."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.seen = []
        script = self

        class H(BaseHTTPRequestHandler):
            def _any(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                script.seen.append((self.command, self.path, dict(self.headers), body))
                status, headers, out = (script.answers.pop(0) if len(script.answers) > 1
                                        else script.answers[0])
                data = json.dumps(out).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def busy(code="overloaded", status=429, headers=None):
    return (status, headers or {}, {"error": {"code": code, "message": f"{code}, try later"}})


def test_retries_429_and_503_then_succeeds():
    s = Script([busy("embedding_unavailable", 503), busy(headers={"retry-after": "0"}),
                (200, {}, {"status": "ok"})])
    try:
        with Client(s.url, api_key="k1", retry=FAST_RETRY) as c:
            assert c.health() == {"status": "ok"}
        assert len(s.seen) == 3
        assert all(h.get("authorization") == "Bearer k1" for _, _, h, _ in s.seen)
    finally:
        s.close()


def test_retries_give_up_with_the_servers_error():
    s = Script([busy("storage_unavailable", 503)])
    try:
        with Client(s.url, retry=FAST_RETRY) as c:
            with pytest.raises(ServiceUnavailableError) as e:
                c.count("x")
        assert e.value.code == "storage_unavailable"
        assert e.value.message == "storage_unavailable, try later"
        assert len(s.seen) == FAST_RETRY.max_retries + 1
    finally:
        s.close()
    s = Script([busy()])
    try:
        with Client(s.url, retry=RetryPolicy(max_retries=0)) as c:
            with pytest.raises(RateLimitError):
                c.count("x")
        assert len(s.seen) == 1
    finally:
        s.close()


def test_client_errors_are_not_retried_and_query_passes_the_body_through():
    s = Script([(422, {}, {"error": {"code": "invalid_request", "message": "nope"}})])
    try:
        with Client(s.url, retry=FAST_RETRY) as c:
            body = {"prefetch": [{"query": "hot dog", "limit": 20},
                                 {"query": [0.1, 0.2], "limit": 20}],
                    "query": {"fusion": "rrf"}, "limit": 5}
            with pytest.raises(BadRequestError):
                c.query("docs", body, with_payload=True)
        assert len(s.seen) == 1
        method, path, _, sent = s.seen[0]
        assert (method, path) == ("POST", "/collections/docs/query")
        assert json.loads(sent) == {**body, "with_payload": True}
    finally:
        s.close()


def test_connection_errors_are_retried_then_raised():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}", retry=FAST_RETRY) as c:
        with pytest.raises(TransportError):
            c.health()


def test_async_retries():
    s = Script([busy("overloaded", 429), (200, {}, {"status": "ok"})])

    async def go():
        async with AsyncClient(s.url, retry=FAST_RETRY) as c:
            return await c.health()

    try:
        assert asyncio.run(go()) == {"status": "ok"}
        assert len(s.seen) == 2
    finally:
        s.close()


# -- bulk upload ---------------------------------------------------------------


def test_split_batches_bounds():
    pts = [{"id": i, "vector": [0.25] * 64, "metadata": {"t": "x" * (i % 50)}}
           for i in range(5000)]
    by_count = list(split_batches(pts, max_points=700, max_bytes=1 << 30))
    assert [len(b) for b in by_count] == [700] * 7 + [100]
    by_bytes = list(split_batches(pts, max_points=10000, max_bytes=64 * 1024))
    assert len(by_bytes) > 5 and all(len(b.body) <= 64 * 1024 for b in by_bytes)
    assert [i for b in by_bytes for i in b.ids] == list(range(5000))
    assert json.loads(by_bytes[0].body)["points"][0] == pts[0]
    # A point over the byte bound goes alone.
    big = [{"id": 1, "vector": [0.5] * 4000}, {"id": 2, "vector": [0.5]}]
    assert [len(b) for b in split_batches(big, 10, 2048)] == [1, 1]
    with pytest.raises(ValueError):
        list(split_batches(pts, max_points=10001))


def test_bulk_upload_by_count_and_bytes_with_a_progress_bar(client, capsys):
    n = name("bulk")
    client.create_collection(n, dimension=64)
    try:
        rng = np.random.default_rng(1)
        vecs = rng.normal(size=(20000, 64)).astype(np.float32)
        points = ({"id": i, "vector": vecs[i].tolist(), "metadata": {"i": i}}
                  for i in range(20000))
        summary = client.upload_points(n, points, batch_size=3000, max_batch_bytes=1 << 20,
                                       parallel=3, total=20000)
        err = capsys.readouterr().err
        assert "20000/20000" in err and f"upload {n}" in err
        expected = list(split_batches(
            ({"id": i, "vector": vecs[i].tolist(), "metadata": {"i": i}}
             for i in range(20000)), 3000, 1 << 20))
        assert summary.batches == len(expected) > 20000 // 3000 + 1  # bytes bound bites
        assert summary.points == 20000 and summary.ids == list(range(20000))
        assert client.count(n, consistency_after=summary.last_operation) == 20000
        assert [p.id for p in client.scroll_all(n, page_size=5000, with_payload=False)] == \
            list(range(20000))
        q = rng.normal(size=64)
        hits = client.search(n, vector=q.tolist(), limit=5, exact=True)
        assert [h.id for h in hits] == exact_top(vecs, list(range(20000)), q, 5)
    finally:
        client.delete_collection(n)


def test_async_client_bulk_upload_and_reads(indexing_url):
    n = name("async")
    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(3000, 16)).astype(np.float32)

    async def go():
        async with AsyncClient(indexing_url) as c:
            await c.create_collection(n, dimension=16)
            try:
                s = await c.upload_points(
                    n, [PointInput(id=f"p{i:05d}", vector=vecs[i].tolist(),
                                   metadata={"odd": i % 2 == 1}) for i in range(3000)],
                    batch_size=400, parallel=4, progress=False)
                assert (s.points, s.batches) == (3000, 8)
                assert await c.count(n) == 3000
                assert await c.count(n, {"must": [{"key": "odd", "match": True}]}) == 1500
                ids = [p.id async for p in c.scroll_all(n, page_size=700)]
                assert ids == [f"p{i:05d}" for i in range(3000)]
                q = rng.normal(size=16)
                hits = await c.search(n, vector=q.tolist(), limit=7, exact=True)
                assert [h.id for h in hits] == exact_top(
                    vecs, [f"p{i:05d}" for i in range(3000)], q, 7)
                got = await c.retrieve(n, ["p00007", "nope"], with_vector=True)
                assert [p.id for p in got] == ["p00007"] and len(got[0].vector) == 16
                b = await c.search_batch(n, [{"vector": vecs[3].tolist(), "limit": 1}])
                assert b[0][0].id == "p00003"
                assert await c.delete(n, ids=["p00000", "p00001"]) == 2
                with pytest.raises(BadRequestError) as e:
                    await c.upsert(n, [{"id": 1, "vector": [1.0]}])
                assert e.value.code == "dimension_mismatch"
                return [c.name for c in await c.list_collections()]
            finally:
                await c.delete_collection(n)

    assert n in asyncio.run(go())


# -- text, the embedding client and the service's model ------------------------


def test_text_upload_search_equals_search_by_the_embedding_services_vector(
        client, embedding_url):
    n = name("text")
    client.create_collection(n)  # the model's dimension
    try:
        docs = glosses(400)
        s = client.upload_points(
            n, [{"id": d["synset"], "content": d["gloss"], "metadata": {"pos": d["pos"]}}
                for d in docs], batch_size=100, progress=False)
        assert s.points == 400
        emb = EmbeddingClient(embedding_url)
        dim = emb.info()["dimension"]
        assert client.get_collection(n).dimension == dim
        for d in docs[:: 80]:
            by_text = client.search(n, query=d["gloss"], limit=5, exact=True)
            assert by_text[0].id == d["synset"] and by_text[0].score > 0.99
            qv = emb.embed([d["gloss"]])[0]
            by_vec = client.search(n, vector=qv, limit=5, exact=True)
            assert [h.id for h in by_vec] == [h.id for h in by_text]
        # The embedding client splits long lists within /info's limits, in order.
        texts = [d["gloss"] for d in docs]
        many = emb.embed(texts)
        assert len(many) == 400 and all(len(v) == dim for v in many)
        stored = client.retrieve(n, [docs[123]["synset"]], with_vector=True)[0].vector
        np.testing.assert_allclose(unit(many[123]), unit(stored), atol=1e-4)

        async def aembed():
            async with AsyncEmbeddingClient(embedding_url) as a:
                return await a.embed(texts[:70])

        np.testing.assert_allclose(np.array(asyncio.run(aembed())), np.array(many[:70]),
                                   atol=1e-5)
    finally:
        client.delete_collection(n)


# -- LangChain beyond the standard suites ----------------------------------------


def test_langchain_store_with_the_services_model(embedding_url):
    docs = glosses(300, step=10)
    assert {d["pos"] for d in docs} >= {"n", "v", "a"}
    emb = VecdbEmbeddings(embedding_url)
    store = VecdbVectorStore.from_texts(
        [d["gloss"] for d in docs], emb,
        metadatas=[{"pos": d["pos"], "lemma": d["lemma"]} for d in docs],
        ids=[d["synset"] for d in docs], collection_name=name("lc"), batch_size=128)
    try:
        target = docs[42]
        hits = store.similarity_search_with_score(target["gloss"], k=3)
        assert hits[0][0].id == target["synset"] and hits[0][1] > 0.99
        assert hits[0][0].metadata == {"pos": target["pos"], "lemma": target["lemma"]}
        rel = store.similarity_search_with_relevance_scores(target["gloss"], k=3)
        assert all(0.0 <= r <= 1.0 for _, r in rel) and rel[0][1] > 0.99

        pos = "v" if target["pos"] != "v" else "n"
        only = store.similarity_search(target["gloss"], k=10, filter={"pos": pos})
        assert only and all(d.metadata["pos"] == pos for d in only)
        expected = sum(d["pos"] == pos for d in docs)
        assert len(store.similarity_search("x", k=300, filter={"pos": pos})) == expected
        both = store.similarity_search(
            "x", k=300, filter={"must": [{"key": "pos", "match": {"any": ["n", "v"]}}]})
        assert len(both) == sum(d["pos"] in ("n", "v") for d in docs)

        mmr = store.max_marginal_relevance_search(target["gloss"], k=5, fetch_k=30)
        assert len({d.id for d in mmr}) == 5 and mmr[0].id == target["synset"]

        async def go():
            a = await store.asimilarity_search(target["gloss"], k=1)
            m = await store.amax_marginal_relevance_search(target["gloss"], k=4, fetch_k=20)
            g = await store.aget_by_ids([docs[0]["synset"], "absent"])
            await store.adelete(filter={"pos": pos})
            return a, m, g

        a, m, g = asyncio.run(go())
        assert a[0].id == target["synset"] and len(m) == 4
        assert [d.id for d in g] == [docs[0]["synset"]]
        assert store.similarity_search("x", k=300, filter={"pos": pos}) == []
        retriever = store.as_retriever(search_kwargs={"k": 2})
        assert retriever.invoke(target["gloss"])[0].id == target["synset"]
    finally:
        store.delete_collection()


# -- snapshots -------------------------------------------------------------------


@pytest.fixture()
def snapshot_routes(indexing_url, api_key):
    """Skips when the service's spec has no snapshot routes."""
    spec = httpx.get(f"{indexing_url}/openapi.json",
                     headers={"authorization": f"Bearer {api_key}"}).json()
    if "/collections/{name}/snapshots" not in spec["paths"]:
        pytest.skip("this indexing service has no snapshot routes")


def snapshot_state(client, n):
    """Every point of a collection with vector and payload, in id order."""
    return [(p.id, p.content, p.metadata, p.vector)
            for p in client.scroll_all(n, page_size=1000, with_vector=True)]


def test_snapshots_create_list_download_restore_delete(client, tmp_path, snapshot_routes):
    n, restored = name("snap"), name("restored")
    client.create_collection(n, dimension=16)
    try:
        rng = np.random.default_rng(5)
        client.upload_points(n, [{"id": i, "vector": rng.normal(size=16).tolist(),
                                  "content": f"text {i}", "metadata": {"i": i, "odd": i % 2}}
                                 for i in range(2000)], progress=False)
        before = snapshot_state(client, n)
        desc = client.create_snapshot(n)
        assert desc.name.endswith(".snapshot") and desc.size > 0
        assert desc.name in [s.name for s in client.list_snapshots(n)]
        f = client.download_snapshot(n, desc.name, tmp_path)
        assert f == tmp_path / desc.name and f.stat().st_size == desc.size
        assert hashlib.sha256(f.read_bytes()).hexdigest() == desc.checksum

        # Writes after the snapshot are not in it.
        client.delete(n, ids=list(range(0, 2000, 3)))
        client.upsert(n, [{"id": 5000, "vector": [1.0] * 16}])
        assert snapshot_state(client, n) != before

        r = client.upload_snapshot(restored, f)
        assert (r.collection, r.source_collection, r.points) == (restored, n, 2000)
        assert snapshot_state(client, restored) == before
        r = client.recover_snapshot(n, desc.name)
        assert r.points == 2000 and snapshot_state(client, n) == before

        # A damaged file is refused with the server's words; nothing changes.
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        bad = tmp_path / "damaged.snapshot"
        bad.write_bytes(bytes(data))
        client.delete(restored, ids=[1])
        for args in [(bad,), (f, "0" * 64)]:
            with pytest.raises(BadRequestError) as e:
                client.upload_snapshot(restored, *args)
            assert e.value.status == 422 and e.value.code == "snapshot_invalid"
            assert e.value.message
            assert client.count(restored) == 1999

        client.delete_snapshot(n, desc.name)
        assert desc.name not in [s.name for s in client.list_snapshots(n)]
        with pytest.raises(NotFoundError):
            client.download_snapshot(n, desc.name, tmp_path / "gone")
        assert not (tmp_path / "gone").exists()
    finally:
        for c in (n, restored):
            try:
                client.delete_collection(c)
            except NotFoundError:
                pass


def test_async_snapshots_and_the_whole_storage(indexing_url, client, tmp_path,
                                                snapshot_routes):
    n = name("asnap")
    client.create_collection(n, dimension=4)
    client.upsert(n, [{"id": i, "vector": [float(i), 1.0, 0.0, 0.5]} for i in range(1, 50)])
    before = snapshot_state(client, n)

    async def go():
        async with AsyncClient(indexing_url) as c:
            desc = await c.create_snapshot(n)
            assert desc.name in [s.name for s in await c.list_snapshots(n)]
            f = await c.download_snapshot(n, desc.name, tmp_path / "a.snapshot")
            assert hashlib.sha256(f.read_bytes()).hexdigest() == desc.checksum
            await c.delete(n, ids=[1, 2, 3])
            r = await c.upload_snapshot(n, f)
            assert r.points == 49
            await c.delete_snapshot(n, desc.name)
            full = await c.create_snapshot(None)
            assert full.name in [s.name for s in await c.list_snapshots(None)]
            g = await c.download_snapshot(None, full.name, tmp_path)
            assert hashlib.sha256(g.read_bytes()).hexdigest() == full.checksum
            await c.delete_snapshot(None, full.name)

    try:
        asyncio.run(go())
        assert snapshot_state(client, n) == before
    finally:
        client.delete_collection(n)


def test_download_checks_the_servers_checksum(tmp_path):
    s = Script([(200, {"x-checksum-sha256": "0" * 64}, {"not": "what the header says"})])
    try:
        with Client(s.url) as c:
            with pytest.raises(vecdb.ChecksumMismatchError):
                c.download_snapshot("docs", "x.snapshot", tmp_path)
        assert list(tmp_path.iterdir()) == []
    finally:
        s.close()
