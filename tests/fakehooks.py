"""A local stand-in for Slack's and Discord's incoming webhooks (no network reaches
them here). It answers with the services' real shapes and records every request.

Paths choose the behaviour:
  /slack/...      200 "ok" (Slack's answer to a good payload)
  /discord/...    204 No Content (Discord's answer without ?wait=true)
  /apprise/...    200 (Apprise's json:// posts here)
  .../ratelimit   first request 429 (Slack: Retry-After header; Discord: JSON
                  retry_after), then as above
  .../broken      500 every time
  .../invalid     400 "invalid_payload" (Slack's answer to a bad payload)
  .../slow        sleeps 30 s before answering
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Hooks:
    port: int
    received: list[Received] = field(default_factory=list)
    seen_paths: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, prefix: str) -> list[Any]:
        return [r.body for r in self.received if r.path.startswith(prefix)]


@contextmanager
def fake_webhooks() -> Iterator[Hooks]:
    hooks = Hooks(port=0)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            with lock:
                hooks.received.append(Received(self.path, dict(self.headers), body))
                hooks.seen_paths[self.path] = hooks.seen_paths.get(self.path, 0) + 1
                count = hooks.seen_paths[self.path]
            discord = self.path.startswith("/discord")
            if self.path.endswith("/slow"):
                time.sleep(30)
            if self.path.endswith("/broken"):
                return self._answer(500, b"internal error")
            if "/nohook/" in self.path:  # receivers that echo the path they did not know
                return self._answer(404, f"no such hook {self.path}".encode())
            if self.path.endswith("/invalid"):
                return self._answer(400, b"invalid_payload")
            if self.path.endswith("/ratelimit") and count == 1:
                if discord:
                    body429 = b'{"message": "You are being rate limited.", "retry_after": 0.3, "global": false}'
                    return self._answer(429, body429, "application/json")
                return self._answer(429, b"rate_limited", headers={"Retry-After": "1"})
            if discord:
                return self._answer(204, b"")
            return self._answer(200, b"ok")

        def _answer(
            self,
            code: int,
            body: bytes,
            content_type: str = "text/html",
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if body:
                # The client may have given up (its deadline passed): that is the test.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    hooks.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hooks
    finally:
        server.shutdown()
        server.server_close()
