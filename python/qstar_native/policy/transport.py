"""JSON over HTTP to serving engines: kept-alive connections per thread, bounded retries.

Connection errors, timeouts and 5xx answers are retried with exponential backoff; a 4xx answer is
the caller's mistake and is raised at once. Only a complete 2xx answer is returned, so whatever
a caller counts from answers (tokens) is counted once however many tries it took.

Example:
    >>> t = Transport(timeout=5, retries=0)
    >>> t.post("http://127.0.0.1:9", "/v1/completions", {})  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ServerError: http://127.0.0.1:9: cannot reach the server ...
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ServerError", "ServerRefused", "Transport"]


class ServerError(RuntimeError):
    """A server that cannot be reached, refuses a request, or answers what a policy cannot use.
    The message names the URL and the fix."""


class ServerRefused(ServerError):
    """The server answered 4xx: it is up, and will not do this request (``status``)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _Retryable(Exception):
    pass


class Transport:
    """POST/GET JSON with retries (see the module docstring).

    Args:
        timeout: seconds to wait for a connection and for each answer.
        retries: further tries after a connection error, timeout or 5xx (0: one try).
        backoff: seconds before the first retry; doubled for each next one.
        api_key: sent as ``Authorization: Bearer ...`` when given.
    """

    def __init__(self, *, timeout: float = 120.0, retries: int = 3, backoff: float = 0.5, api_key: str | None = None) -> None:
        if not timeout > 0 or isinstance(retries, bool) or not isinstance(retries, int) or retries < 0 or backoff < 0:
            raise ValueError(f"need timeout > 0, an int retries >= 0 and backoff >= 0, got {timeout}, {retries!r} and {backoff}")
        self.timeout, self.retries, self.backoff, self.api_key = float(timeout), retries, float(backoff), api_key
        self._local = threading.local()
        self.lock = threading.Lock()
        self.requests = self.retried = 0

    def _connection(self, url: str) -> http.client.HTTPConnection:
        conns = self._local.__dict__.setdefault("conns", {})
        conn = conns.get(url)
        if conn is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ServerError(f"{url}: not an http(s) URL; give e.g. http://127.0.0.1:8080")
            cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            conn = conns[url] = cls(parts.hostname, parts.port, timeout=self.timeout)
        return conn

    def _drop(self, url: str) -> None:
        conn = self._local.__dict__.get("conns", {}).pop(url, None)
        if conn is not None:
            conn.close()

    def get(self, url: str, path: str) -> Any:
        return self.request("GET", url, path, None)

    def post(self, url: str, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", url, path, body)

    def request(self, method: str, url: str, path: str, body: dict[str, Any] | None) -> Any:
        """The decoded JSON answer; ServerError after the last failed try, or at once on a 4xx."""
        base = url.rstrip("/")
        prefix = urlsplit(base).path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                with self.lock:
                    self.retried += 1
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                conn = self._connection(base)
                conn.request(method, prefix + path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                if resp.status >= 500:
                    raise _Retryable(f"answered {resp.status} {_snippet(raw)}")
            except (OSError, http.client.HTTPException, _Retryable) as e:
                self._drop(base)
                last = _describe(e, self.timeout)
                continue
            with self.lock:
                self.requests += 1
            if resp.status >= 400:
                raise ServerRefused(f"{base}{path} refused the request: {resp.status} {_snippet(raw)}", resp.status)
            try:
                return json.loads(raw)
            except ValueError:
                raise ServerError(f"{base}{path} answered {resp.status} with something that is not JSON: {_snippet(raw)}") from None
        tries = f"{self.retries + 1} tries" if self.retries else "1 try"
        raise ServerError(f"{base}: cannot reach the server ({last}; {tries}); start it, or fix the URL")


def _snippet(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:300] + ("..." if len(text) > 300 else "")


def _describe(e: BaseException, timeout: float) -> str:
    if isinstance(e, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    return str(e) or type(e).__name__
