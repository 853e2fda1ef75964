"""Blue-green deploys on this machine, under load: real Traefik, PM2, app and SQLite.

Tests share one environment and run in order, each leaving a healthy release live.
A steady load (keep-alive and ``Connection: close`` GETs, POSTs writing to the database,
open WebSockets) runs on the public port through each deploy; a blue-green phase must
lose no request at all.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apprepo import make_repo, write_config, write_env_file
from loadgen import Load
from support import TOOLS_BIN, free_port, require_binary, run_cli

from slipway.config import load_config
from slipway.deploy import bluegreen
from slipway.deploy.engine import Deployer, StepEvent
from slipway.deploy.rollback import manual_rollback
from slipway.errors import DeployFailed, HealthCheckFailed, SlipwayError
from slipway.routers.base import COLOR_HEADER
from slipway.state import records
from slipway.transports.local import LocalTransport

pytestmark = pytest.mark.integration


class Env:
    def __init__(
        self, tmp: Path, router: str = "traefik", standby: float = 300, watch: float = 4
    ) -> None:
        self.repo = make_repo(tmp / "repo")
        self.root = tmp / "srv"
        self.blue = {"backend": free_port(), "frontend": free_port()}
        self.green = {"backend": free_port(), "frontend": free_port()}
        table = f"""
[environments.testing.blue_green]
router = "{router}"
api_port = {free_port()}
blue = {{ backend = {self.blue['backend']}, frontend = {self.blue['frontend']} }}
green = {{ backend = {self.green['backend']}, frontend = {self.green['frontend']} }}
standby_seconds = {standby}
watch_seconds = {watch}
switch_timeout_seconds = 5
"""
        self.config_path = write_config(
            self.repo, self.root, health="comprehensive", strategy="blue-green", blue_green=table
        )
        self.loaded = load_config(self.config_path)
        self.env = self.loaded.config.environment("testing")
        # late-fail fails once this file exists: a test creates it when the switch is
        # confirmed, so the failure lands in the watch however loaded the machine is.
        self.late_fail_flag = self.root / "late-fail-now"
        write_env_file(
            self.root,
            f"API_TOKEN=tok-bg-secret-777\nCODEFRAME_MINI_LATE_FAIL_FILE={self.late_fail_flag}\n",
        )
        self.events: list[StepEvent] = []

    def deployer(self) -> Deployer:
        return Deployer(
            self.loaded, "testing", LocalTransport(), emit=self.events.append, actor="tester"
        )

    @property
    def port(self) -> int:
        return self.env.ports.backend

    def public(self, path: str = "/health") -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def colors(self) -> dict:
        return self.deployer().read_colors()

    def pm2(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PM2_HOME": str(self.root / "pm2")}
        return subprocess.run(
            [str(TOOLS_BIN / "pm2"), *args], env=env, capture_output=True, text=True, check=False
        )

    def online(self) -> set[str]:
        listed = json.loads(self.pm2("jlist").stdout.splitlines()[-1])
        return {p["name"] for p in listed if p["pm2_env"]["status"] == "online"}


def assert_no_failures(load: Load, phase: str) -> None:
    figures = load.phase_summaries()[phase]
    assert figures["requests"] > 50, figures
    assert figures["failed"] == 0, figures
    assert figures["ws"]["abnormal"] == 0, figures


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_binary("pm2", path=str(TOOLS_BIN))
    require_binary("traefik", path=str(Path(sys.executable).parent))
    e = Env(tmp_path_factory.mktemp("bluegreen"))
    # An unrelated app in the same PM2 daemon: no deploy, switch or rollback may touch it.
    sleeper = e.root / "unrelated.sh"
    e.root.mkdir(parents=True, exist_ok=True)
    sleeper.write_text("#!/bin/sh\nexec sleep 3600\n")
    sleeper.chmod(0o755)
    e.pm2("start", str(sleeper), "--name", "unrelated-service")
    yield e
    e.pm2("kill")


def test_first_deploy_starts_blue_and_the_router(env: Env) -> None:
    outcome = env.deployer().deploy("v1")
    assert outcome.status == "succeeded"
    response = env.public()
    assert response.json()["variant"] == "v1"
    assert response.headers[COLOR_HEADER] == "blue"
    colors = env.colors()
    assert colors["live"]["color"] == "blue" and colors["standby"] is None
    steps = [s["step"] for s in outcome.steps]
    assert steps[-5:] == ["start", "health", "switch", "watch", "promote"]
    assert {"codeframe-mini-testing-backend-blue", "codeframe-mini-testing-router"} <= env.online()


def test_deploy_with_migration_under_load_loses_nothing(env: Env) -> None:
    with Load(env.port) as load:
        time.sleep(1.0)
        with load.phase("deploy v2"):
            outcome = env.deployer().deploy("v2")
        time.sleep(1.0)
    assert outcome.status == "succeeded"
    assert_no_failures(load, "deploy v2")
    response = env.public()
    assert response.json()["variant"] == "v2"
    assert response.headers[COLOR_HEADER] == "green"
    colors = env.colors()
    assert colors["live"]["color"] == "green"
    assert colors["standby"]["color"] == "blue"  # kept warm for an instant rollback
    assert "codeframe-mini-testing-backend-blue" in env.online()
    assert "unrelated-service" in env.online()
    db = httpx.get(f"http://127.0.0.1:{env.port}/api/health/db", timeout=5).json()
    assert db["schema_version"] == 2


@pytest.mark.parametrize("variant", ["crash", "slow"])
def test_a_release_that_cannot_start_on_a_copy_is_stopped_before_anything_live(
    env: Env, variant: str
) -> None:
    """The rehearsal starts the release's backend on a copy of the database: one that
    exits or never answers fails the deploy there, with its output, and the colours and
    the warm standby are as they were."""
    colors = env.colors()
    with (
        Load(env.port, websockets=5) as load,
        load.phase("broken"),
        pytest.raises(DeployFailed) as failed,
    ):
        env.deployer().deploy(f"broken/{variant}")
    assert failed.value.step == "rehearse" and failed.value.rolled_back
    assert_no_failures(load, "broken")
    assert env.colors() == colors
    if variant == "crash":
        assert "exited (code 1) before it answered" in str(failed.value)
        assert "crashing at start (variant crash)" in str(failed.value)  # its own output
    else:
        assert "did not answer within" in str(failed.value)
    assert f"codeframe-mini-testing-backend-{colors['standby']['color']}" in env.online()


@pytest.mark.parametrize("variant", ["health500", "dbfail", "ws-refused"])
def test_broken_release_never_gets_public_traffic(env: Env, variant: str) -> None:
    before = env.colors()["live"]
    standby_before = env.colors()["standby"]
    variant_before = env.public().json()["variant"]
    with (
        Load(env.port, websockets=5) as load,
        load.phase("broken"),
        pytest.raises(DeployFailed) as failed,
    ):
        env.deployer().deploy(f"broken/{variant}")
    assert failed.value.step == "health" and failed.value.rolled_back
    assert_no_failures(load, "broken")
    assert env.colors()["live"] == before
    response = env.public()
    assert response.headers[COLOR_HEADER] == before["color"]
    assert response.json()["variant"] == variant_before
    # The broken release took the warm standby's colour; the standby is warm again.
    assert standby_before is not None
    standby = env.colors()["standby"]
    assert standby["release"] == standby_before["release"]
    assert standby["color"] == bluegreen.other(before["color"])
    assert f"codeframe-mini-testing-backend-{standby['color']}" in env.online()
    assert f"warm again on {standby['color']}" in (failed.value.hint or "")


def test_failure_after_the_switch_switches_straight_back(env: Env) -> None:
    """late-fail passes the gate, takes traffic, then /health answers 500: the watch
    catches it and the old colour, still running, gets the traffic back."""
    before = env.colors()["live"]
    variant = env.public().json()["variant"]

    def fail_once_switched(event: StepEvent) -> None:
        env.events.append(event)
        if (event.step, event.status) == ("switch", "ok"):
            env.late_fail_flag.touch()

    d = Deployer(env.loaded, "testing", LocalTransport(), emit=fail_once_switched, actor="tester")
    try:
        with pytest.raises(DeployFailed) as failed:
            d.deploy("broken/late-fail")
    finally:
        env.late_fail_flag.unlink(missing_ok=True)
    assert failed.value.step == "watch", failed.value
    assert failed.value.rolled_back
    assert "traffic switched back" in (failed.value.hint or "")
    assert env.colors()["live"] == before
    assert env.public().headers[COLOR_HEADER] == before["color"]
    assert env.public().json()["variant"] == variant
    # The incident report names the step, the error and the rollback, with a timeline.
    path = Path((failed.value.hint or "").split("incident report: ")[1].split(";")[0])
    report = path.read_text()
    assert report.startswith("# Incident: failed deploy in testing (previous release serving)")
    assert "- **Failed step:** watch" in report
    assert "| watch |" in report and "**failed**" in report
    assert "traffic switched back" in report
    assert "tok-bg-secret-777" not in report
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    events = records.audit_log(LocalTransport(), env.deployer().layout, 20)
    switches = [json.loads(e["detail"]) for e in events if e["event"] == "traffic.switched"]
    assert switches[0]["to"] == before["color"]  # newest first: the switch back


def test_instant_rollback_to_the_warm_colour(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    # A fresh good deploy, so the previous release is warm on the other colour.
    env.deployer().deploy("v1")
    live = env.colors()["live"]
    standby = env.colors()["standby"]
    assert standby is not None
    warm_pid = env.pm2("pid", f"codeframe-mini-testing-backend-{standby['color']}").stdout.strip()
    assert warm_pid not in ("", "0")
    with Load(env.port) as load:
        time.sleep(0.5)
        with load.phase("rollback"):
            code, out, err = run_cli(
                ["--config", str(env.config_path), "rollback", "testing", "--json"], capsys
            )
        time.sleep(0.5)
    assert code == 0, err
    report = json.loads(out.splitlines()[-1])
    assert report["release"] == standby["release"]
    assert "switched to the warm" in report["detail"]
    # Confirmed within the configured deadline; how fast it is lives in the benchmark
    # (benchmarks/zero_downtime.py), not in a timed assertion on a shared machine.
    switch_seconds = float(report["detail"].split(" in ")[1].split("s")[0])
    assert 0 < switch_seconds <= env.env.blue_green.switch_timeout_seconds
    warm_name = f"codeframe-mini-testing-backend-{standby['color']}"
    assert env.pm2("pid", warm_name).stdout.strip() == warm_pid  # switched to, not restarted
    assert_no_failures(load, "rollback")
    assert env.colors()["live"]["color"] == standby["color"]
    assert env.public().headers[COLOR_HEADER] == standby["color"]
    # The colour left behind drains in a job on the host once the command returned:
    # named as draining meanwhile, never a target for the next instant rollback.
    left = env.colors()["standby"]
    if left is not None:
        assert left["draining"] and left["color"] == live["color"]
    old_name = f"codeframe-mini-testing-backend-{live['color']}"
    until = time.monotonic() + 30
    while (old_name in env.online() or env.colors()["standby"]) and time.monotonic() < until:
        time.sleep(0.2)
    assert old_name not in env.online() and env.colors()["standby"] is None
    events = [a["event"] for a in records.audit_log(LocalTransport(), env.deployer().layout)]
    assert events[:3] == ["standby.retired", "incident.written", "rollback.succeeded"]


def test_standby_drains_in_flight_requests_and_closes_websockets_1001(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.deployer().deploy("v2")
    standby = env.colors()["standby"]
    code, out, _ = run_cli(["--config", str(env.config_path), "status", "testing"], capsys)
    assert code == 0
    assert f"warm standby: {standby['color']} ({standby['release']})" in out
    port = env.blue["backend"] if standby["color"] == "blue" else env.green["backend"]
    slow: dict[str, int] = {}

    def slow_request() -> None:
        response = httpx.get(f"http://127.0.0.1:{port}/api/work?ms=2500", timeout=20)
        slow["status"] = response.status_code

    with Load(port, keepalive=0, close=0, posts=0, websockets=3) as load:
        time.sleep(1.0)
        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(0.3)
        code, out, _ = run_cli(
            ["--config", str(env.config_path), "standby", "testing", "--stop"], capsys
        )
        assert (code, out.strip()) == (0, f"stopped the {standby['color']} standby of testing")
        thread.join()
        time.sleep(0.5)
    assert slow["status"] == 200  # finished although its colour was stopped meanwhile
    assert load.ws.closed_1001 >= 3
    assert env.colors()["standby"] is None
    assert f"codeframe-mini-testing-backend-{standby['color']}" not in env.online()


def test_scheduled_retirement_stops_the_standby(env: Env) -> None:
    env.deployer().deploy("v1")
    d = env.deployer()
    colors = env.colors()
    standby = colors["standby"]
    bluegreen.schedule_retire(d, standby["color"], standby["token"], 0.2)
    name = f"codeframe-mini-testing-backend-{standby['color']}"
    deadline = time.monotonic() + 20
    while env.colors()["standby"] is not None and time.monotonic() < deadline:
        time.sleep(0.2)  # the job stops the apps, then clears the standby
    assert env.colors()["standby"] is None
    assert name not in env.online()
    events = [a["event"] for a in records.audit_log(LocalTransport(), d.layout)]
    assert "standby.retired" in events
    assert env.public().status_code == 200
    # The job saved PM2's list as a deploy does: every app's environment, owner only.
    pm2_home = env.root / "pm2"
    dump = json.loads((pm2_home / "dump.pm2").read_text())
    assert name not in [app["name"] for app in dump]
    assert oct((pm2_home / "dump.pm2").stat().st_mode & 0o777) == "0o600"
    assert oct(pm2_home.stat().st_mode & 0o777) == "0o700"


def test_stale_retirement_job_does_nothing(env: Env) -> None:
    env.deployer().deploy("v2")
    standby = env.colors()["standby"]
    bluegreen.schedule_retire(env.deployer(), standby["color"], "not-the-token", 0.1)
    time.sleep(3)
    assert f"codeframe-mini-testing-backend-{standby['color']}" in env.online()


def test_router_killed_mid_deploy_is_restarted(env: Env) -> None:
    """PM2 restarts the router; the deploy completes (or rolls back) and the site serves."""
    killed: list[int] = []

    def on_event(event: StepEvent) -> None:
        if event.step == "health" and event.status == "start" and not killed:
            pid = int(env.pm2("pid", "codeframe-mini-testing-router").stdout.strip())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    d = Deployer(env.loaded, "testing", LocalTransport(), emit=on_event, actor="tester")
    try:
        outcome = d.deploy("v1")
        assert outcome.status == "succeeded"
        assert env.public().json()["variant"] == "v1"
    except DeployFailed as failed:
        assert failed.rolled_back
        assert env.public().json()["variant"] == "v2"
    assert killed
    new_pid = int(env.pm2("pid", "codeframe-mini-testing-router").stdout.strip())
    assert new_pid not in (0, killed[0])
    assert "unrelated-service" in env.online()


@pytest.fixture(scope="module")
def nginx_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_binary("pm2", path=str(TOOLS_BIN))
    require_binary("nginx", path="/usr/sbin:/usr/bin")
    e = Env(tmp_path_factory.mktemp("bluegreen-nginx"), router="nginx")
    yield e
    e.pm2("kill")


def test_nginx_router_switches_colours_and_loses_nothing_without_keepalive(
    nginx_env: Env,
) -> None:
    """nginx reloads on a switch: `Connection: close` clients must lose nothing; what
    keep-alive clients lose is measured by the benchmark, not hidden here."""
    assert nginx_env.deployer().deploy("v1").status == "succeeded"
    assert nginx_env.public().headers[COLOR_HEADER] == "blue"
    with Load(nginx_env.port, keepalive=0, close=3, posts=0, websockets=5) as load:
        time.sleep(0.5)
        with load.phase("deploy v2"):
            nginx_env.deployer().deploy("v2")
        time.sleep(0.5)
    assert_no_failures(load, "deploy v2")
    assert nginx_env.public().headers[COLOR_HEADER] == "green"
    assert nginx_env.public().json()["variant"] == "v2"
    with pytest.raises(DeployFailed):
        nginx_env.deployer().deploy("broken/health500")
    assert nginx_env.public().headers[COLOR_HEADER] == "green"


def test_failed_migration_restores_the_database_and_the_old_colour_serves(env: Env) -> None:
    """destructive-crash drops and recreates a table, then fails to start: the rollback
    must stop the old colour (no writer during a restore), restore, and start it again."""
    live = env.colors()["live"]
    for n in range(3):
        r = httpx.post(
            f"http://127.0.0.1:{env.port}/api/projects", json={"name": f"keep-{n}"}, timeout=5
        )
        assert r.status_code == 201
    rows_before = len(env.public("/api/projects").json())
    with pytest.raises(DeployFailed) as failed:  # no rehearsal: the failure happens live
        env.deployer().deploy("broken/destructive-crash", rehearse=False)
    assert failed.value.rolled_back
    hint = failed.value.hint or ""
    assert "database restored from" in hint and "-pre-restore-" in hint
    assert env.colors()["live"] == live
    assert env.public().headers[COLOR_HEADER] == live["color"]
    assert len(env.public("/api/projects").json()) == rows_before
    columns = [
        row[1]
        for row in sqlite3.connect(env.root / "testing" / ".codeframe" / "state.db").execute(
            "PRAGMA table_info(projects)"
        )
    ]
    assert "status" not in columns  # v3's recreated table is gone again


def test_rollback_after_the_standby_is_gone_starts_the_free_colour(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    d = env.deployer()
    bluegreen.stop_standby(d)
    live = env.colors()["live"]
    code, out, err = run_cli(
        ["--config", str(env.config_path), "rollback", "testing", "--json"], capsys
    )
    assert code == 0, err
    result = json.loads(out.splitlines()[-1])
    assert f"on {bluegreen.other(live['color'])}; switched in" in result["detail"]
    assert env.colors()["live"]["color"] == bluegreen.other(live["color"])
    assert env.public().headers[COLOR_HEADER] == bluegreen.other(live["color"])
    assert f"codeframe-mini-testing-backend-{live['color']}" not in env.online()


def test_a_restart_environment_moves_to_blue_green(tmp_path: Path) -> None:
    """The first blue-green deploy hands the public ports from the old PM2 apps to the
    router; the release before it can still be rolled back to."""
    require_binary("pm2", path=str(TOOLS_BIN))
    e = Env(tmp_path)
    try:
        restart_config = e.config_path.read_text().replace(
            'strategy = "blue-green"', 'strategy = "restart"'
        )
        restart_path = e.repo / "restart.toml"
        restart_path.write_text(restart_config)
        legacy = Deployer(load_config(restart_path), "testing", LocalTransport())
        assert legacy.deploy("v1").status == "succeeded"
        assert "codeframe-mini-testing-backend" in e.online()
        base = f"http://127.0.0.1:{e.port}"
        assert httpx.post(f"{base}/api/projects", json={"name": "p1"}, timeout=5).is_success

        # A first blue-green deploy that migrates destructively and fails: the restart
        # strategy's processes stop for the restore, then serve v1 with its rows again.
        with pytest.raises(DeployFailed) as failed:
            e.deployer().deploy("broken/destructive-crash", rehearse=False)
        assert "database restored from" in (failed.value.hint or "")
        assert [p["name"] for p in e.public("/api/projects").json()] == ["p1"]
        assert "codeframe-mini-testing-backend" in e.online()

        outcome = e.deployer().deploy("v2")
        assert outcome.status == "succeeded"
        assert "handing the public ports from PM2 apps to the router" in [
            ev.detail for ev in e.events
        ]
        assert "codeframe-mini-testing-backend" not in e.online()
        assert e.public().headers[COLOR_HEADER] == "blue"
        assert e.colors()["standby"] is None  # nothing warm: v1 ran without a colour

        manual_rollback(e.deployer())  # v1 starts on green, traffic follows
        assert e.public().json()["variant"] == "v1"
        assert e.public().headers[COLOR_HEADER] == "green"
    finally:
        e.pm2("kill")


def test_first_failure_then_no_standby_and_no_watch(tmp_path: Path) -> None:
    """A first deploy that fails leaves nothing running; with standby_seconds = 0 the old
    colour is drained as soon as the new one is live; watch_seconds = 0 skips the watch."""
    require_binary("pm2", path=str(TOOLS_BIN))
    e = Env(tmp_path, standby=0, watch=0)
    try:
        with pytest.raises(DeployFailed) as failed:
            e.deployer().deploy("broken/crash")
        assert failed.value.step == "health"
        assert "codeframe-mini-testing-backend-blue" not in e.online()
        assert e.colors()["live"] is None

        e.deployer().deploy("v1")
        e.deployer().deploy("v2")
        assert e.colors() == {"live": e.colors()["live"], "standby": None}
        assert e.colors()["live"]["color"] == "green"
        assert "codeframe-mini-testing-backend-blue" not in e.online()
        assert e.public().json()["variant"] == "v2"
    finally:
        e.pm2("kill")


def test_rollback_refusals_and_restore_db(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.deployer().deploy("v1")
    env.deployer().deploy("v2")
    d = env.deployer()
    current = d.current_release()
    with pytest.raises(SlipwayError, match="is already live"):
        manual_rollback(d, current)
    # A failed release is kept for inspection; rolling back onto it is refused by the gate.
    broken = next(
        row["release"]
        for row in records.deployments(LocalTransport(), d.layout, 50)
        if row["status"] == "rolled_back"
    )
    live = env.colors()["live"]
    with pytest.raises(HealthCheckFailed, match="is not healthy on"):
        manual_rollback(env.deployer(), broken)
    assert env.colors()["live"] == live
    assert env.public().headers[COLOR_HEADER] == live["color"]
    # --restore-db: the live database is set aside, the pre-deploy backup comes back.
    code, out, err = run_cli(
        ["--config", str(env.config_path), "rollback", "testing", "--restore-db", "--json"],
        capsys,
    )
    assert code == 0, err
    assert "database restored from" in json.loads(out.splitlines()[-1])["detail"]
    assert env.public().status_code == 200


def test_unreadable_colours_file_means_no_colour_is_known(env: Env) -> None:
    path = env.root / "testing" / ".slipway" / "colors.json"
    saved = path.read_text()
    try:
        path.write_text("{not json")
        assert env.colors() == {"live": None, "standby": None}
    finally:
        path.write_text(saved)


def test_incident_report_renders_a_timeline() -> None:
    from slipway.deploy.incident import Incident, render

    text = render(
        Incident(
            env="production",
            kind="failed deploy",
            deployment_id="abc123",
            actor="alice",
            release="20261127-deadbeef",
            previous="20261126-cafebabe",
            commit="deadbeefdeadbeef",
            failed_step="health",
            error="health gate failed: api: status 500",
            outcome="previous release serving",
            rolled_back=False,
            backup="/srv/x/backups/20261127-deadbeef-pre-deploy.db",
            steps=[{"step": "upload", "seconds": 0.5, "ok": True, "at": 0.0}],
            at=0.0,
        )
    )
    assert text.splitlines()[0] == "# Incident: failed deploy in production (ROLLBACK INCOMPLETE)"
    assert "- **When:** 1970-01-01 00:00:00 UTC" in text
    assert "| 00:00:00 | upload | 0.5 | ok |" in text
    assert "health gate failed: api: status 500" in text


def test_backup_restore_in_blue_green(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A restore holds requests and stops both colours (no writer may hold the database), then brings the
    live colour back and confirms the router on it; a damaged backup is refused first."""
    cli = ["--config", str(env.config_path), "backup", "testing"]
    code, out, err = run_cli([*cli, "create", "--json"], capsys)
    assert code == 0, err
    good = json.loads(out)
    _, out, _ = run_cli([*cli, "create", "--json"], capsys)
    damaged = json.loads(out)
    path = Path(env.deployer().backups.path_of(damaged))
    path.write_bytes(path.read_bytes()[:4096])
    live = env.colors()["live"]

    code, _, err = run_cli([*cli, "restore", damaged["id"]], capsys)
    assert code == 1 and "failed verification" in err and "nothing was stopped" in err
    code, out, err = run_cli([*cli, "restore", good["id"]], capsys)
    assert code == 0, err
    assert "database restored from" in out
    assert env.colors()["live"] == live
    assert env.public().headers[COLOR_HEADER] == live["color"]
    events = [a["event"] for a in records.audit_log(LocalTransport(), env.deployer().layout, 5)]
    assert "backup.restored" in events


def test_rollback_targets_are_checked_before_anything_stops(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo, a path, an unknown tag or an ambiguous prefix exits 2 naming the kept
    releases, and nothing stops; a tag is resolved to its newest kept release."""
    env.deployer().deploy("v2")
    live = env.colors()["live"]
    pids = {name: env.pm2("pid", name).stdout.strip() for name in env.online()}
    outside = env.root.parent / "outside"
    config = ["--config", str(env.config_path), "rollback", "testing", "--to"]
    for bad in (live["release"][:-1] + "x", "../../../outside", "v9.9.9", "2026", "ab\x01"):
        code, _, err = run_cli([*config, bad], capsys)
        assert code == 2, (bad, err)
        assert "releases kept:" in err or "give more of the release id" in err, err
        assert "Traceback" not in err
    assert env.colors()["live"] == live
    assert {name: env.pm2("pid", name).stdout.strip() for name in env.online()} == pids
    assert not outside.exists() and not list(env.root.parent.glob("outside*"))
    events = [a["event"] for a in records.audit_log(LocalTransport(), env.deployer().layout, 5)]
    assert "rollback.started" not in events  # bad input leaves no trace but the refusal
    code, out, err = run_cli([*config, "v1", "--json"], capsys)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    v1_releases = sorted(
        row["release"]
        for row in records.deployments(LocalTransport(), env.deployer().layout, 100)
        if row["ref"] == "v1" and row["status"] == "succeeded"
    )
    assert lines[-1]["release"] == v1_releases[-1]
    assert any("(tag or branch) is release" in str(e.get("detail")) for e in lines)
    assert env.public().json()["variant"] == "v1"


def test_the_dashboard_shows_the_live_colour_and_the_standby(env: Env) -> None:
    """It once showed production's colour as null (hard-coded)."""
    from slipway.dashboard.data import overview

    for _ in range(5):  # a retirement job may clear the standby meanwhile: read again
        colors = env.colors()
        data = overview(env.loaded)
        if env.colors() == colors:
            break
    testing = next(e for e in data["environments"] if e["name"] == "testing")
    assert testing["colour"] == colors["live"]["color"]
    standby = colors["standby"]
    if standby is None:
        assert testing["standby"] is None
    else:
        assert testing["standby"]["colour"] == standby["color"]
        assert testing["standby"]["release"] == standby["release"]
    assert testing["health"]["state"] == "healthy"
