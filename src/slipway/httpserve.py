"""The HTTP server under ``slipway dashboard`` and ``slipway monitor --metrics-port``.

Both were plain ``ThreadingHTTPServer``s: one thread per connection, no timeout while
reading a request, any Host header. A client that opens many connections and never
finishes a request held one thread each, and a web page could reach the servers
through DNS rebinding (its own name resolving to 127.0.0.1). Hence, once, for both:

* Connections wait for their request line and headers in one selector loop, with a
  deadline (``header_timeout``), holding no thread. Only complete requests go to a
  fixed pool of ``workers`` threads, so half-sent requests cost a socket, not a thread,
  and cannot starve a client whose request is complete.
* The Host header must name this server (its bound address, localhost, 127.0.0.1 or
  [::1] on its port) or one allowed with ``--allow-host``; a rebinding page sends its
  own name and is refused with 421.
* The ``Server`` header says ``slipway``, not the Python version.
* The port is checked at bind time; a port in use is a usage error naming it.
"""

from __future__ import annotations

import errno
import hmac
import io
import ipaddress
import queue
import re
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from itertools import takewhile
from typing import Any

from slipway.errors import UsageError

WORKERS = 16
HEADER_TIMEOUT = 5.0
MAX_PENDING = 1024  # connections still sending headers; beyond it the oldest is dropped
MAX_HEAD = 64 * 1024  # a request line plus headers larger than this is dropped
READY_QUEUE = 256  # complete requests waiting for a worker; beyond it they are dropped
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")

_END_OF_HEAD = re.compile(rb"\n\r?\n")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine (no token needed)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bearer_matches(authorization: str, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    given = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
    return hmac.compare_digest(given.encode(), token.encode())


def split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header (or ``--allow-host`` value) as (lower-case name, port or None);
    None when it cannot be a host (several colons without brackets, a bad port)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else ""
    else:
        name, _, port_text = value.partition(":")
        if ":" in port_text:
            return None
    if port_text and not port_text.isdigit():
        return None
    return name.rstrip("."), int(port_text) if port_text else None


@dataclass(frozen=True)
class HostAllowList:
    """Which Host headers this server answers: its own names on its own port, plus the
    ``--allow-host`` names (on any port, as a reverse proxy may forward them)."""

    port: int
    own: frozenset[str]
    extra: frozenset[tuple[str, int | None]] = field(default_factory=frozenset)

    @classmethod
    def build(cls, bound: str, port: int, allow: Iterable[str] = ()) -> HostAllowList:
        extra = frozenset(p for p in (split_host(name) for name in allow) if p is not None)
        own = frozenset([*LOCAL_NAMES, bound.lower().strip("[]")])
        return cls(port, own, extra)

    def allows(self, header: str | None) -> bool:
        parsed = split_host(header) if header else None
        if parsed is None or not parsed[0]:
            return False
        name, port = parsed
        if (name, port) in self.extra or (name, None) in self.extra:
            return True
        return name in self.own and (port if port is not None else 80) == self.port


@dataclass
class Received:
    """A connection whose request line and headers have arrived in full."""

    sock: socket.socket
    address: Any
    head: bytes


@dataclass
class _Pending:
    sock: socket.socket
    address: Any
    deadline: float
    head: bytearray = field(default_factory=bytearray)


class HardenedHandler(BaseHTTPRequestHandler):
    """Base of both servers' handlers: reads the request from the bytes the server
    already received, checks the Host header, and names no Python version."""

    server_version = "slipway"
    sys_version = ""

    def setup(self) -> None:
        received = self.request
        head = b""
        if isinstance(received, Received):
            self.request, head = received.sock, received.head
        super().setup()
        self.rfile.close()
        # HTTP/1.0, GET only: the handler never reads past the headers, all here.
        self.rfile = io.BytesIO(head)

    def version_string(self) -> str:
        return self.server_version

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        server = self.server
        if isinstance(server, HardenedHTTPServer) and not server.hosts.allows(
            self.headers.get("Host")
        ):
            self.send_plain(421, "unknown Host header (allow it with --allow-host NAME)\n")
            return False
        return True

    def send_plain(self, code: int, text: str, headers: dict[str, str] | None = None) -> None:
        """A short text/plain answer (send_error's HTML page says more than needed)."""
        body = text.encode()
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class HardenedHTTPServer(socketserver.TCPServer):
    """A TCP server with a header-reading selector loop and a bounded worker pool.

    ``serve_forever`` runs the loop in the calling thread and ``workers`` handler
    threads; ``shutdown`` (from another thread) stops both.
    """

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        host: str,
        port: int,
        handler: type[HardenedHandler],
        *,
        allow_hosts: Iterable[str] = (),
        workers: int = WORKERS,
        header_timeout: float = HEADER_TIMEOUT,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # Typed loosely: handlers get a Received where socketserver's stubs say socket.
        self.handler: Callable[[Any, Any, HardenedHTTPServer], object] = handler
        self.workers = workers
        self.header_timeout = header_timeout
        self._ready: queue.Queue[Received | None] = queue.Queue(READY_QUEUE)
        self._pending: dict[int, _Pending] = {}
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._starting = threading.Lock()
        try:
            super().__init__((host.strip("[]"), port), handler)
        except OSError as exc:
            raise listen_error(host, port, exc) from exc
        self.hosts = HostAllowList.build(host, self.port, allow_hosts)

    @property
    def port(self) -> int:
        """The bound port (the one the kernel picked when asked for port 0)."""
        port: int = self.server_address[1]
        return port

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        with self._starting:
            if self._stop.is_set():  # shut down before it started: the socket may be closed
                self._stop.clear()
                return
            self._stopped.clear()
        pool = [threading.Thread(target=self._work, daemon=True) for _ in range(self.workers)]
        for thread in pool:
            thread.start()
        try:
            self._loop(poll_interval)
        finally:
            self._drop_all_pending()
            for _ in pool:
                self._ready.put(None)
            self._stop.clear()  # cleared here, not at the start: an early shutdown counts
            self._stopped.set()

    def shutdown(self) -> None:
        with self._starting:  # either it never starts, or it has and is waited for
            self._stop.set()
        self._stopped.wait()

    def _loop(self, poll_interval: float) -> None:
        self.socket.setblocking(False)
        with selectors.DefaultSelector() as selector:
            self._selector = selector
            selector.register(self.socket, selectors.EVENT_READ, None)
            while not self._stop.is_set():
                for key, _ in selector.select(self._wait(poll_interval)):
                    if key.data is None:
                        self._accept()
                    else:
                        self._receive(key.data)
                self._expire()

    def _wait(self, poll_interval: float) -> float:
        if not self._pending:
            return poll_interval
        first = next(iter(self._pending.values()))
        return max(0.0, min(poll_interval, first.deadline - time.monotonic()))

    def _accept(self) -> None:
        try:
            sock, address = self.socket.accept()
        except OSError:  # the client left already, or no descriptors: try again later
            return
        sock.setblocking(False)
        if len(self._pending) >= MAX_PENDING:
            self._drop(next(iter(self._pending.values())))
        pending = _Pending(sock, address, time.monotonic() + self.header_timeout)
        self._pending[sock.fileno()] = pending
        self._selector.register(sock, selectors.EVENT_READ, pending)

    def _receive(self, pending: _Pending) -> None:
        try:
            chunk = pending.sock.recv(8192)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        pending.head += chunk
        if not chunk or len(pending.head) > MAX_HEAD:
            self._drop(pending)
        elif _END_OF_HEAD.search(pending.head):
            self._dispatch(pending)

    def _dispatch(self, pending: _Pending) -> None:
        self._forget(pending)
        pending.sock.settimeout(self.header_timeout)  # a client that never reads
        try:
            self._ready.put_nowait(Received(pending.sock, pending.address, bytes(pending.head)))
        except queue.Full:
            pending.sock.close()

    def _expire(self) -> None:
        now = time.monotonic()
        # Insertion order is deadline order: stop at the first one still in time.
        expired = list(takewhile(lambda p: p.deadline <= now, self._pending.values()))
        for pending in expired:
            self._drop(pending)

    def _forget(self, pending: _Pending) -> None:
        self._selector.unregister(pending.sock)
        del self._pending[pending.sock.fileno()]

    def _drop(self, pending: _Pending) -> None:
        self._forget(pending)
        pending.sock.close()

    def _drop_all_pending(self) -> None:
        for pending in list(self._pending.values()):
            pending.sock.close()
        self._pending.clear()

    def _work(self) -> None:
        while (received := self._ready.get()) is not None:
            try:
                self.handler(received, received.address, self)
            except Exception:
                self.handle_error(received.sock, received.address)
            finally:
                self.shutdown_request(received.sock)


def listen_error(host: str, port: int, exc: OSError) -> UsageError:
    """A bind failure as one line naming the address, instead of a traceback."""
    reasons = {
        errno.EADDRINUSE: "the port is already in use",
        errno.EACCES: "permission denied (ports below 1024 need privileges)",
        errno.EADDRNOTAVAIL: "this machine has no such address",
    }
    reason = reasons.get(exc.errno or 0, exc.strerror or str(exc))
    where = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    return UsageError(
        f"cannot listen on {where}: {reason}",
        hint="choose another port, or stop the process that holds it",
    )
