"""``slipway dashboard``: a small HTTP server for the page and its JSON API.

Bound to 127.0.0.1 unless told otherwise; on any other address a token is required
(``?token=`` or ``Authorization: Bearer``), generated and printed when not given. It
serves GET only: nothing on this server can change a deploy. The serving itself
(worker pool, header deadline, Host allow-list) is :mod:`slipway.httpserve`'s.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlparse

from slipway.httpserve import (
    HEADER_TIMEOUT,
    WORKERS,
    HardenedHandler,
    HardenedHTTPServer,
    is_loopback,
)

LOCAL_ADDRESSES = ("127.0.0.1", "localhost", "::1")
OVERVIEW_SECONDS = 2.0
CSP = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"


def needs_token(host: str) -> bool:
    return not is_loopback(host)


def make_token() -> str:
    return secrets.token_urlsafe(24)


def page() -> bytes:
    return resources.files("slipway.dashboard").joinpath("index.html").read_bytes()


class SingleFlight:
    """``compute()``'s JSON, reused for ``seconds``: the overview reads every
    environment's records and runs its health checks, so a page left open in several
    tabs (or a client hammering the API) must not run that once per request. The lock
    is held while computing, so concurrent requesters wait for the one computation."""

    def __init__(self, compute: Callable[[], dict[str, Any]], seconds: float) -> None:
        self._compute = compute
        self._seconds = seconds
        self._lock = threading.Lock()
        self._body: bytes | None = None
        self._at = 0.0

    def get(self) -> bytes:
        with self._lock:
            if self._body is None or time.monotonic() - self._at >= self._seconds:
                self._body = json.dumps(self._compute(), default=str).encode()
                self._at = time.monotonic()
            return self._body


def _given_token(path: str, authorization: str) -> str:
    if authorization.startswith("Bearer "):
        return authorization.removeprefix("Bearer ")
    return parse_qs(urlparse(path).query).get("token", [""])[0]


def make_handler(
    data: Callable[[], dict[str, Any]],
    token: str | None,
    cache_seconds: float = OVERVIEW_SECONDS,
    quick: Callable[[], dict[str, Any]] | None = None,
) -> type[HardenedHandler]:
    """``quick``: the overview without health checks (records only), which the page
    asks for first so its first view does not wait for the checks."""
    overview = SingleFlight(data, cache_seconds)
    first_view = SingleFlight(quick or data, cache_seconds)

    class Handler(HardenedHandler):
        def _authorised(self) -> bool:
            if token is None:
                return True
            given = _given_token(self.path, self.headers.get("Authorization", ""))
            return hmac.compare_digest(given.encode(), token.encode())

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", CSP)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            if path == "/favicon.ico":  # browsers ask without the token; nothing to leak
                self._send(204, b"", "image/x-icon")
                return
            if not self._authorised():
                self._send(401, b'{"error": "token required"}', "application/json")
                return
            if path == "/":
                self._send(200, page(), "text/html; charset=utf-8")
            elif path == "/api/overview":
                quick_view = parse_qs(urlparse(self.path).query).get("quick") == ["1"]
                body = first_view.get() if quick_view else overview.get()
                self._send(200, body, "application/json")
            else:
                self._send(404, b'{"error": "not found"}', "application/json")

    return Handler


def serve(
    data: Callable[[], dict[str, Any]],
    host: str,
    port: int,
    token: str | None,
    *,
    allow_hosts: Iterable[str] = (),
    cache_seconds: float = OVERVIEW_SECONDS,
    workers: int = WORKERS,
    header_timeout: float = HEADER_TIMEOUT,
    quick: Callable[[], dict[str, Any]] | None = None,
) -> HardenedHTTPServer:
    """A bound-but-not-serving server (call ``serve_forever``); port 0 picks one.

    Raises :class:`~slipway.errors.UsageError` when the port cannot be bound.
    """
    return HardenedHTTPServer(
        host,
        port,
        make_handler(data, token, cache_seconds, quick),
        allow_hosts=allow_hosts,
        workers=workers,
        header_timeout=header_timeout,
    )
