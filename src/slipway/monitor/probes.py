"""Synthetic WebSocket probes: connections held open across samples.

A real client's complaint is a connection that drops while it is open, which a fresh
connect-and-ping every sample cannot see. The probe keeps ``count`` connections open;
at each sample every connection must answer a ping. One that fails (closed by the
server, reset, no pong in time) counts as a drop and is replaced; a replacement that
cannot connect counts as a drop too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect


class WebSocketProbes:
    def __init__(
        self, url: Callable[[], str], count: int, send: str, expect: str, timeout: float
    ) -> None:
        self.url = url
        self.count = count
        self.send = send
        self.expect = expect
        self.timeout = timeout
        self.connections: list[ClientConnection | None] = [None] * count
        self.last_errors: list[str] = []

    def sample(self) -> tuple[int, int]:
        """(probes, drops) since the last sample."""
        drops = 0
        self.last_errors = []
        for index, conn in enumerate(self.connections):
            if conn is not None and self._answers(conn):
                continue
            if conn is not None:  # was open, now broken: a drop
                drops += 1
                self._close(conn)
                self.connections[index] = self._open()
            else:
                self.connections[index] = self._open()
                if self.connections[index] is None:
                    drops += 1  # cannot even connect
        return self.count, drops

    def _answers(self, conn: ClientConnection) -> bool:
        try:
            conn.send(self.send)
            reply = conn.recv(timeout=self.timeout)
        except Exception as exc:  # any failure to talk is the finding
            self.last_errors.append(f"{type(exc).__name__}: {exc}")
            return False
        return self.expect in str(reply)

    def _open(self) -> ClientConnection | None:
        try:
            # Entered as a context manager (websockets' supported way) and closed by _close.
            conn = ws_connect(self.url(), open_timeout=self.timeout, close_timeout=1).__enter__()
        except Exception as exc:
            self.last_errors.append(f"connect: {type(exc).__name__}: {exc}")
            return None
        if not self._answers(conn):
            self._close(conn)
            return None
        return conn

    @staticmethod
    def _close(conn: ClientConnection) -> None:
        with contextlib.suppress(Exception):  # already broken
            conn.close()

    def close(self) -> None:
        for conn in self.connections:
            if conn is not None:
                self._close(conn)
        self.connections = [None] * self.count
