"""Health checks against real local servers, and the gate's consecutive-pass rule."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slipway.config.model import HealthConfig, HealthLevel, HttpCheck, WebSocketCheck
from slipway.health import CheckResult, build_checks, wait_healthy
from slipway.health.checks import http_check, websocket_check


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {
            "/ok": (200, json.dumps({"status": "ok"})),
            "/bad": (500, "{}"),
            "/text": (200, "<h1 id=app-marker>hi</h1>"),
            "/wrong": (200, json.dumps({"status": "degraded"})),
        }
        code, body = routes.get(self.path, (404, "no"))
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def check(port: int, **kw) -> CheckResult:
    return http_check(HttpCheck(name="c", **kw), lambda _: port, 2.0)()


def test_http_check_outcomes(port: int):
    assert check(port, path="/ok", expect_json={"status": "ok"}).ok
    bad = check(port, path="/bad")
    assert not bad.ok and bad.error == "/bad: status 500, expected 200"
    wrong = check(port, path="/wrong", expect_json={"status": "ok"})
    assert wrong.error == "/wrong: status='degraded', expected 'ok'"
    assert check(port, path="/text", expect_text="app-marker").ok
    assert check(port, path="/text", expect_text="nope").error == "/text: body lacks 'nope'"
    assert check(port, path="/text", expect_json={"a": 1}).error == "/text: body is not JSON"
    assert check(port, path="/missing", expect_status=404).ok


def test_http_check_connection_refused():
    from support import free_port

    result = check(free_port(), path="/ok")
    assert not result.ok and "ConnectError" in (result.error or "")


def test_websocket_check_against_nothing_fails_with_reason():
    from support import free_port

    port = free_port()
    result = websocket_check(WebSocketCheck(), lambda _: port, 1.0)()
    assert not result.ok and result.error and result.error.startswith("/ws:")


def test_build_checks_by_level():
    health = HealthConfig(
        basic=[
            HttpCheck(name="api", path="/health"),
            HttpCheck(name="fe", process="frontend", path="/"),
        ],
        comprehensive=[HttpCheck(name="api", path="/health")],
        websocket=WebSocketCheck(),
    )
    assert build_checks(health, HealthLevel.NONE, lambda _: 1, {"backend"}) == []
    assert len(build_checks(health, HealthLevel.BASIC, lambda _: 1, {"backend"})) == 1
    assert len(build_checks(health, HealthLevel.BASIC, lambda _: 1, {"backend", "frontend"})) == 2
    assert len(build_checks(health, HealthLevel.COMPREHENSIVE, lambda _: 1, {"backend"})) == 2


def scripted(outcomes: list[bool]):
    it = iter(outcomes)

    def run() -> CheckResult:
        ok = next(it)
        return CheckResult("s", ok, 1.0, None if ok else "down")

    return run


def test_gate_needs_consecutive_passes():
    report = wait_healthy(
        [scripted([True, False, True, True, True])],
        passes=3,
        interval=0.01,
        deadline=5,
        sleep=lambda _: None,
    )
    assert report.ok and report.rounds == 5 and report.streak == 3
    assert report.summary().startswith("healthy: 3 passes in a row")


def test_gate_one_lucky_pass_is_not_health():
    report = wait_healthy(
        [scripted([True] + [False] * 100)],
        passes=2,
        interval=0.01,
        deadline=0.2,
        sleep=lambda s: __import__("time").sleep(s),
    )
    assert not report.ok
    assert "not healthy within 0.2s" in report.summary() and report.timed_out
    assert "s: down" in report.summary()


def test_gate_abort_stops_early():
    report = wait_healthy(
        [scripted([False] * 10)],
        passes=1,
        interval=0.01,
        deadline=60,
        abort=lambda: "process x is errored",
        sleep=lambda _: None,
    )
    assert not report.ok and report.rounds == 0 and report.reason == "process x is errored"
    assert not report.timed_out  # aborted, not out of time


def test_gate_waits_for_the_ports_before_its_first_round():
    """No round runs (and no interval is slept) while the ports refuse connections."""
    looks = iter([False, False, False, True])
    slept: list[float] = []
    ran: list[int] = []

    def check() -> CheckResult:
        ran.append(1)
        return CheckResult("s", True, 1.0, None)

    report = wait_healthy(
        [check], passes=2, interval=1.0, deadline=60, ready=lambda: next(looks), sleep=slept.append
    )
    assert report.ok and report.rounds == 2 and len(ran) == 2
    assert slept == [0.05, 0.05, 0.05, 1.0]  # three 50 ms looks, then one interval
    assert report.first_pass is not None and "first pass at" in report.summary()


def test_gate_ports_that_never_accept_fail_by_the_deadline_or_abort():
    report = wait_healthy(
        [scripted([True] * 10)],
        passes=1,
        interval=0.01,
        deadline=0.2,
        ready=lambda: False,
        sleep=lambda s: __import__("time").sleep(s),
    )
    assert not report.ok and report.rounds == 0
    assert report.reason == "not healthy within 0.2s (its ports never accepted a connection)"
    aborted = wait_healthy(
        [scripted([True])],
        passes=1,
        interval=0.01,
        deadline=60,
        ready=lambda: False,
        abort=lambda: "process x is errored",
        sleep=lambda _: None,
    )
    assert not aborted.ok and aborted.reason == "process x is errored"


def test_processes_problem_spots_offline_apps_and_restart_loops():
    from slipway.health.host import processes_check, processes_problem
    from slipway.processes.base import ProcessState

    now = 1_000_000.0
    healthy = {
        "app-backend": ProcessState("app-backend", "online", 10, 0, now - 5),
        # Restarted twice last week: cumulative restarts alone are not a loop.
        "app-frontend": ProcessState("app-frontend", "online", 11, 2, now - 7 * 86400),
    }
    assert processes_problem(healthy, now) is None
    looping = {**healthy, "app-backend": ProcessState("app-backend", "online", 12, 3, now - 4)}
    assert processes_problem(looping, now) == (
        "app-backend is in a restart loop (3 restarts, last 4s ago)"
    )
    stopped = {**healthy, "app-frontend": ProcessState("app-frontend", "errored", None, 0)}
    assert processes_problem(stopped, now) == "app-frontend is errored"

    def broken() -> dict:
        raise RuntimeError("pm2 not found")

    result = processes_check(broken)()
    assert not result.ok and result.error == "RuntimeError: pm2 not found"


def test_disk_problem_names_the_path_and_figures():
    from slipway.health.host import disk_problem

    disks = {
        "/srv/app": {"free_ratio": 0.5, "free": 512 << 20, "total": 1024 << 20},
        "/backups": {"free_ratio": 0.04, "free": 40 << 20, "total": 1000 << 20},
    }
    assert disk_problem(disks, 10) == "/backups: 4.0% free, below 10% (40 MiB of 1000 MiB)"
    assert disk_problem(disks, 3) is None


def test_sqlite_check_passes_or_reports():
    from slipway.health.host import sqlite_check

    assert sqlite_check("sqlite", lambda: [1])().ok

    def unreadable() -> None:
        raise OSError("unable to open database file")

    failed = sqlite_check("sqlite", unreadable)()
    assert failed.name == "sqlite" and failed.error == "OSError: unable to open database file"
