"""WebSocket sessions slipway holds open on each side of a canary, to count abnormal ends.

A router's access log cannot say how a WebSocket session ended: Traefik logs the
hijacked connection once it is over, with no close code, whichever side ended it and
however. So while a canary step is held, slipway keeps a few sessions of its own on each
colour (the health check's path and message, sent again every second) and counts those
the server ends: with a close code other than 1000 (normal) or 1001 (going away), or
with no close frame at all (1006: a crashed or killed process). A session slipway did
not end, ended abnormally, is reopened at once, so a release that drops every session
shows a share near 100 %.

A slow answer is not an end: the session waits for it (the latency rules judge speed).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from slipway.config.model import WebSocketCheck
from slipway.health.checks import named

NORMAL_CLOSE = (1000, 1001)
PING_SECONDS = 1.0
RETRY_SECONDS = 0.2  # after a failed open, before the next


@dataclass
class SessionFigures:
    """One side's held sessions in a window: how many were opened or tried, how many
    the server refused or ended abnormally, and the last such end, named."""

    sessions: int = 0
    dropped: int = 0
    last: str | None = None

    @property
    def drop_rate(self) -> float:
        return self.dropped / self.sessions if self.sessions else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "dropped": self.dropped,
            "drop_rate": round(self.drop_rate, 4),
            "last": self.last,
        }


@dataclass
class _Side:
    url: str
    figures: SessionFigures = field(default_factory=SessionFigures)


class HeldSessions:
    """``per_side`` sessions on each side (name -> ``ws://`` URL) until :meth:`stop`."""

    def __init__(
        self, check: WebSocketCheck, urls: dict[str, str], per_side: int, timeout: float
    ) -> None:
        self.check = check
        self.timeout = timeout
        self.sides = {name: _Side(url) for name, url in urls.items()}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._hold, args=(side,), daemon=True, name=f"ws-{name}")
            for name, side in self.sides.items()
            for _ in range(per_side)
        ]

    def __enter__(self) -> HeldSessions:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End every session normally (1000, not counted), without waiting: a canary's
        abort must not wait for a session's close handshake."""
        self._stop.set()

    def join(self) -> None:
        """Wait until every session has ended."""
        for thread in self._threads:
            thread.join(timeout=self.timeout + 2)

    def figures(self) -> dict[str, SessionFigures]:
        """A copy of each side's figures so far."""
        with self._lock:
            return {name: replace(s.figures) for name, s in self.sides.items()}

    def _hold(self, side: _Side) -> None:
        while not self._stop.is_set():
            self._count(side, sessions=1)
            try:
                with ws_connect(side.url, open_timeout=self.timeout, close_timeout=1) as ws:
                    ended = self._converse(ws)
            except ConnectionClosed as exc:
                ended = _close_reason(exc)
            except (OSError, TimeoutError, InvalidHandshake) as exc:  # refused, reset, no 101
                ended = named(exc)
            if self._stop.is_set():
                return
            if ended is not None:
                self._count(side, dropped=1, last=ended)
            self._stop.wait(RETRY_SECONDS)  # the server ended it: a new one, not a storm

    def _converse(self, ws: ClientConnection) -> str | None:
        """Send the check's message every :data:`PING_SECONDS` and read whatever comes
        (replies, or anything the app pushes: an unread queue would stall its sends),
        until stopped (None) or the server ends the session abnormally (why). A reply
        may take any time: slowness is no end."""
        next_send = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_send:
                    ws.send(self.check.send)
                    next_send = time.monotonic() + PING_SECONDS
                with contextlib.suppress(TimeoutError):
                    ws.recv(timeout=RETRY_SECONDS)
        except ConnectionClosed as exc:
            return _close_reason(exc)
        return None

    def _count(
        self, side: _Side, sessions: int = 0, dropped: int = 0, last: str | None = None
    ) -> None:
        with self._lock:
            side.figures.sessions += sessions
            side.figures.dropped += dropped
            side.figures.last = last or side.figures.last


def _close_reason(exc: ConnectionClosed) -> str | None:
    """Why the server ended the session, or None when it ended normally."""
    code = exc.rcvd.code if exc.rcvd is not None else 1006
    if code in NORMAL_CLOSE:
        return None
    reason = exc.rcvd.reason if exc.rcvd is not None and exc.rcvd.reason else ""
    return f"closed {code}" + (f" ({reason})" if reason else "")
