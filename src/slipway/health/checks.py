"""Individual checks: HTTP (status, JSON fields, body text) and WebSocket (send, expect).

A check is a callable returning a :class:`CheckResult`; it never raises. Ports are
resolved through a function so the SSH transport can hand back a tunnelled local port.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from websockets.sync.client import connect as ws_connect

from slipway import localhttp
from slipway.config.model import HealthConfig, HealthLevel, HttpCheck, WebSocketCheck


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    latency_ms: float
    error: str | None = None


Check = Callable[[], CheckResult]
PortOf = Callable[[str], int]  # "backend" / "frontend" -> local port to connect to


def named(exc: BaseException) -> str:
    """An exception as a check reports it: its type, and its message when it has one."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def http_check(spec: HttpCheck, port_of: PortOf, timeout: float) -> Check:
    def run() -> CheckResult:
        url = f"http://127.0.0.1:{port_of(spec.process)}{spec.path}"
        started = time.perf_counter()
        try:
            response = localhttp.client().get(url, timeout=timeout)
            error = _http_problem(spec, response)
        except httpx.HTTPError as exc:
            error = named(exc)
        latency = (time.perf_counter() - started) * 1000
        return CheckResult(spec.name, error is None, round(latency, 1), error)

    return run


def _http_problem(spec: HttpCheck, response: httpx.Response) -> str | None:
    if response.status_code != spec.expect_status:
        return f"{spec.path}: status {response.status_code}, expected {spec.expect_status}"
    if spec.expect_json:
        try:
            body = response.json()
        except ValueError:
            return f"{spec.path}: body is not JSON"
        for key, want in spec.expect_json.items():
            got = body.get(key) if isinstance(body, dict) else None
            if got != want:
                return f"{spec.path}: {key}={got!r}, expected {want!r}"
    if spec.expect_text is not None and spec.expect_text not in response.text:
        return f"{spec.path}: body lacks {spec.expect_text!r}"
    return None


def websocket_check(spec: WebSocketCheck, port_of: PortOf, timeout: float) -> Check:
    def run() -> CheckResult:
        url = f"ws://127.0.0.1:{port_of('backend')}{spec.path}"
        started = time.perf_counter()
        error: str | None = None
        try:
            with ws_connect(url, open_timeout=timeout, close_timeout=1) as ws:
                ws.send(spec.send)
                reply = ws.recv(timeout=timeout)
                if spec.expect_text not in str(reply):
                    error = f"{spec.path}: reply lacks {spec.expect_text!r}"
        except Exception as exc:  # any failure to talk WebSocket is the finding itself
            error = f"{spec.path}: {type(exc).__name__}: {exc}"
        latency = (time.perf_counter() - started) * 1000
        return CheckResult(spec.name, error is None, round(latency, 1), error)

    return run


def build_checks(
    health: HealthConfig, level: HealthLevel, port_of: PortOf, processes: set[str]
) -> list[Check]:
    """The checks for ``level``; checks for processes the app does not have are left out."""
    if level is HealthLevel.NONE:
        return []
    specs = health.basic if level is HealthLevel.BASIC else health.comprehensive
    checks = [
        http_check(spec, port_of, health.timeout_seconds)
        for spec in specs
        if spec.process in processes
    ]
    # The WebSocket check talks to the backend: not on a frontend-only host of a fleet.
    wants_websocket = level is HealthLevel.COMPREHENSIVE and "backend" in processes
    if wants_websocket and health.websocket is not None:
        checks.append(websocket_check(health.websocket, port_of, health.timeout_seconds))
    return checks
