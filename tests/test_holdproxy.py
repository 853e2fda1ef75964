"""The holding proxy on real sockets: requests wait, then reach the new release (or a 503).

Each test runs a real proxy: in-process (so its code is measured) or detached through
the local transport, exactly as a deploy starts it on a host. The "release" is a stdlib
HTTP server that names itself in every answer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from slipway.errors import RouterError
from slipway.routers import holdproxy
from slipway.routers.hold import HoldingProxy, proxy_script
from slipway.state import hostscript as hs
from slipway.state.host import attach_agent
from slipway.transports.local import LocalTransport


class _Named(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    def _answer(self, body: bytes) -> None:
        data = json.dumps({"path": self.path, "body": body.decode()}).encode()
        self.send_response(200)
        self.send_header("X-Slipway-Color", "green")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def release() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Named)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


class InProcess:
    """A proxy served by ``holdproxy.serve`` on a thread of this test."""

    def __init__(self, tmp_path: Path, deadline: float = 30.0, linger: float = 5.0) -> None:
        self.socket = str(tmp_path / "hold.sock")
        request = {
            "op": "serve",
            "processes": ["backend"],
            "socket": self.socket,
            "deadline": deadline,
            "linger": linger,
        }
        self.result: Future[dict[str, Any]] = Future()
        self.thread = threading.Thread(target=self._run, args=(request,), daemon=True)
        self.thread.start()
        until = time.monotonic() + 10
        while time.monotonic() < until:
            status = self.ctl("status")
            if status.get("ports"):
                self.port = int(status["ports"]["backend"])
                return
            time.sleep(0.02)
        raise AssertionError("the in-process proxy did not start")

    def _run(self, request: dict[str, Any]) -> None:
        try:
            self.result.set_result(asyncio.run(holdproxy.serve(request)))
        except BaseException as exc:  # surfaced by the test that waits for it
            self.result.set_exception(exc)

    def ctl(self, what: str, **args: Any) -> dict[str, Any]:
        answer: dict[str, Any] = hs.op_ask_socket(
            {"path": self.socket, "message": {"cmd": what, **args}}
        )["answer"]
        return answer


def _send_later(pool: ThreadPoolExecutor, port: int, n: int) -> list[Future[httpx.Response]]:
    def one(i: int) -> httpx.Response:
        return httpx.post(f"http://127.0.0.1:{port}/api/projects/{i}", content=f"w{i}", timeout=30)

    return [pool.submit(one, i) for i in range(n)]


def _wait_for(check: Any, seconds: float = 10.0) -> None:
    until = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < until, "condition not reached in time"
        time.sleep(0.02)


def test_held_requests_wait_then_reach_the_release_with_their_bodies(
    tmp_path: Path, release: int
) -> None:
    proxy = InProcess(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        futures = _send_later(pool, proxy.port, 6)
        _wait_for(lambda: proxy.ctl("status")["waiting"] == 6)
        time.sleep(0.5)
        assert not any(f.done() for f in futures)  # queued, not failed
        # slipway's probe is answered at once, and says where traffic stands
        probe = httpx.get(
            f"http://127.0.0.1:{proxy.port}/health", headers={"X-Slipway-Probe": "1"}, timeout=2
        )
        assert (probe.status_code, probe.headers["X-Slipway-Color"]) == (204, "hold")
        answer = proxy.ctl("release", ports={"backend": release})
        responses = [f.result(timeout=10) for f in futures]
    assert answer["state"] == "released" and answer["released"] == 6
    assert answer["longest_wait"] >= 0.5
    assert [r.status_code for r in responses] == [200] * 6
    assert [r.json() for r in responses] == [
        {"path": f"/api/projects/{i}", "body": f"w{i}"} for i in range(6)
    ]
    assert all(r.headers["X-Slipway-Color"] == "green" for r in responses)
    # after the release, a new connection is sent on at once
    assert httpx.get(f"http://127.0.0.1:{proxy.port}/late", timeout=5).json()["path"] == "/late"
    stopped = proxy.ctl("stop")
    assert stopped["listening"] is False and stopped["state"] == "released"
    ended = proxy.result.result(timeout=10)
    assert ended["accepted"] == 7 and ended["probes"] == 1 and ended["failed"] == 0


def test_abort_answers_held_requests_503_with_retry_after(tmp_path: Path, release: int) -> None:
    proxy = InProcess(tmp_path)
    with ThreadPoolExecutor(4) as pool:
        futures = _send_later(pool, proxy.port, 2)
        _wait_for(lambda: proxy.ctl("status")["waiting"] == 2)
        aborted = proxy.ctl("abort", why="nothing serves")
        responses = [f.result(timeout=10) for f in futures]
    assert [r.status_code for r in responses] == [503, 503]
    assert responses[0].headers["Retry-After"] == "5"
    assert "retry shortly" in responses[0].text
    assert aborted["state"] == "aborted" and aborted["why"] == "nothing serves"
    ended = proxy.result.result(timeout=10)
    assert ended["failed"] == 2 and ended["released"] == 0
    assert not Path(proxy.socket).exists()


def test_release_needs_every_process_port_and_unknown_commands_are_errors(
    tmp_path: Path, release: int
) -> None:
    proxy = InProcess(tmp_path)
    assert "no target port for: backend" in proxy.ctl("release", ports={})["error"]
    assert "unknown command 'nap'" in proxy.ctl("nap")["error"]
    assert proxy.ctl("status")["state"] == "holding"
    assert proxy.ctl("release", ports={"backend": release})["state"] == "released"
    again = proxy.ctl("release", ports={"backend": release})
    assert "cannot release: the holder is released" in again["error"]
    proxy.ctl("stop")
    proxy.result.result(timeout=10)


def test_the_proxy_gives_up_by_itself_at_its_deadline(tmp_path: Path) -> None:
    """If slipway never comes back (its SSH connection died), nobody waits forever."""
    proxy = InProcess(tmp_path, deadline=1.0)
    started = time.monotonic()
    response = httpx.get(f"http://127.0.0.1:{proxy.port}/x", timeout=10)
    assert response.status_code == 503
    assert 0.5 <= time.monotonic() - started < 5
    ended = proxy.result.result(timeout=10)
    assert ended["state"] == "aborted" and "deadline of 1s" in ended["why"]


def test_a_release_that_does_not_answer_gets_503_not_a_hang(tmp_path: Path) -> None:
    proxy = InProcess(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, not listening: connection refused
        with ThreadPoolExecutor(2) as pool:
            futures = _send_later(pool, proxy.port, 1)
            _wait_for(lambda: proxy.ctl("status")["waiting"] == 1)
            proxy.ctl("release", ports={"backend": dead})
            assert futures[0].result(timeout=10).status_code == 503
    proxy.ctl("stop")
    assert proxy.result.result(timeout=10)["failed"] == 1


def test_a_slow_request_head_is_kept_whole(tmp_path: Path, release: int) -> None:
    """Bytes sent before the release, in pieces, reach the release in order."""
    proxy = InProcess(tmp_path)
    with socket.create_connection(("127.0.0.1", proxy.port)) as conn:
        conn.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        conn.sendall(b"Content-Length: 3\r\nConnection: close\r\n\r\nabc")
        _wait_for(lambda: proxy.ctl("status")["waiting"] == 1)
        proxy.ctl("release", ports={"backend": release})
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1]) == {"path": "/slow", "body": "abc"}
    proxy.ctl("stop")
    proxy.result.result(timeout=10)


def test_detached_on_the_host_as_a_deploy_starts_it(tmp_path: Path, release: int) -> None:
    """HoldingProxy runs the proxy with setsid like a deploy does, and steers it."""
    transport = LocalTransport()
    attach_agent(transport, str(tmp_path / "root"))
    proxy = HoldingProxy(
        transport, str(tmp_path / "h.sock"), str(tmp_path / "h.log"), str(tmp_path / "scripts")
    )
    ports = proxy.start(["backend"], deadline=30)
    with ThreadPoolExecutor(4) as pool:
        futures = _send_later(pool, ports["backend"], 3)
        _wait_for(lambda: proxy.command("status")["waiting"] == 3)
        result = proxy.release({"backend": release})
        assert [f.result(timeout=10).status_code for f in futures] == [200] * 3
    assert result.state == "released" and result.held == 3
    assert result.summary().startswith("3 held requests released, longest wait ")
    _wait_for(lambda: proxy.command("status").get("state") == "gone")
    assert "nothing is listening at" in proxy.command("status")["error"]
    log = (tmp_path / "h.log").read_text()
    assert '"holder ended"' in log
    gone = proxy.abort("late")
    assert gone.state == "gone" and "nothing is listening" in gone.summary()
    (script,) = (tmp_path / "scripts").glob("holdproxy-*.py")  # uploaded, not in argv
    assert script.read_text() == proxy_script() and script.stat().st_mode & 0o777 == 0o600
    transport.close()


def test_the_proxy_script_is_the_module_sent_to_hosts() -> None:
    assert proxy_script() == Path(holdproxy.__file__).read_text()


def test_a_control_socket_path_too_long_for_unix_is_refused_with_the_way_out() -> None:
    long_path = "/srv/" + "deep/" * 25 + "hold.sock"
    with pytest.raises(RouterError) as info:
        HoldingProxy(LocalTransport(), long_path, "/tmp/log", "/tmp")
    assert f"is {len(long_path)} bytes, over the 107 a Unix socket allows" in str(info.value)
    assert "shorter deploy root" in (info.value.hint or "")
