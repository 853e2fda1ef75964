"""``slipway dashboard``: a small HTTP server for the page and its JSON API.

Bound to 127.0.0.1 unless told otherwise; on any other address a token is required
(``?token=`` or ``Authorization: Bearer``), generated and printed when not given. It
serves GET only: nothing on this server can change a deploy.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlparse

LOCAL_ADDRESSES = ("127.0.0.1", "localhost", "::1")


def needs_token(host: str) -> bool:
    return host not in LOCAL_ADDRESSES


def make_token() -> str:
    return secrets.token_urlsafe(24)


def page() -> bytes:
    return resources.files("slipway.dashboard").joinpath("index.html").read_bytes()


def make_handler(
    data: Callable[[], dict[str, Any]], token: str | None
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "slipway-dashboard"

        def _authorised(self) -> bool:
            if token is None:
                return True
            query = parse_qs(urlparse(self.path).query)
            given = query.get("token", [""])[0]
            header = self.headers.get("Authorization", "")
            if header.startswith("Bearer "):
                given = header.removeprefix("Bearer ")
            return hmac.compare_digest(given.encode(), token.encode())

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header(
                "Content-Security-Policy",
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            )
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
                body = json.dumps(data(), default=str).encode()
                self._send(200, body, "application/json")
            else:
                self._send(404, b'{"error": "not found"}', "application/json")

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def serve(
    data: Callable[[], dict[str, Any]], host: str, port: int, token: str | None
) -> ThreadingHTTPServer:
    """A started-but-not-serving server (call ``serve_forever``); port 0 picks one."""
    return ThreadingHTTPServer((host, port), make_handler(data, token))
