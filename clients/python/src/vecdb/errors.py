"""Exceptions raised by the SDK.

Every answer of the services outside 2xx carries the JSON body
``{"error": {"code": "...", "message": "..."}}``; it becomes an
:class:`ApiError` (or the subclass for its HTTP status) holding the
server's ``code`` and ``message`` as they were sent. Failures before any
answer (connection refused, timeouts) are :class:`TransportError`.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
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
    "error_for_status",
]


class VecdbError(Exception):
    """Base class of every error this SDK raises."""


class TransportError(VecdbError):
    """No answer: the connection failed or timed out (after the retries).

    ``__cause__`` holds the underlying ``httpx`` exception.
    """


class ApiError(VecdbError):
    """The service answered with a non-2xx status.

    Attributes:
        status: the HTTP status (e.g. 404).
        code: the server's stable error code (e.g. ``"not_found"``,
            ``"dimension_mismatch"``); ``"http_<status>"`` when the body was
            not the service's JSON error (e.g. from a proxy).
        message: the server's message, meant for people.
        request_id: the ``x-request-id`` of the answer, when present.
    """

    def __init__(
        self, status: int, code: str, message: str, request_id: Optional[str] = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


class BadRequestError(ApiError):
    """400, 415 or 422: the request is malformed or invalid (``invalid_json``,
    ``invalid_request``, ``dimension_mismatch``, ``invalid_filter``...)."""


class AuthenticationError(ApiError):
    """401 ``unauthorized``: missing or wrong API key."""


class NotFoundError(ApiError):
    """404 ``not_found``: no such collection, point or snapshot."""


class ConflictError(ApiError):
    """409 ``already_exists``: e.g. a collection of that name exists."""


class PayloadTooLargeError(ApiError):
    """413 ``payload_too_large``: the body is over the service's limit."""


class RateLimitError(ApiError):
    """429 ``overloaded``: still refused after the retries."""


class ServiceUnavailableError(ApiError):
    """503 (``embedding_unavailable``, ``storage_unavailable``,
    ``collection_damaged``, ``writer_unavailable``, ...): still refused after
    the retries."""


class ServerError(ApiError):
    """Any other 5xx (``internal``, 504 ``consistency_timeout``)."""


class ChecksumMismatchError(VecdbError):
    """A downloaded snapshot's SHA-256 differs from the one the server sent
    (``x-checksum-sha256``); the partial file is removed."""


_BY_STATUS = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_for_status(
    status: int, code: str, message: str, request_id: Optional[str] = None
) -> ApiError:
    """The :class:`ApiError` subclass for ``status``, built from the server's
    ``code`` and ``message``."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else ApiError
    return cls(status, code, message, request_id)
