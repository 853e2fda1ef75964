"""Host-side holding proxy: queues requests during a breaking migration instead of failing them.

Neither Traefik nor nginx can queue requests (docs/architecture.md, "Switching
traffic"), so for a release whose migrations the running release cannot live with, the
router is pointed at this small proxy from before the database backup until the new
colour is verified and live:

- **holding**: each connection is accepted, its request head is read and kept, and the
  connection waits. Nothing reaches the old colour (stopped meanwhile), so no write
  lands between the backup and the switch. A request carrying ``X-Slipway-Probe`` is
  answered at once (``204``, ``X-Slipway-Color: hold``): that is how the router's
  switch is confirmed without waiting in the queue itself.
- **released** (``release`` with the new colour's ports): every waiting connection is
  sent on, kept bytes first, then spliced both ways (WebSocket upgrades included);
  later connections are spliced at once. The longest wait is reported.
- **aborted** (``abort``, SIGTERM, or the holder's own deadline passing unreleased):
  waiting connections get ``503`` with ``Retry-After`` rather than hanging forever.

Like :mod:`slipway.state.hostscript`, it is uploaded content-addressed and uses only the
standard library; the one argument of the detached job is the proxy's request. It is
steered over its Unix socket, one JSON line each way (the host agent's ``ask_socket``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from typing import Any

HEAD_LIMIT = 65536  # bytes of a request kept while it waits
HEAD_WAIT = 2.0  # seconds to wait for a request head before queueing what came
CHUNK = 65536
PROBE_MARK = b"\r\nx-slipway-probe:"
PROBE_ANSWER = (
    b"HTTP/1.1 204 No Content\r\nX-Slipway-Color: hold\r\n"
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)
_BUSY_BODY = b"deploy in progress: the request could not be held, retry shortly\n"
BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n"
    + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(_BUSY_BODY)
    + _BUSY_BODY
)


class Holder:
    """The proxy's state: one listener per process, one decision for all of them."""

    def __init__(self, processes: list[str], deadline: float, linger: float) -> None:
        self.processes = processes
        self.deadline = deadline
        self.linger = linger
        self.state = "holding"
        self.why = ""
        self.targets: dict[str, int] = {}
        self.ports: dict[str, int] = {}
        self.waiting: dict[int, float] = {}  # id -> arrival (monotonic)
        self.decided = asyncio.Event()
        self.listening = True
        self.accepted = 0
        self.probes = 0
        self.open = 0
        self.failed = 0
        self.released = 0
        self.longest_wait = 0.0
        self.servers: list[asyncio.base_events.Server] = []
        self._next_id = 0

    # --- connections ----------------------------------------------------------------

    async def handle(
        self, process: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.open += 1
        try:
            head = await read_head(reader)
            if PROBE_MARK in head.split(b"\r\n\r\n", 1)[0].lower():
                self.probes += 1
                writer.write(PROBE_ANSWER)
                await writer.drain()
                return
            self.accepted += 1
            if self.state == "holding":
                await self._wait()
            if self.state != "released":
                self.failed += 1
                writer.write(BUSY_ANSWER)
                await writer.drain()
                return
            await self.forward(process, head, reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def _wait(self) -> None:
        key = self._next_id
        self._next_id += 1
        self.waiting[key] = time.monotonic()
        try:
            await self.decided.wait()
        finally:
            self.waiting.pop(key, None)

    async def forward(
        self, process: str, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.targets[process])
        except OSError:
            self.failed += 1
            writer.write(BUSY_ANSWER)
            await writer.drain()
            return
        try:
            up_writer.write(head)
            await up_writer.drain()
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()

    # --- decisions ----------------------------------------------------------------

    def _close_waits(self) -> None:
        """Record the longest wait of the connections waiting now (the decision ends it)."""
        now = time.monotonic()
        longest = max((now - t for t in self.waiting.values()), default=0.0)
        self.longest_wait = max(self.longest_wait, longest)

    def release(self, ports: dict[str, int]) -> None:
        missing = set(self.processes) - set(ports)
        if missing:
            raise ValueError(f"no target port for: {', '.join(sorted(missing))}")
        if self.state != "holding":
            raise ValueError(f"cannot release: the holder is {self.state} ({self.why})")
        self.targets = {name: int(port) for name, port in ports.items()}
        self.released = len(self.waiting)
        self._close_waits()
        self.state, self.why = "released", "released"
        self.decided.set()

    def abort(self, why: str) -> None:
        if self.state != "holding":
            return
        self._close_waits()
        self.state, self.why = "aborted", why
        self.decided.set()
        self.stop_listening()

    def stop_listening(self) -> None:
        self.listening = False
        for server in self.servers:
            server.close()

    def stats(self) -> dict[str, Any]:
        waiting = list(self.waiting.values())
        now = time.monotonic()
        return {
            "state": self.state,
            "why": self.why,
            "ports": self.ports,
            "waiting": len(waiting),
            "oldest_wait": round(max((now - t for t in waiting), default=0.0), 3),
            "accepted": self.accepted,
            "probes": self.probes,
            "released": self.released,
            "longest_wait": round(self.longest_wait, 3),
            "failed": self.failed,
            "open": self.open,
            "listening": self.listening,
        }

    def command(self, request: dict[str, Any]) -> dict[str, Any]:
        """One control command: status, release (with ``ports``, and ``stop`` to close
        the listeners at once), abort, stop."""
        what = request.get("cmd")
        if what == "release":
            self.release(request.get("ports") or {})
            if request.get("stop"):  # the router no longer sends new connections here
                self.stop_listening()
        elif what == "abort":
            self.abort(str(request.get("why") or "aborted by slipway"))
        elif what == "stop":
            self.abort("stopped before a release")
            self.stop_listening()
        elif what != "status":
            raise ValueError(f"unknown command {what!r}")
        return self.stats()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The request head (or what came of it within HEAD_WAIT), kept to be sent on."""
    data = b""
    deadline = time.monotonic() + HEAD_WAIT
    while b"\r\n\r\n" not in data and len(data) < HEAD_LIMIT:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            chunk = await asyncio.wait_for(reader.read(HEAD_LIMIT - len(data)), left)
        except asyncio.TimeoutError:  # noqa: UP041 - hosts may run Python < 3.11
            break
        if not chunk:
            break
        data += chunk
    return data


async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then pass the half-close on."""
    try:
        while True:
            chunk = await source.read(CHUNK)
            if not chunk:
                break
            sink.write(chunk)
            await sink.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if sink.can_write_eof():
                sink.write_eof()
            else:
                sink.close()


async def control(
    holder: Holder, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        line = await reader.readline()
        try:
            answer = holder.command(json.loads(line))
        except (ValueError, TypeError, KeyError) as exc:
            answer = {"error": str(exc), **holder.stats()}
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()
    finally:
        writer.close()


async def serve(request: dict[str, Any]) -> dict[str, Any]:
    """Run the proxy until it is decided and its last connection closed."""
    holder = Holder(
        list(request["processes"]), float(request["deadline"]), float(request["linger"])
    )
    for process in holder.processes:

        async def on_connect(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, process: str = process
        ) -> None:
            await holder.handle(process, r, w)

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        holder.servers.append(server)
        holder.ports[process] = server.sockets[0].getsockname()[1]
    path = request["socket"]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    old_mask = os.umask(0o077)
    try:
        ctl = await asyncio.start_unix_server(lambda r, w: control(holder, r, w), path)
    finally:
        os.umask(old_mask)
    ours = os.stat(path).st_ino
    loop = asyncio.get_running_loop()
    with contextlib.suppress(RuntimeError, ValueError):  # only the main thread has signals
        loop.add_signal_handler(signal.SIGTERM, holder.abort, "stopped by SIGTERM")
    try:
        await _decided_or_deadline(holder)
        await _linger(holder)
    finally:
        ctl.close()
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == ours:  # never another proxy's socket
                os.unlink(path)
    return holder.stats()


async def _decided_or_deadline(holder: Holder) -> None:
    try:
        await asyncio.wait_for(holder.decided.wait(), holder.deadline)
    except asyncio.TimeoutError:  # noqa: UP041 - hosts may run Python < 3.11
        holder.abort(f"not released within its deadline of {holder.deadline:g}s")


async def _linger(holder: Holder) -> None:
    """After the decision: serve the connections still open (keep-alive, WebSocket) for
    up to ``linger`` seconds, until slipway says stop and the last one closed."""
    end = time.monotonic() + holder.linger
    while time.monotonic() < end:
        if holder.open == 0 and (not holder.listening or holder.state == "aborted"):
            break
        await asyncio.sleep(0.05)
    holder.stop_listening()


def main() -> None:
    """Run the proxy for the request given as the one argument."""
    stats = asyncio.run(serve(json.loads(sys.argv[1])))
    sys.stdout.write(json.dumps({"at": time.time(), "holder ended": stats}) + "\n")


if __name__ == "__main__":
    main()
