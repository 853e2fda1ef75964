"""The deployer killed with SIGKILL at every step boundary, under load: the next command
recovers, nothing is lost. Real PM2, Traefik, app processes and SQLite files.

Each strategy has its own environment, with two good releases deployed first. Every
case redeploys the live release's commit (a new release with the same schema, so no
restore is due and every acknowledged write must stay in the live database), kills the
``slipway deploy`` process when its ``--json`` events reach a step boundary, and checks
``slipway status`` shows the interruption, ``slipway recover`` (or the next deploy)
brings back a serving state, the record is final, the incident is written, the journal
is gone and the lock is free.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apprepo import blue_green_table, make_repo, write_config, write_env_file
from support import TOOLS_BIN, require_binary
from writeload import Traffic, rows

from slipway.config import load_config
from slipway.deploy import journal
from slipway.deploy.engine import Deployer
from slipway.state import records
from slipway.state.lock import is_held
from slipway.transports.local import LocalTransport

pytestmark = pytest.mark.integration

SECRET = "tok-recover-secret-5150"


class Env:
    def __init__(self, tmp: Path, strategy: str, manager: str = "pm2") -> None:
        self.strategy = strategy
        self.manager = manager
        self.repo = make_repo(tmp / "repo")
        self.root = tmp / "srv"
        table = ""
        if strategy == "blue-green":
            table = blue_green_table(standby_seconds=300, watch_seconds=2, switch_timeout_seconds=5)
        extra = ""
        if manager == "supervisor":
            extra = f'process_manager = "supervisor"\nsupervisor_home = "{self.root / "sv"}"'
        self.config_path = write_config(
            self.repo, self.root, strategy=strategy, blue_green=table, extra_env=extra
        )
        self.loaded = load_config(self.config_path)
        self.env = self.loaded.config.environment("testing")
        write_env_file(self.root, f"API_TOKEN={SECRET}\n")

    def deployer(self) -> Deployer:
        return Deployer(self.loaded, "testing", LocalTransport(), actor="tester")

    @property
    def port(self) -> int:
        return self.env.ports.backend

    @property
    def db(self) -> Path:
        return self.root / "testing" / ".codeframe" / "state.db"

    def health(self) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        exe = str(Path(sys.executable).with_name("slipway"))
        return subprocess.run(
            [exe, "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def deploy_killed_at(
        self, ref: str, step: str, status: str, *extra: str, detail: str = ""
    ) -> list[dict[str, object]]:
        """Run `slipway deploy --json` and SIGKILL it when the event (step, status) comes
        (with ``detail`` in its detail, when given)."""
        exe = str(Path(sys.executable).with_name("slipway"))
        argv = [exe, "--config", str(self.config_path), "deploy", "testing", "--ref", ref]
        proc = subprocess.Popen(
            [*argv, "--json", *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            event = json.loads(line)
            seen.append(event)
            if (
                event.get("step") == step
                and event.get("status") == status
                and detail in str(event.get("detail") or "")
            ):
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=120)
        assert proc.returncode == -signal.SIGKILL, seen
        # The lock's holder exits once it sees the deployer gone: a moment later.
        layout, deadline = self.deployer().layout, time.monotonic() + 10
        while is_held(LocalTransport(), layout) and time.monotonic() < deadline:
            time.sleep(0.05)
        return seen

    def shutdown(self) -> None:
        """Stop the environment's process manager daemon (and every app it runs)."""
        if self.manager == "pm2":
            self.pm2("kill")
            return
        ctl = str(Path(sys.executable).with_name("supervisorctl"))
        conf = str(self.root / "sv" / "supervisord.conf")
        subprocess.run([ctl, "-c", conf, "shutdown"], capture_output=True, check=False)

    def pm2(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PM2_HOME": str(self.root / "pm2")}
        return subprocess.run(
            [str(TOOLS_BIN / "pm2"), *args], env=env, capture_output=True, text=True, check=False
        )


def _make_env(tmp_path_factory: pytest.TempPathFactory, strategy: str, manager: str = "pm2") -> Env:
    require_binary("pm2", path=str(TOOLS_BIN))
    if strategy == "blue-green":
        require_binary("traefik", path=str(Path(sys.executable).parent))
    if manager == "supervisor":
        require_binary("supervisord", path=str(Path(sys.executable).parent))
    e = Env(tmp_path_factory.mktemp(f"{strategy}-{manager}"), strategy, manager)
    assert e.deployer().deploy("v1").status == "succeeded"
    assert e.deployer().deploy("v2").status == "succeeded"
    return e


@pytest.fixture(scope="module")
def restart_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = _make_env(tmp_path_factory, "restart")
    yield e
    e.pm2("kill")


@pytest.fixture(scope="module")
def bluegreen_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = _make_env(tmp_path_factory, "blue-green")
    yield e
    e.pm2("kill")


@pytest.fixture(scope="module")
def supervisor_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = _make_env(tmp_path_factory, "restart", "supervisor")
    yield e
    e.shutdown()


@pytest.fixture(scope="module")
def supervisor_bluegreen_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = _make_env(tmp_path_factory, "blue-green", "supervisor")
    yield e
    e.shutdown()


def kill_and_recover(env: Env, step: str, status: str, *, via: str = "recover") -> dict:
    """Kill a redeploy of v2 at (step, status) under write load, recover, and check
    everything the issue promises. Returns the interrupted deployment's record."""
    d = env.deployer()
    live_before = d.current_release()
    with Traffic(env.port, writers=2, websockets=0) as traffic:
        time.sleep(0.5)
        events = env.deploy_killed_at("v2", step, status)
        started = next(e for e in events if e.get("step") == "lock" and e.get("status") == "ok")
        assert started
        latest = records.deployments(LocalTransport(), d.layout, 1)[0]
        if latest["status"] == "succeeded":
            # The kill is sent when the event is read; after the last step the deploy
            # may record its success before the signal lands. Then it finished.
            assert step == "promote", latest
            result = env.cli("recover", "testing")
            assert result.returncode == 0, result.stderr
            assert "nothing to recover" in result.stdout
            time.sleep(0.5)
            _check_finished(env, traffic, latest)
            return latest
        status_text = env.cli("status", "testing").stdout
        assert "INTERRUPTED deploy" in status_text, status_text
        assert "slipway recover testing" in status_text
        if via == "recover":
            result = env.cli("recover", "testing")
            assert result.returncode == 0, result.stderr
            assert "recovered the interrupted deploy" in result.stdout
        else:
            result = env.cli("deploy", "testing", "--ref", "v2", "--json")
            assert result.returncode == 0, result.stderr
            assert '"step": "recover"' in result.stdout
        time.sleep(0.5)
    transport = LocalTransport()
    interrupted = next(
        r for r in records.deployments(transport, d.layout, 10) if r["status"] == "interrupted"
    )
    assert interrupted["failed_step"], interrupted
    assert interrupted["finished_at"] is not None
    # Serving, with the release the journal's rules say, and every acknowledged write kept.
    response = env.health()
    assert response.status_code == 200
    live_now = env.deployer().current_release()
    if via == "recover":
        promoted = live_now == interrupted["release"]
        assert live_now in (live_before, interrupted["release"])
        assert promoted or interrupted["rolled_back_to"] == live_before
        assert response.json()["release"] == live_now
    acknowledged = {w.name for w in traffic.acknowledged()}
    assert acknowledged, "the load wrote nothing"
    assert acknowledged <= rows(env.db)
    # The journal is gone, the lock free, the incident written (0600), no secret in it.
    assert journal.read(transport, d.layout) is None
    assert not is_held(transport, d.layout)
    incidents = list(
        (env.root / "testing" / ".slipway" / "incidents").glob(f"*{interrupted['id']}.md")
    )
    assert incidents, "no incident report"
    text = incidents[0].read_text()
    assert text.startswith("# Incident: interrupted deploy in testing")
    assert SECRET not in text
    assert oct(incidents[0].stat().st_mode & 0o777) == "0o600"
    audit = [a["event"] for a in records.audit_log(transport, d.layout, 40)]
    assert "deploy.interrupted" in audit
    chain = records.verify(transport, d.layout)  # a kill never leaves half a row
    assert chain["ok"], chain["problems"]
    if env.strategy == "blue-green":
        # The colours file names the colour that serves (a stale one once made the
        # next deploy stop the serving colour).
        live = env.deployer().read_colors()["live"]
        assert response.headers["X-Slipway-Color"] == live["color"]
        failed = [w for w in traffic.writes if w.status != 201]
        assert not failed, failed[:5]
    return interrupted


def _check_finished(env: Env, traffic: Traffic, row: dict) -> None:
    """A deploy that finished before its kill: it serves, its journal and lock are
    gone, and every acknowledged write is in the database."""
    layout = env.deployer().layout
    assert journal.read(LocalTransport(), layout) is None
    assert not is_held(LocalTransport(), layout)
    response = env.health()
    assert response.status_code == 200 and response.json()["release"] == row["release"]
    acknowledged = {w.name for w in traffic.acknowledged()}
    assert acknowledged and acknowledged <= rows(env.db)
    if env.strategy == "blue-green":
        failed = [w for w in traffic.writes if w.status != 201]
        assert not failed, failed[:5]


RESTART_POINTS = [
    ("start", "start"),  # during the swap: old stopped, new starting
    ("health", "start"),  # after start
    ("promote", "ok"),  # after promote: rolled forward
]


@pytest.mark.parametrize(("step", "status"), RESTART_POINTS)
def test_restart_strategy_killed_at_a_boundary_recovers(
    restart_env: Env, step: str, status: str
) -> None:
    row = kill_and_recover(restart_env, step, status)
    if row["status"] != "succeeded":  # see kill_and_recover: finished before the kill
        assert row["failed_step"] in ("start", "health", "promote", "backup")


@pytest.mark.parametrize(("step", "status"), RESTART_POINTS)
def test_under_supervisor_killed_at_a_boundary_recovers(
    supervisor_env: Env, step: str, status: str
) -> None:
    """The same boundaries with supervisor as the process manager: its start and stop
    are undone by the same journal rules."""
    row = kill_and_recover(supervisor_env, step, status)
    if row["status"] != "succeeded":
        assert row["failed_step"] in ("start", "health", "promote", "backup")


BLUEGREEN_POINTS = [
    ("start", "start"),  # starting the new colour
    ("health", "start"),  # new colour started, not switched
    ("switch", "ok"),  # traffic on the new colour, before the watch
    ("watch", "start"),  # during the watch
    ("promote", "ok"),  # after promote: rolled forward
]


@pytest.mark.parametrize(("step", "status"), [("switch", "ok"), ("watch", "start")])
def test_blue_green_under_supervisor_killed_after_the_switch_recovers(
    supervisor_bluegreen_env: Env, step: str, status: str
) -> None:
    """Traffic already on the new colour when the deployer dies: the recovery switches
    back through the router that supervisor runs, with no failed request."""
    row = kill_and_recover(supervisor_bluegreen_env, step, status)
    if row["status"] != "succeeded":
        assert row["failed_step"] in ("switch", "watch", "promote")


@pytest.mark.parametrize(("step", "status"), BLUEGREEN_POINTS)
def test_blue_green_killed_at_a_boundary_recovers(
    bluegreen_env: Env, step: str, status: str
) -> None:
    kill_and_recover(bluegreen_env, step, status)
    if step not in ("switch", "promote"):
        return
    # The colours file was stale here once, and the next deploy stopped the colour that
    # served (23 requests got 502): the next deploy must not.
    with Traffic(bluegreen_env.port, writers=2, websockets=0) as traffic:
        time.sleep(0.3)
        assert bluegreen_env.deployer().deploy("v2").status == "succeeded"
        time.sleep(0.3)
    assert all(w.status == 201 for w in traffic.writes)


def test_the_next_deploy_recovers_first(restart_env: Env) -> None:
    kill_and_recover(restart_env, "health", "start", via="deploy")


def test_killed_during_the_rollback_of_a_failed_deploy(bluegreen_env: Env) -> None:
    """destructive-crash migrates, then never serves: the deploy rolls back and restores
    the database. Killed in that rollback, the recovery finishes it."""
    d = bluegreen_env.deployer()
    live = d.read_colors()["live"]
    bluegreen_env.deploy_killed_at(
        "broken/destructive-crash", "rollback", "start", "--no-rehearsal"
    )
    result = bluegreen_env.cli("recover", "testing", "--json")
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout.splitlines()[-1])["recovered"]
    assert done["serving"] and done["step"] in ("health", "rollback", "start")
    assert bluegreen_env.deployer().read_colors()["live"]["color"] == live["color"]
    response = bluegreen_env.health()
    assert response.json()["variant"] == "v2"
    assert response.headers["X-Slipway-Color"] == live["color"]
    import sqlite3

    with sqlite3.connect(bluegreen_env.db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        version = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
    assert version == 2  # v2's schema: the destructive migration was undone


def test_killed_while_requests_are_held_the_recovery_releases_them(bluegreen_env: Env) -> None:
    """A breaking release: requests wait at the holding proxy and the old colour is
    stopped. The deployer dies there; the recovery starts the old release again, switches
    to it and releases the held requests to it: none fails, none is lost."""
    env = bluegreen_env
    live = env.deployer().read_colors()["live"]
    with Traffic(env.port, writers=2, websockets=0) as traffic:
        time.sleep(0.5)
        env.deploy_killed_at("v2", "backup", "start", "--breaking")
        result = env.cli("recover", "testing")
        assert result.returncode == 0, result.stderr
        time.sleep(1.0)
    writes = traffic.writes
    assert writes and all(w.status == 201 for w in writes), [w for w in writes if w.status != 201]
    assert "hold" in {w.color for w in writes}  # some did wait at the proxy
    assert {w.name for w in writes} <= rows(env.db)
    assert env.deployer().read_colors()["live"]["color"] == live["color"]
    events = records.audit_log(LocalTransport(), env.deployer().layout, 30)
    released = [json.loads(e["detail"]) for e in events if e["event"] == "traffic.released"]
    assert released and released[0]["to"] == live["color"]


def test_killed_during_the_rehearsal_nothing_live_changed_and_no_copy_runs(
    bluegreen_env: Env,
) -> None:
    """Killed while the new release's backend migrates a copy: its backend dies with
    slipway (its stdin closes), the site never noticed, and the recovery and the next
    deploy find nothing to undo and clear the scratch copy."""
    env = bluegreen_env
    live = env.deployer().read_colors()["live"]
    with Traffic(env.port, writers=2, websockets=0) as traffic:
        time.sleep(0.3)
        # v2-lock: v2 with another lock, so not the live backend (that is not rehearsed).
        events = env.deploy_killed_at("v2-lock", "rehearse", "info", detail="migrating a copy")
        port = int(events[-1]["detail"].rsplit(" ", 1)[-1])
        # The copy's backend goes down with its supervisor (SIGTERM, SIGKILL 5 s later).
        deadline = time.monotonic() + 10
        while _backend_on(port):
            assert time.monotonic() < deadline, f"the rehearsal backend on {port} survived"
            time.sleep(0.2)
        time.sleep(1.0)
        assert not _backend_on(port) and not _listening(port)
        result = env.cli("recover", "testing", "--json")
        assert result.returncode == 0, result.stderr
        done = json.loads(result.stdout.splitlines()[-1])["recovered"]
        assert done["serving"] and done["step"] == "rehearse"
        assert "nothing live had changed" in done["note"]
        time.sleep(0.3)
    writes = traffic.writes
    assert writes and all(w.status == 201 for w in writes), [w for w in writes if w.status != 201]
    assert {w.name for w in writes} <= rows(env.db)
    assert env.deployer().read_colors()["live"] == live
    assert env.deployer().deploy("v2").status == "succeeded"
    assert not (env.root / "testing" / ".slipway" / "rehearsal").exists()


def _backend_on(port: int) -> bool:
    found = subprocess.run(
        ["pgrep", "-f", f"codeframe_mini.server --port {port}"], capture_output=True, check=False
    )
    return found.returncode == 0


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_killed_during_a_backup_restore_the_recovery_releases_the_held_requests(
    bluegreen_env: Env,
) -> None:
    """`backup restore` holds requests while it replaces the database. Killed right
    there, the next command starts the live release again and releases them to it."""
    env = bluegreen_env
    created = env.cli("backup", "testing", "create", "--json")
    assert created.returncode == 0, created.stderr
    backup_id = json.loads(created.stdout)["id"]
    live = env.deployer().read_colors()["live"]
    layout = env.deployer().layout
    exe = str(Path(sys.executable).with_name("slipway"))
    with Traffic(env.port, writers=2, websockets=0) as traffic:
        time.sleep(0.3)
        proc = subprocess.Popen(
            [exe, "--config", str(env.config_path), "backup", "testing", "restore", backup_id],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while journal.last_step(journal.read(LocalTransport(), layout) or {}) != "restore":
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        result = env.cli("recover", "testing", "--json")
        assert result.returncode == 0, result.stderr
        time.sleep(0.5)
    writes = traffic.writes
    assert writes and all(w.status == 201 for w in writes), [w for w in writes if w.status != 201]
    assert "hold" in {w.color for w in writes}  # requests waited instead of failing
    assert env.deployer().read_colors()["live"]["color"] == live["color"]
    assert env.health().status_code == 200
    events = records.audit_log(LocalTransport(), layout, 40)
    assert "restore.interrupted" in [e["event"] for e in events]


def test_an_instant_rollback_whose_drain_job_is_killed_the_next_command_stops_the_colour(
    bluegreen_env: Env,
) -> None:
    """`slipway rollback` switches to the warm colour and returns; a job on the host
    drains the colour it left. That job is SIGKILLed (with its process group) while a
    slow request keeps the drain busy, under write load: status says the drain stopped,
    `slipway recover` stops the colour, nothing fails and nothing is lost."""
    env = bluegreen_env
    assert env.deployer().deploy("v1").status == "succeeded"
    before = env.deployer().read_colors()
    live, warm = before["live"], before["standby"]
    assert warm and not warm.get("draining")
    left_port = env.env.blue_green.color_ports(env.env.ports)[live["color"]].backend
    slow: dict[str, int] = {}

    def slow_request() -> None:  # in flight on the colour being drained
        response = httpx.get(f"http://127.0.0.1:{left_port}/api/work?ms=4000", timeout=30)
        slow["status"] = response.status_code

    layout = env.deployer().layout
    with Traffic(env.port, writers=2, websockets=0) as traffic:
        time.sleep(0.5)
        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(0.3)
        rolled = env.cli("rollback", "testing")
        assert rolled.returncode == 0, rolled.stderr
        job = _drain_job_pid(Path(layout.lock_info))
        os.killpg(job, signal.SIGKILL)
        shown = env.cli("status", "testing").stdout
        assert f"draining: {live['color']}" in shown and "its job stopped" in shown, shown
        result = env.cli("recover", "testing")
        assert result.returncode == 0, result.stderr
        assert "left draining by an instant rollback" in result.stdout + result.stderr
        thread.join()
        time.sleep(0.5)
    after = env.deployer().read_colors()
    assert after["live"]["color"] == warm["color"] and after["standby"] is None
    assert f"-backend-{live['color']}" not in env.pm2("jlist").stdout
    assert env.health().json()["release"] == warm["release"]
    assert slow["status"] == 200  # the drain let it finish
    writes = traffic.writes
    assert writes and all(w.status == 201 for w in writes), [w for w in writes if w.status != 201]
    assert {w.name for w in traffic.acknowledged()} <= rows(env.db)


def _drain_job_pid(lock_info: Path) -> int:
    """The pid of the job that labelled the lock 'drain' (it holds it while draining)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            owner = json.loads(lock_info.read_text())
            if owner.get("reason") == "drain":
                return int(owner["holder_pid"])
        time.sleep(0.01)
    raise AssertionError("no drain job took the lock within 20 s")


def test_forced_lock_release_ends_the_holder_and_only_one_deploy_succeeds(
    restart_env: Env,
) -> None:
    exe = str(Path(sys.executable).with_name("slipway"))
    first = subprocess.Popen(
        [exe, "--config", str(restart_env.config_path), "deploy", "testing", "--ref", "v2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    layout = restart_env.deployer().layout
    deadline = time.monotonic() + 60
    while not is_held(LocalTransport(), layout):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    while journal.read(LocalTransport(), layout) is None:  # the first deploy is under way
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.02)
    forced = restart_env.cli("lock", "testing", "--release", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "released lock of tester" in forced.stdout or "released lock of" in forced.stdout
    second = restart_env.cli("deploy", "testing", "--ref", "v2", "--lock-wait", "30")
    out, err = first.communicate(timeout=300)
    assert second.returncode == 0, second.stderr
    assert first.returncode != 0, out + err
    assert "lost testing's lock" in err
    assert "Traceback" not in err
    rows_now = records.deployments(LocalTransport(), layout, 5)
    mine = [r for r in rows_now[:2]]
    assert sorted(r["status"] for r in mine) == ["interrupted", "succeeded"], [
        (r["status"], r.get("failed_step"), r.get("error")) for r in mine
    ]
    assert restart_env.health().status_code == 200


def _venvs(env: Env) -> Path:
    return env.root / "testing" / "shared" / "venvs"


def _deploy_killed_while_making_a_venv(env: Env, ref: str) -> Path:
    """SIGKILL `slipway deploy REF` once a new shared environment's directory exists
    and before it is marked complete; returns that directory."""
    before = set(os.listdir(_venvs(env)))
    exe = str(Path(sys.executable).with_name("slipway"))
    argv = [exe, "--config", str(env.config_path), "deploy", "testing", "--ref", ref, "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            fresh = set(os.listdir(_venvs(env))) - before
            if fresh:
                made = _venvs(env) / fresh.pop()
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                return made
            time.sleep(0.005)
        raise AssertionError(f"no new shared environment appeared (exit {proc.poll()})")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_releases_share_an_environment_and_one_killed_half_made_is_made_again(
    restart_env: Env,
) -> None:
    """Releases of one lock link one environment; a deploy killed while making a new
    one (under write load) leaves it unmarked, and the next deploy makes it again; the
    environment of pruned releases goes with them."""
    d = restart_env.deployer()
    current = d.current_release()
    assert current is not None
    venv_link = Path(d.layout.release(current)) / ".venv"
    assert venv_link.is_symlink()
    shared_before = venv_link.resolve()
    assert shared_before.parent == _venvs(restart_env)
    assert (shared_before / ".slipway-complete").exists()
    assert d.release_meta(current)["venv"] == shared_before.name
    with Traffic(restart_env.port, writers=2, websockets=0) as traffic:
        time.sleep(0.3)
        made = _deploy_killed_while_making_a_venv(restart_env, "v2-lock")
        assert not (made / ".slipway-complete").exists(), "killed too late: it was complete"
        assert restart_env.health().json()["release"] == current
        deployed = restart_env.cli("deploy", "testing", "--ref", "v2-lock", "--json")
        assert deployed.returncode == 0, deployed.stderr
        assert '"step": "recover"' in deployed.stdout
        assert "shared environment" in deployed.stdout and "made" in deployed.stdout
        time.sleep(0.3)
    assert (made / ".slipway-complete").exists()
    new_release = restart_env.deployer().current_release()
    assert new_release != current
    assert (Path(d.layout.release(new_release)) / ".venv").resolve() == made
    assert restart_env.health().json()["release"] == new_release
    acknowledged = {w.name for w in traffic.acknowledged()}
    assert acknowledged and acknowledged <= rows(restart_env.db)
    # Back to v2's lock: its environment is still there and linked, not made again.
    again = restart_env.cli("deploy", "testing", "--ref", "v2", "--json")
    assert again.returncode == 0, again.stderr
    assert f"environment {shared_before.name[:12]} reused" in again.stdout
    # Once v2-lock's release is pruned (keep_releases = 3), so is its environment.
    for _ in range(3):
        assert restart_env.cli("deploy", "testing", "--ref", "v2").returncode == 0
    assert not made.exists()
    assert shared_before.exists()
    assert sorted(os.listdir(_venvs(restart_env))) == [shared_before.name]
