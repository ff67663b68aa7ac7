"""HTTP transport shared by the sync and async clients: base URL, API key,
timeouts, connection pooling (one ``httpx`` client per SDK client), retries
with exponential backoff and jitter, and the mapping of error bodies to
exceptions.

Retried: answers 429 and 503 (honouring ``Retry-After`` in seconds, capped
by ``RetryPolicy.max_delay``) and connection errors / timeouts. Every
request the SDK retries is idempotent: upserts carry ids (the SDK assigns a
UUID to a point without one before the first try), deletes and reads are
naturally so.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import httpx

from .errors import TransportError, error_for_status

__all__ = ["RetryPolicy", "SyncTransport", "AsyncTransport"]

RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How failed requests are retried.

    Attributes:
        max_retries: retries after the first try (0 disables retrying).
        initial_delay: seconds before the first retry; doubled each time.
        max_delay: the longest wait between two tries, in seconds (also
            caps a server's ``Retry-After``).
        jitter: each wait is multiplied by a random factor in
            ``[1 - jitter, 1 + jitter]``.
    """

    max_retries: int = 3
    initial_delay: float = 0.2
    max_delay: float = 5.0
    jitter: float = 0.25

    def delay(self, attempt: int, retry_after: Optional[str] = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if retry_after:
            try:
                return min(max(float(retry_after), 0.0), self.max_delay)
            except ValueError:
                pass
        base = min(self.initial_delay * (2**attempt), self.max_delay)
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)


def _headers(api_key: Optional[str]) -> dict:
    h = {"user-agent": "vecdb-client-python/0.1", "accept": "application/json"}
    if api_key:
        h["authorization"] = f"Bearer {api_key}"
    return h


def raise_for_response(resp: httpx.Response) -> None:
    """Raises the :class:`ApiError` for a non-2xx answer (body read)."""
    if resp.is_success:
        return
    code, message = f"http_{resp.status_code}", resp.reason_phrase or "error"
    try:
        err = json.loads(resp.content)["error"]
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        text = resp.content[:500].decode("utf-8", "replace").strip()
        if text:
            message = text
    raise error_for_status(resp.status_code, code, message, resp.headers.get("x-request-id"))


class _Base:
    def __init__(
        self,
        base_url: str,
        api_key: Optional[str],
        timeout: float,
        retry: Optional[RetryPolicy],
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout
        self.retry = retry or RetryPolicy()
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self.headers = _headers(api_key)

    def _should_retry(self, attempt: int, resp: Optional[httpx.Response]) -> bool:
        if attempt >= self.retry.max_retries:
            return False
        return resp is None or resp.status_code in RETRY_STATUSES


class SyncTransport(_Base):
    """Blocking transport over one pooled ``httpx.Client``."""

    def __init__(
        self,
        base_url: str,
        api_key: Optional[str] = None,
        timeout: float = 60.0,
        retry: Optional[RetryPolicy] = None,
        http: Optional[httpx.Client] = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout, retry)
        self.http = http or httpx.Client(
            timeout=self.timeout, limits=httpx.Limits(max_connections=32)
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
        retry: bool = True,
    ) -> httpx.Response:
        """Sends one request, retried per the policy unless ``retry`` is
        false (for bodies that cannot be sent twice, such as a file stream).
        Returns the 2xx answer (body read); raises :class:`ApiError` (the
        server's ``code`` and ``message``) or :class:`TransportError`."""
        h = dict(self.headers)
        if headers:
            h.update(headers)
        attempt = 0
        while True:
            try:
                resp = self.http.request(
                    method, self.base_url + path, json=json_body, content=content,
                    params=params, headers=h,
                )
            except httpx.TransportError as e:
                if not retry or not self._should_retry(attempt, None):
                    raise TransportError(f"{method} {path}: {e}") from e
                time.sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            if resp.is_success or not retry or not self._should_retry(attempt, resp):
                raise_for_response(resp)
                return resp
            time.sleep(self.retry.delay(attempt, resp.headers.get("retry-after")))
            attempt += 1

    def stream(self, method: str, path: str, **kw: Any) -> Any:
        """``httpx`` streaming context for a download (no retries once the
        answer has started); raises :class:`ApiError` on a non-2xx answer."""
        h = dict(self.headers)
        h.update(kw.pop("headers", None) or {})
        return _SyncStream(self.http.stream(method, self.base_url + path, headers=h, **kw))

    def close(self) -> None:
        self.http.close()


class _SyncStream:
    def __init__(self, cm: Any) -> None:
        self.cm = cm

    def __enter__(self) -> httpx.Response:
        try:
            resp = self.cm.__enter__()
        except httpx.TransportError as e:
            raise TransportError(str(e)) from e
        if not resp.is_success:
            resp.read()
            self.cm.__exit__(None, None, None)
            raise_for_response(resp)
        return resp

    def __exit__(self, *exc: Any) -> None:
        self.cm.__exit__(*exc)


class AsyncTransport(_Base):
    """Asyncio transport over one pooled ``httpx.AsyncClient``."""

    def __init__(
        self,
        base_url: str,
        api_key: Optional[str] = None,
        timeout: float = 60.0,
        retry: Optional[RetryPolicy] = None,
        http: Optional[httpx.AsyncClient] = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout, retry)
        self.http = http or httpx.AsyncClient(
            timeout=self.timeout, limits=httpx.Limits(max_connections=32)
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
        retry: bool = True,
    ) -> httpx.Response:
        """As :meth:`SyncTransport.request`, awaited."""
        h = dict(self.headers)
        if headers:
            h.update(headers)
        attempt = 0
        while True:
            try:
                resp = await self.http.request(
                    method, self.base_url + path, json=json_body, content=content,
                    params=params, headers=h,
                )
            except httpx.TransportError as e:
                if not retry or not self._should_retry(attempt, None):
                    raise TransportError(f"{method} {path}: {e}") from e
                await asyncio.sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            if resp.is_success or not retry or not self._should_retry(attempt, resp):
                raise_for_response(resp)
                return resp
            await asyncio.sleep(self.retry.delay(attempt, resp.headers.get("retry-after")))
            attempt += 1

    def stream(self, method: str, path: str, **kw: Any) -> Any:
        """Async ``httpx`` streaming context; raises :class:`ApiError` on a
        non-2xx answer."""
        h = dict(self.headers)
        h.update(kw.pop("headers", None) or {})
        return _AsyncStream(self.http.stream(method, self.base_url + path, headers=h, **kw))

    async def close(self) -> None:
        await self.http.aclose()


class _AsyncStream:
    def __init__(self, cm: Any) -> None:
        self.cm = cm

    async def __aenter__(self) -> httpx.Response:
        try:
            resp = await self.cm.__aenter__()
        except httpx.TransportError as e:
            raise TransportError(str(e)) from e
        if not resp.is_success:
            await resp.aread()
            await self.cm.__aexit__(None, None, None)
            raise_for_response(resp)
        return resp

    async def __aexit__(self, *exc: Any) -> None:
        await self.cm.__aexit__(*exc)


