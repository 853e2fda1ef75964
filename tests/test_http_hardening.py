"""The dashboard's and the metrics server's defences (security review findings 7 and 8):
Host allow-list, bounded workers with a header deadline, the single-flight overview,
a Server header without the Python version, the metrics token, and clear bind errors.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from apprepo import write_config
from support import free_port, run_cli

from slipway.dashboard import server as dashboard_server
from slipway.errors import UsageError
from slipway.httpserve import WORKERS, HardenedHTTPServer, HostAllowList
from slipway.monitor.prometheus import listen
from slipway.monitor.prometheus import serve as serve_metrics


@contextmanager
def running(server: HardenedHTTPServer) -> Iterator[str]:
    """Serve in a thread; yield the base URL; stop and close afterwards."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def dashboard(data: Callable[[], dict[str, Any]] | None = None, **options: Any) -> Any:
    return dashboard_server.serve(data or (lambda: {"ok": True}), "127.0.0.1", 0, None, **options)


def config(tmp_path: Path) -> str:
    (tmp_path / "repo").mkdir()
    return str(write_config(tmp_path / "repo", tmp_path / "srv"))


# --- 1. Host allow-list -------------------------------------------------------------


def test_a_foreign_host_header_is_refused_by_the_tokenless_dashboard():
    with running(dashboard()) as url:
        port = url.rsplit(":", 1)[1]
        evil = httpx.get(f"{url}/api/overview", headers={"Host": "evil.example"}, timeout=20)
        assert evil.status_code == 421
        assert evil.headers["content-type"].startswith("text/plain")
        assert len(evil.content) < 100 and b"ok" not in evil.content
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            ok = httpx.get(f"{url}/api/overview", headers={"Host": host}, timeout=20)
            assert ok.status_code == 200 and ok.json() == {"ok": True}, host


def test_allow_host_names_are_answered_and_others_still_refused():
    with running(dashboard(allow_hosts=["dash.example"])) as url:
        ok = httpx.get(f"{url}/api/overview", headers={"Host": "dash.example"}, timeout=20)
        assert ok.status_code == 200
        evil = httpx.get(f"{url}/api/overview", headers={"Host": "evil.example"}, timeout=20)
        assert evil.status_code == 421


def test_the_metrics_server_refuses_a_foreign_host_header():
    server = serve_metrics("127.0.0.1", 0, lambda: "up 1\n")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        assert httpx.get(url, headers={"Host": "evil.example"}, timeout=20).status_code == 421
        assert httpx.get(url, timeout=20).text == "up 1\n"
    finally:
        server.shutdown()
        server.server_close()


def test_host_allow_list_rules():
    hosts = HostAllowList.build("127.0.0.1", 8765, ["proxy.example", "tls.example:443"])
    allowed = ["127.0.0.1:8765", "LOCALHOST.:8765", "[::1]:8765", "proxy.example:80"]
    allowed += ["proxy.example", "tls.example:443"]
    refused = ["localhost", "localhost:80", "evil.example:8765", "tls.example", None, ""]
    refused += ["127.0.0.1:8765:1", "[::1", "127.0.0.1:x"]
    assert [h for h in allowed if not hosts.allows(h)] == []
    assert [h for h in refused if hosts.allows(h)] == []


# --- 2. Bounded workers, header deadline ---------------------------------------------


def test_half_sent_requests_hold_no_threads_and_a_full_request_is_answered():
    baseline = threading.active_count()
    server = dashboard()
    with running(server) as url:
        port = server.server_address[1]
        partial = f"GET /api/overview HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode()
        slow: list[socket.socket] = []
        try:
            for _ in range(200):
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                sock.sendall(partial)
                slow.append(sock)
            answer = httpx.get(f"{url}/api/overview", timeout=30)
            assert answer.status_code == 200
            # The serving loop plus the pool; not one thread per connection.
            assert threading.active_count() <= baseline + WORKERS + 2
        finally:
            for sock in slow:
                sock.close()


def test_a_request_whose_headers_never_end_is_closed_after_the_deadline():
    server = dashboard(header_timeout=0.5)
    with running(server):
        sock = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=30)
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            try:
                closed = sock.recv(1) == b""
            except ConnectionResetError:
                closed = True
            assert closed  # and not the 30 s client timeout (that raises instead)


def test_no_more_handlers_run_at_once_than_workers():
    lock = threading.Lock()
    active, peak = 0, 0

    def text() -> str:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.2)
        with lock:
            active -= 1
        return "up 1\n"

    server = listen("127.0.0.1", 0, workers=3)
    server.start(text)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(lambda _: httpx.get(url, timeout=60).status_code, range(12)))
        assert codes == [200] * 12
        assert 1 <= peak <= 3
    finally:
        server.shutdown()
        server.server_close()


# --- 3. Single-flight overview -------------------------------------------------------


def counting_data(calls: list[float]) -> Callable[[], dict[str, Any]]:
    def data() -> dict[str, Any]:
        calls.append(time.monotonic())
        time.sleep(0.5)
        return {"calls": len(calls)}

    return data


def test_concurrent_overview_requests_compute_it_once():
    calls: list[float] = []
    server = dashboard(counting_data(calls), cache_seconds=60)
    with running(server) as url, ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda _: httpx.get(f"{url}/api/overview", timeout=60), range(30)))
    assert [a.status_code for a in answers] == [200] * 30
    assert len(calls) == 1
    assert {a.text for a in answers} == {'{"calls": 1}'}


def test_the_overview_is_computed_again_once_the_cache_expires():
    calls: list[float] = []
    with running(dashboard(counting_data(calls), cache_seconds=0.1)) as url:
        httpx.get(f"{url}/api/overview", timeout=30)
        time.sleep(0.3)
        assert httpx.get(f"{url}/api/overview", timeout=30).json() == {"calls": 2}
    assert dashboard_server.OVERVIEW_SECONDS == 2.0


# --- 4. Server header ----------------------------------------------------------------


def test_the_dashboard_names_no_python_version():
    with running(dashboard(allow_hosts=["x.example"])) as url:
        for path in ("/", "/api/overview", "/nope"):
            assert httpx.get(f"{url}{path}", timeout=20).headers["server"] == "slipway"
        refused = httpx.get(url, headers={"Host": "evil.example"}, timeout=20)
        assert refused.headers["server"] == "slipway"


def test_the_metrics_server_names_no_python_version():
    server = serve_metrics("127.0.0.1", 0, lambda: "up 1\n")
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        for path in ("/metrics", "/other"):
            assert httpx.get(f"{base}{path}", timeout=20).headers["server"] == "slipway"
    finally:
        server.shutdown()
        server.server_close()


# --- 5. Metrics token off loopback ---------------------------------------------------


def test_metrics_off_loopback_refuses_to_start_without_a_token():
    with pytest.raises(UsageError, match="token"):
        serve_metrics("0.0.0.0", 0, lambda: "up 1\n")


def test_metrics_off_loopback_require_the_bearer_token():
    server = serve_metrics("0.0.0.0", 0, lambda: "up 1\n", token="s3cret-token")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        missing = httpx.get(url, timeout=20)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        wrong = httpx.get(url, headers={"Authorization": "Bearer nope"}, timeout=20)
        assert wrong.status_code == 401
        right = httpx.get(url, headers={"Authorization": "Bearer s3cret-token"}, timeout=20)
        assert right.status_code == 200 and right.text == "up 1\n"
    finally:
        server.shutdown()
        server.server_close()


def test_cli_monitor_off_loopback_without_token_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SLIPWAY_METRICS_TOKEN", raising=False)
    args = ["--config", config(tmp_path), "monitor", "testing", "--once", "--no-notify"]
    args += ["--metrics-port", str(free_port()), "--metrics-bind", "0.0.0.0"]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert "Traceback" not in err and "token is required" in err


# --- 6. Clear CLI errors -------------------------------------------------------------


@contextmanager
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_cli_dashboard_port_out_of_range_exits_2(tmp_path, capsys):
    code, _, err = run_cli(["--config", config(tmp_path), "dashboard", "--port", "99999"], capsys)
    assert code == 2
    assert "Traceback" not in err and "99999" in err and "--port" in err


def test_cli_dashboard_port_in_use_exits_2(tmp_path, capsys):
    with busy_port() as port:
        args = ["--config", config(tmp_path), "dashboard", "--port", str(port)]
        code, out, err = run_cli(args, capsys)
    assert code == 2
    assert "Traceback" not in err and "dashboard on" not in out
    assert f"127.0.0.1:{port}" in err and "already in use" in err


def test_cli_monitor_metrics_port_in_use_exits_2(tmp_path, capsys):
    with busy_port() as port:
        args = ["--config", config(tmp_path), "monitor", "testing", "--once", "--no-notify"]
        code, out, err = run_cli([*args, "--metrics-port", str(port)], capsys)
    assert code == 2
    assert "Traceback" not in err and out == ""
    assert f"127.0.0.1:{port}" in err and "already in use" in err


def test_cli_monitor_negative_interval_exits_2(tmp_path, capsys):
    args = ["--config", config(tmp_path), "monitor", "testing", "--once", "--no-notify"]
    code, out, err = run_cli([*args, "--interval", "-5"], capsys)
    assert code == 2
    assert "Traceback" not in err and out == ""
    assert "--interval" in err and "-5" in err


def test_cli_dashboard_passes_allow_host_to_the_server(tmp_path, capsys, monkeypatch):
    started: list[HardenedHTTPServer] = []
    real_serve = dashboard_server.serve

    def spy(*args: Any, **kwargs: Any) -> HardenedHTTPServer:
        started.append(real_serve(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr("slipway.cli.dashboard.serve", spy)
    args = ["--config", config(tmp_path), "dashboard", "--port", "0"]
    args += ["--allow-host", "dash.example", "--allow-host", "other.example"]
    runner = threading.Thread(target=run_cli, args=(args, capsys), daemon=True)
    runner.start()
    deadline = time.monotonic() + 30
    while not started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started, "the dashboard did not start"
    server = started[0]
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/favicon.ico"
        for host, code in (("dash.example", 204), ("other.example", 204), ("evil.example", 421)):
            assert httpx.get(url, headers={"Host": host}, timeout=20).status_code == code
    finally:
        server.shutdown()
        runner.join(timeout=30)
    assert not runner.is_alive()


def test_a_shutdown_before_the_loop_starts_leaves_no_thread_behind() -> None:
    """monitor --once can stop its /metrics server before the serving thread runs."""
    import threading

    from slipway.httpserve import HardenedHandler, HardenedHTTPServer

    before = set(threading.enumerate())
    server = HardenedHTTPServer("127.0.0.1", 0, HardenedHandler, workers=4)
    server.shutdown()  # returns at once: nothing serves yet
    server.server_close()
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive()  # it saw the shutdown and never touched the socket
    assert set(threading.enumerate()) - before == set()  # and started no worker
