"""Writers and WebSocket clients that wait as long as a breaking deploy's hold may last.

Used by ``tests/test_breaking.py`` and ``benchmarks/breaking_hold.py``. Each write is a
``POST /api/projects`` with a unique name; its status, its latency and the colour that
answered it (the router's ``X-Slipway-Color``, ``hold`` for a request that waited at the
holding proxy) are kept, so a test can ask which release acknowledged what.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect as ws_connect

COLOR_HEADER = "X-Slipway-Color"

_TAGS = itertools.count()


@dataclass(frozen=True)
class Write:
    name: str
    status: int  # 0: the request failed (connection error or timeout)
    color: str
    started: float
    seconds: float


class Traffic:
    """POST writers and WebSocket clients that wait as long as a hold may last."""

    def __init__(self, port: int, writers: int = 3, websockets: int = 3) -> None:
        self.port = port
        self.tag = next(_TAGS)  # row names are unique across tests
        self.writes: list[Write] = []
        self.ws_sessions = 0
        self.ws_failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            *(threading.Thread(target=self._write, args=(n,), daemon=True) for n in range(writers)),
            *(threading.Thread(target=self._websocket, daemon=True) for _ in range(websockets)),
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)

    def _write(self, writer: int) -> None:
        n = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=90) as client:
            while not self._stop.is_set():
                name = f"{self.tag}w{writer}-{n}"
                n += 1
                started = time.monotonic()
                try:
                    r = client.post("/api/projects", json={"name": name})
                    status, color = r.status_code, r.headers.get(COLOR_HEADER, "")
                except httpx.HTTPError:
                    status, color = 0, ""
                with self._lock:
                    self.writes.append(
                        Write(name, status, color, started, time.monotonic() - started)
                    )
                time.sleep(0.02)

    def _websocket(self) -> None:
        while not self._stop.is_set():
            try:
                with ws_connect(
                    f"ws://127.0.0.1:{self.port}/ws", open_timeout=90, close_timeout=2
                ) as ws:
                    with self._lock:
                        self.ws_sessions += 1
                    while not self._stop.is_set():
                        ws.send('{"type": "ping"}')
                        ws.recv(timeout=5)
                        self._stop.wait(0.5)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                if code != 1001:  # 1001: the old colour drained; the client reconnects
                    with self._lock:
                        self.ws_failures.append(f"closed {code}")
            except (OSError, TimeoutError, InvalidHandshake) as exc:  # refused, 502, ...
                with self._lock:
                    self.ws_failures.append(f"{type(exc).__name__}: {exc}"[:120])
                self._stop.wait(0.2)

    def acknowledged(self) -> list[Write]:
        return [w for w in self.writes if w.status == 201]


def rows(path: Path) -> set[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM projects")}
