"""Python SDK of the vector database.

- :class:`Client` / :class:`AsyncClient`: the indexing service (collections,
  points, search, the Query API, snapshots, bulk upload with a progress bar).
- :class:`EmbeddingClient` / :class:`AsyncEmbeddingClient`: the embedding
  service (texts to vectors).
- :mod:`vecdb.langchain` (extra ``[langchain]``): ``VecdbVectorStore`` and
  ``VecdbEmbeddings`` for LangChain.

Errors are :class:`ApiError` subclasses with the server's ``code`` and
``message``; see :mod:`vecdb.errors`.
"""

from ._transport import RetryPolicy
from .async_client import AsyncClient
from .bulk import split_batches
from .client import Client
from .embedding import AsyncEmbeddingClient, EmbeddingClient
from .errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ChecksumMismatchError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    TransportError,
    VecdbError,
)
from .models import (
    CollectionInfo,
    Point,
    PointInput,
    QueryResponse,
    RecoverResult,
    ScoredPoint,
    ScrollPage,
    SnapshotDescription,
    UpdateResult,
    UploadSummary,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "AsyncClient",
    "EmbeddingClient",
    "AsyncEmbeddingClient",
    "RetryPolicy",
    "split_batches",
    "PointInput",
    "Point",
    "ScoredPoint",
    "ScrollPage",
    "UpdateResult",
    "CollectionInfo",
    "SnapshotDescription",
    "QueryResponse",
    "RecoverResult",
    "UploadSummary",
    "VecdbError",
    "TransportError",
    "ApiError",
    "BadRequestError",
    "AuthenticationError",
    "NotFoundError",
    "ConflictError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ServiceUnavailableError",
    "ServerError",
    "ChecksumMismatchError",
]
