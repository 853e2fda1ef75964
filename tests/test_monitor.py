"""slipway monitor and comprehensive health on a real blue-green environment: Traefik
(its JSON access log is the traffic source), PM2, the example app, real SQLite, real
WebSocket probes. Each alert is driven by a real cause, and must fire once and resolve
once, in the audit log and in the notifications.

Tests share one environment and run in order.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apprepo import make_repo, write_config, write_env_file
from fakehooks import Hooks, fake_webhooks
from support import TOOLS_BIN, free_port, require_binary, run_cli, stop_pm2, wait_http

from slipway.config import load_config
from slipway.deploy import bluegreen
from slipway.deploy.engine import Deployer
from slipway.monitor.prometheus import serve
from slipway.monitor.run import Monitor, Report
from slipway.state import records
from slipway.transports.local import LocalTransport

pytestmark = pytest.mark.integration


class Env:
    def __init__(self, tmp: Path, hooks: Hooks, disk: Path | None) -> None:
        self.repo = make_repo(tmp / "repo")
        self.root = tmp / "srv"
        self.disk = disk
        self.backups = (disk or tmp) / "backups"
        table = f"""
[environments.testing.blue_green]
api_port = {free_port()}
blue = {{ backend = {free_port()}, frontend = {free_port()} }}
green = {{ backend = {free_port()}, frontend = {free_port()} }}
standby_seconds = 0
watch_seconds = 1

[[notify]]
kind = "slack"
url_env = "SLIPWAY_MON_SLACK"
events = ["alert"]
"""
        self.config_path = write_config(
            self.repo,
            self.root,
            health="comprehensive",
            strategy="blue-green",
            blue_green=table,
            backups=f'{{ enabled = true, keep_last = 2, path = "{self.backups}" }}',
        )
        self.loaded = load_config(self.config_path)
        self.env = self.loaded.config.environment("testing")
        write_env_file(self.root, "API_TOKEN=tok-monitor-31337\n")
        self.hooks = hooks
        os.environ["SLIPWAY_MON_SLACK"] = hooks.url("/slack/alerts")

    def deployer(self) -> Deployer:
        return Deployer(self.loaded, "testing", LocalTransport(), actor="monitor-test")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.env.ports.backend}{path}", timeout=10)

    @property
    def db(self) -> Path:
        return self.root / "testing" / ".codeframe" / "state.db"

    def pm2(self, *args: str) -> None:
        subprocess.run(
            [str(TOOLS_BIN / "pm2"), *args],
            env={**os.environ, "PM2_HOME": str(self.root / "pm2")},
            capture_output=True,
            check=True,
        )


def mount_small_disk(path: Path) -> Path | None:
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return None
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return path if done.returncode == 0 else None


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_binary("pm2", path=str(TOOLS_BIN))
    require_binary("traefik")
    tmp = tmp_path_factory.mktemp("monitor")
    disk = mount_small_disk(tmp / "disk")
    with fake_webhooks() as hooks:
        e = Env(tmp, hooks, disk)
        try:
            e.deployer().deploy("v1")
            yield e
        finally:
            stop_pm2(e.root / "pm2")
            os.environ.pop("SLIPWAY_MON_SLACK", None)
            if disk is not None:
                subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.fixture(scope="module")
def monitor(env: Env) -> Iterator[Monitor]:
    m = Monitor(env.deployer())
    yield m
    m.close()


def traffic(env: Env, path: str, count: int, parallel: bool = False) -> list[int]:
    codes: list[int] = []
    if not parallel:
        return [env.get(path).status_code for _ in range(count)]
    threads = [
        threading.Thread(target=lambda: codes.append(env.get(path).status_code))
        for _ in range(count)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def changes(report: Report) -> set[tuple[str, bool]]:
    return {(t.name, t.firing) for t in report.changes}


def test_a_healthy_environment_is_quiet(env: Env, monitor: Monitor):
    assert set(traffic(env, "/health", 20)) == {200}
    report = monitor.step()
    s = report.sample
    assert report.firing == [] and report.changes == []
    assert s.source == "traefik access log" and s.requests >= 20 and s.errors == 0
    assert s.p95_seconds is not None and s.p95_seconds < 0.5
    assert (s.ws_probes, s.ws_drops) == (2, 0)
    assert (s.db_probes, s.db_failures) == (2, 0)
    assert str(env.backups) in s.disks
    names = {c.name for c in s.checks}
    assert names == {"api", "database", "agents", "websocket", "processes", "disk"}
    assert all(c.ok for c in s.checks), s.checks
    print("comprehensive check latencies (ms):", {c.name: c.latency_ms for c in s.checks})


def test_slow_responses_fire_p95_then_resolve(env: Env, monitor: Monitor):
    assert set(traffic(env, "/api/work?ms=2300", 6, parallel=True)) == {200}
    fired = monitor.step()
    assert changes(fired) == {("p95", True)}
    assert fired.sample.p95_seconds is not None and fired.sample.p95_seconds > 2
    # Only the monitor's own 3 probe requests since: too few to judge, so no resolve.
    quiet = monitor.step()
    assert quiet.changes == [] and "p95" in quiet.firing
    traffic(env, "/health", 20)
    resolved = monitor.step()
    assert changes(resolved) == {("p95", False)}


def test_errors_and_an_unreadable_database_fire_then_resolve(env: Env, monitor: Monitor):
    aside = env.db.with_name("state.db.aside")
    env.db.rename(aside)
    env.db.mkdir()  # the path now opens as nothing a database can be (even for root)
    try:
        assert set(traffic(env, "/api/projects", 20)) == {500}
        fired = monitor.step()
        assert {("error_rate", True), ("database", True)} <= changes(fired)
        direct, endpoint = fired.sample.db_errors
        assert direct.startswith("direct read-only query:") and "OperationalError" in direct
        assert endpoint == "database: /api/health/db: status 503, expected 200"
        assert fired.sample.db_failures == 2  # the direct query and the app's DB check
    finally:
        env.db.rmdir()
        aside.rename(env.db)
    assert set(traffic(env, "/api/projects", 20)) == {200}
    resolved = monitor.step()
    assert {("error_rate", False), ("database", False)} <= changes(resolved)


def test_dropped_websockets_fire_then_resolve(env: Env, monitor: Monitor):
    color = env.deployer().live_color()
    assert monitor.step().firing == []
    env.pm2("restart", f"codeframe-mini-testing-backend-{color}")
    # Wait on the colour's private port: requests through the router while it restarts
    # would be real 502s, and rightly fire the error-rate alert too.
    private = env.deployer().port("backend", color)
    wait_http(f"http://127.0.0.1:{private}/health")
    traffic(env, "/health", 10)
    fired = monitor.step()
    assert ("websocket_drops", True) in changes(fired)
    assert fired.sample.ws_drops == 2
    resolved = monitor.step()
    assert ("websocket_drops", False) in changes(resolved)


def test_a_full_disk_fires_then_resolves(env: Env, monitor: Monitor):
    if env.disk is None:
        pytest.skip("needs root to mount a small tmpfs")
    filler = env.disk / "filler"
    free = shutil.disk_usage(env.disk).free
    with filler.open("wb") as f:
        f.write(b"\0" * (free - (512 << 10)))  # leave 0.5 MB of 16 MB
    try:
        fired = monitor.step()
        assert ("disk", True) in changes(fired)
        reading = next(r for r in fired.readings if r.name == "disk")
        assert reading.shown.endswith(f"free on {env.backups}")
        health = monitor.d.checks()
        from slipway.health.gate import run_round

        disk_result = next(r for r in run_round(health) if r.name == "disk")
        assert not disk_result.ok and "below 10%" in (disk_result.error or "")
    finally:
        filler.unlink()
    assert ("disk", False) in changes(monitor.step())


def test_each_alert_was_announced_once_when_fired_and_once_when_resolved(env: Env):
    events = records.audit_log(LocalTransport(), env.deployer().layout, limit=500)
    alerts = [
        (e["event"], json.loads(e["detail"])["alert"])
        for e in events
        if e["event"].startswith("alert.")
    ]
    expected = {"p95", "error_rate", "database", "websocket_drops"}
    if env.disk is not None:
        expected.add("disk")
    for name in expected:
        assert alerts.count(("alert.fired", name)) == 1, (name, alerts)
        assert alerts.count(("alert.resolved", name)) == 1, (name, alerts)
    titles = [body["text"] for body in env.hooks.bodies("/slack/alerts")]
    for name in expected:
        assert titles.count(f"codeframe-mini: testing alert {name} FIRING") == 1, titles
        assert titles.count(f"codeframe-mini: testing alert {name} resolved") == 1, titles
    assert "tok-monitor-31337" not in json.dumps(env.hooks.bodies("/slack"))


def test_prometheus_can_scrape_the_figures(env: Env, monitor: Monitor):
    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    server = serve("127.0.0.1", port, monitor.metrics_text)
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=5).status_code == 404
    finally:
        server.shutdown()
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, s.labels.get("alert") or s.labels.get("check")): s.value
        for f in text_string_to_metric_families(response.text)
        for s in f.samples
    }
    assert samples[("slipway_monitor_samples_total", None)] == monitor.totals.samples
    assert samples[("slipway_alert_firing", "database")] == 0
    assert samples[("slipway_check_up", "api")] == 1
    assert samples[("slipway_http_requests_total", None)] >= 100


def test_cli_once_keeps_alert_state_across_runs(env: Env, capsys):
    args = ["--config", str(env.config_path), "monitor", "testing", "--once", "--json"]
    code, out, _ = run_cli(args, capsys)
    assert code == 0, out
    assert json.loads(out)["changes"] == []
    aside = env.db.with_name("state.db.aside")
    env.db.rename(aside)
    try:
        code, out, _ = run_cli(args, capsys)
        assert code == 1
        assert {"alert": "database", "state": "fired"} in [
            {k: c[k] for k in ("alert", "state")} for c in json.loads(out)["changes"]
        ]
        code, out, _ = run_cli(args, capsys)  # still failing: fired already, nothing new
        assert code == 1 and json.loads(out)["changes"] == []
    finally:
        aside.rename(env.db)
    code, out, _ = run_cli([*args[:-1]], capsys)  # human output
    assert code == 0
    assert "traffic from traefik access log" in out and "-> alert database resolved" in out


def test_health_color_checks_one_colour_on_its_private_ports(env: Env, capsys):
    live = env.deployer().live_color()
    other = bluegreen.other(live)
    base = ["--config", str(env.config_path), "health", "testing", "--json"]
    code, out, _ = run_cli([*base, "--color", live], capsys)
    (report,) = json.loads(out)
    assert code == 0 and report["color"] == live and report["ok"]
    assert {c["name"] for c in report["checks"]} >= {"api", "processes", "websocket", "disk"}
    code, out, _ = run_cli([*base, "--color", other], capsys)
    (report,) = json.loads(out)
    failed = {c["name"]: c["error"] for c in report["checks"] if not c["ok"]}
    assert code == 1
    assert "ConnectError" in failed["api"]
    assert failed["processes"] == f"codeframe-mini-testing-backend-{other} is missing"
