"""Steady load on an environment's public ports, counting every failed request.

Used by the zero-downtime integration test and by ``benchmarks/zero_downtime.py``.
Clients never retry (a retry would hide a lost request):

- keep-alive GET clients (one persistent ``http.client`` connection each; a connection
  closed under them counts as a failure, then they reconnect);
- ``Connection: close`` GET clients (a new connection per request);
- keep-alive POST clients that write a row to the database (``/api/projects``);
- WebSocket clients that ping every second and record how their connection ended
  (1001 "going away" and reconnected is the graceful case; anything else is abnormal).

Every request is logged with its time, so figures can be cut per phase afterwards.
"""

from __future__ import annotations

import http.client
import itertools
import json
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect


@dataclass(frozen=True)
class Sample:
    at: float
    kind: str  # get-keepalive | get-close | post
    ok: bool
    ms: float
    error: str = ""


@dataclass
class WsEvents:
    closed_1001: int = 0
    abnormal: int = 0
    reconnected: int = 0
    pongs: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class Phase:
    name: str
    start: float
    end: float
    ws: dict[str, int] = field(default_factory=dict)  # WebSocket events during the phase


class Load:
    def __init__(
        self,
        port: int,
        *,
        keepalive: int = 3,
        close: int = 2,
        posts: int = 1,
        websockets: int = 20,
        pause: float = 0.002,
        path: str = "/health",
        host: str = "127.0.0.1",
        ws_session_seconds: float | None = None,
    ) -> None:
        self.port = port
        self.ws_session_seconds = ws_session_seconds  # a client ends its session (1000)
        self.host = host
        self.path = path
        self.pause = pause
        self.samples: list[Sample] = []
        self.ws = WsEvents()
        self.phases: list[Phase] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._names = itertools.count()
        self._threads = [
            *(threading.Thread(target=self._get_keepalive, daemon=True) for _ in range(keepalive)),
            *(threading.Thread(target=self._get_close, daemon=True) for _ in range(close)),
            *(threading.Thread(target=self._post, daemon=True) for _ in range(posts)),
            *(threading.Thread(target=self._websocket, daemon=True) for _ in range(websockets)),
        ]

    # --- running ---------------------------------------------------------------------

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def phase(self, name: str) -> _PhaseTimer:
        return _PhaseTimer(self, name)

    def _record(self, kind: str, started: float, ok: bool, error: str = "") -> None:
        ms = (time.monotonic() - started) * 1000
        with self._lock:
            self.samples.append(Sample(started, kind, ok, ms, error))

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=10)

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        kind: str,
        request: tuple[str, str, str | None, dict[str, str]],
        expect: int,
    ) -> bool:
        """One request; records it; False when the connection failed (not the status)."""
        method, path, body, headers = request
        started = time.monotonic()
        try:
            conn.request(method, path, body, headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._record(kind, started, False, type(exc).__name__)
            return False
        self._record(kind, started, response.status == expect, str(response.status))
        return True

    def _keepalive_loop(self, kind: str, make: Any, expect: int, pause: float) -> None:
        """Requests on one persistent connection; after a failure, a new connection."""
        conn = self._connection()
        while not self._stop.is_set():
            if not self._exchange(conn, kind, make(), expect):
                conn.close()
                conn = self._connection()
            time.sleep(pause)
        conn.close()

    def _get_keepalive(self) -> None:
        self._keepalive_loop("get-keepalive", lambda: ("GET", self.path, None, {}), 200, self.pause)

    def _get_close(self) -> None:
        request = ("GET", self.path, None, {"Connection": "close"})
        while not self._stop.is_set():
            conn = self._connection()
            self._exchange(conn, "get-close", request, 200)
            conn.close()
            time.sleep(self.pause)

    def _post(self) -> None:
        def make() -> tuple[str, str, str | None, dict[str, str]]:
            body = json.dumps({"name": f"load-{id(self)}-{next(self._names)}"})
            return ("POST", "/api/projects", body, {"Content-Type": "application/json"})

        self._keepalive_loop("post", make, 201, self.pause * 5)

    def _websocket(self) -> None:
        url = f"ws://{self.host}:{self.port}/ws"
        first = True
        while not self._stop.is_set():
            try:
                with ws_connect(url, open_timeout=5, close_timeout=2) as ws:
                    if not first:
                        with self._lock:
                            self.ws.reconnected += 1
                    first = False
                    opened = time.monotonic()
                    while not self._stop.is_set():
                        if self._session_over(opened):
                            break  # closed normally by the client; a new one follows
                        ws.send('{"type": "ping"}')
                        ws.recv(timeout=5)
                        with self._lock:
                            self.ws.pongs += 1
                        self._stop.wait(1.0)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                with self._lock:
                    if code == 1001:
                        self.ws.closed_1001 += 1
                    else:
                        self.ws.abnormal += 1
                        self.ws.errors.append(f"closed {code}")
            except (OSError, TimeoutError) as exc:
                with self._lock:
                    self.ws.abnormal += 1
                    self.ws.errors.append(type(exc).__name__)
                self._stop.wait(0.2)

    def _session_over(self, opened: float) -> bool:
        limit = self.ws_session_seconds
        return limit is not None and time.monotonic() - opened >= limit

    # --- figures ---------------------------------------------------------------------

    def summary(self, start: float | None = None, end: float | None = None) -> dict[str, Any]:
        with self._lock:
            chosen = [
                s
                for s in self.samples
                if (start is None or s.at >= start) and (end is None or s.at < end)
            ]
        failed = Counter(s.kind for s in chosen if not s.ok)
        errors = Counter(s.error for s in chosen if not s.ok)
        latencies = sorted(s.ms for s in chosen if s.ok)
        seconds = (end or time.monotonic()) - (start or (chosen[0].at if chosen else 0))
        return {
            "requests": len(chosen),
            "failed": sum(failed.values()),
            "failed_by_kind": dict(failed),
            "errors": dict(errors.most_common(5)),
            "rate": round(len(chosen) / seconds, 1) if seconds > 0 else 0.0,
            "p50_ms": _pct(latencies, 50),
            "p99_ms": _pct(latencies, 99),
            "max_ms": round(latencies[-1], 1) if latencies else 0.0,
        }

    def ws_counts(self) -> dict[str, int]:
        with self._lock:
            w = self.ws
            return {
                "closed_1001": w.closed_1001,
                "abnormal": w.abnormal,
                "reconnected": w.reconnected,
            }

    def phase_summaries(self) -> dict[str, dict[str, Any]]:
        return {p.name: {**self.summary(p.start, p.end), "ws": p.ws} for p in self.phases}


def _pct(values: list[float], pct: int) -> float:
    if not values:
        return 0.0
    if len(values) < 2:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[pct - 1], 1)


class _PhaseTimer:
    def __init__(self, load: Load, name: str) -> None:
        self.load = load
        self.name = name
        self.start = 0.0

    def __enter__(self) -> _PhaseTimer:
        self.start = time.monotonic()
        self.ws_before = self.load.ws_counts()
        return self

    def __exit__(self, *exc: object) -> None:
        after = self.load.ws_counts()
        ws = {k: after[k] - self.ws_before[k] for k in after}
        self.load.phases.append(Phase(self.name, self.start, time.monotonic(), ws))
