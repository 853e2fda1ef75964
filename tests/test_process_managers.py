"""The process-manager contract, run the same way against PM2 and supervisor (real
daemons, each with a home of its own): start, status, environment and working
directory, stop with SIGINT first (the app drains), exactly the named apps, a crash
loop seen as not online, private config files. Then the example app under supervisor:
a deploy, a failed one rolled back, a manual rollback; and blue-green (Traefik and
both colours under supervisor) with an instant rollback and the standby's retirement."""

from __future__ import annotations

import itertools
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apprepo import blue_green_table, make_repo, write_config, write_env_file
from support import ROOT, TOOLS_BIN, require_binary, stop_pm2
from writeload import Traffic

from slipway.config import load_config
from slipway.deploy import bluegreen
from slipway.deploy.engine import Deployer
from slipway.deploy.rollback import manual_rollback
from slipway.errors import DeployFailed, SlipwayError
from slipway.health.host import processes_problem
from slipway.processes.base import AppSpec, ProcessManager
from slipway.processes.pm2 import Pm2
from slipway.processes.supervisor import Supervisor, parse_status, program
from slipway.state import records
from slipway.transports.local import LocalTransport

pytestmark = pytest.mark.integration

VENV_BIN = ROOT / ".venv" / "bin"
# An app that says where it runs and with what, and drains on SIGINT.
APP = """
import json, os, signal, sys, time
out = sys.argv[1]
def drain(*_):
    open(out + ".drained", "w").write("yes")
    sys.exit(0)
signal.signal(signal.SIGINT, drain)
json.dump({"cwd": os.getcwd(), "token": os.environ.get("API_TOKEN")}, open(out, "w"))
while True:
    time.sleep(0.2)
"""


def shutdown(kind: str, home: Path) -> None:
    if kind == "pm2":
        stop_pm2(home)
        return
    conf = home / "supervisord.conf"
    if conf.exists():
        subprocess.run(
            [str(VENV_BIN / "supervisorctl"), "-c", str(conf), "shutdown"],
            capture_output=True,
            check=False,
        )


@pytest.fixture(params=["pm2", "supervisor"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessManager]:
    kind = str(request.param)
    if kind == "pm2":
        require_binary("pm2", str(TOOLS_BIN))
    else:
        require_binary("supervisord", str(VENV_BIN))
    home = tmp_path / "home"
    path = f"{TOOLS_BIN}:{VENV_BIN}:{os.environ['PATH']}"
    env = {"PATH": path, "PM2_HOME": str(home), "SUPERVISOR_HOME": str(home)}
    transport = LocalTransport()
    yield Pm2(transport, env) if kind == "pm2" else Supervisor(transport, env)
    shutdown(kind, home)


def app(tmp_path: Path, name: str, token: str = "t0k3n", argv: list[str] | None = None) -> AppSpec:
    script = tmp_path / "app.py"
    script.write_text(APP)
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    work = tmp_path / f"cwd-{name}"
    work.mkdir(exist_ok=True)
    argv = argv or [sys.executable, str(script), str(tmp_path / f"{name}.json")]
    return AppSpec(name, argv, str(work), {"API_TOKEN": token}, 3000, str(logs), 2)


def wait_for(predicate: object, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if callable(predicate) and predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_start_status_environment_and_stop_of_exactly_the_named_apps(
    manager: ProcessManager, tmp_path: Path
) -> None:
    token = '50% of "quoted" value'
    apps = [app(tmp_path, "app-a", token), app(tmp_path, "app-b")]
    manager.start(apps, str(tmp_path / "apps.json"))
    assert stat.S_IMODE((tmp_path / "apps.json").stat().st_mode) == 0o600  # holds env
    wait_for(lambda: all(s.online for s in manager.status(["app-a", "app-b"]).values()))
    wait_for(lambda: (tmp_path / "app-a.json").exists())
    seen = (tmp_path / "app-a.json").read_text()
    assert '"token": "50% of \\"quoted\\" value"' in seen  # passed intact
    assert str(tmp_path / "cwd-app-a") in seen
    before = manager.status(["app-a", "app-b"])
    pid_a = before["app-a"].pid
    assert pid_a is not None and before["app-b"].pid is not None

    manager.stop(["app-a", "never-started"])
    after = manager.status(["app-a", "app-b"])
    assert after["app-a"].status == "missing"
    assert after["app-b"].online and after["app-b"].pid == before["app-b"].pid
    assert (tmp_path / "app-a.json.drained").read_text() == "yes"  # SIGINT first
    with pytest.raises(ProcessLookupError):
        os.kill(pid_a, 0)  # stop returned once it had exited
    manager.stop(["app-b"])
    assert manager.status(["app-b"])["app-b"].status == "missing"
    manager.save()


def test_start_again_brings_back_an_app_stopped_behind_its_back(
    manager: ProcessManager, tmp_path: Path
) -> None:
    """A router started again after it stopped (or crash-looped) runs again, whatever
    the manager kept of it."""
    spec = app(tmp_path, "app-r")
    manager.start([spec], str(tmp_path / "apps.json"))
    wait_for(lambda: manager.status(["app-r"])["app-r"].online)
    out_of_band_stop(manager, "app-r")
    assert not manager.status(["app-r"])["app-r"].online
    manager.start([spec], str(tmp_path / "apps.json"))
    wait_for(lambda: manager.status(["app-r"])["app-r"].online)
    manager.stop(["app-r"])


def out_of_band_stop(manager: ProcessManager, name: str) -> None:
    """Stopped by the manager's own CLI, as an operator (or a crash loop) would leave it."""
    env = {**os.environ, **getattr(manager, "env", {})}
    if isinstance(manager, Pm2):
        argv = [str(TOOLS_BIN / "pm2"), "stop", name]
    else:
        assert isinstance(manager, Supervisor)
        conf = f"{manager.home}/supervisord.conf"
        argv = [str(VENV_BIN / "supervisorctl"), "-c", conf, "stop", name]
    subprocess.run(argv, env=env, capture_output=True, check=False, timeout=60)


def test_a_crash_loop_never_passes_the_processes_check(
    manager: ProcessManager, tmp_path: Path
) -> None:
    """Sampled for 8 s after its start, a process that dies at once is not healthy
    (PM2 says "waiting restart", supervisor BACKOFF then FATAL). PM2 calls it online
    for a moment right after its first restart (one restart is not yet a loop): a
    sample may pass then, never two in a row (a gate needs several), and none after
    the first 2 s."""
    crashing = app(tmp_path, "app-crash", argv=[sys.executable, "-c", "raise SystemExit(3)"])
    manager.start([crashing], str(tmp_path / "apps.json"))
    started = time.monotonic()
    samples: list[tuple[float, str | None]] = []
    while time.monotonic() < started + 8:
        problem = processes_problem(manager.status(["app-crash"]), time.time())
        samples.append((time.monotonic() - started, problem))
        time.sleep(0.25)
    problems = [p for _, p in samples]
    assert len(samples) > 10, samples
    assert all(p is not None for at, p in samples if at >= 2), samples
    assert not any(a is None and b is None for a, b in itertools.pairwise(problems)), samples
    manager.stop(["app-crash"])
    assert manager.status(["app-crash"])["app-crash"].status == "missing"


def test_supervisor_files_are_private_and_a_value_it_cannot_carry_is_named(
    tmp_path: Path,
) -> None:
    require_binary("supervisord", str(VENV_BIN))
    home = tmp_path / "home"
    env = {"PATH": f"{VENV_BIN}:{os.environ['PATH']}", "SUPERVISOR_HOME": str(home)}
    manager = Supervisor(LocalTransport(), env)
    try:
        manager.start([app(tmp_path, "app-a")], str(tmp_path / "apps.json"))
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert stat.S_IMODE((home / "apps" / "app-a.conf").stat().st_mode) == 0o600
        with pytest.raises(SlipwayError, match="the value of API_TOKEN: it holds both kinds"):
            manager.start(
                [app(tmp_path, "app-b", token='it\'s "both" here')], str(tmp_path / "b.json")
            )
        assert manager.status(["app-b"])["app-b"].status == "missing"  # nothing started
    finally:
        shutdown("supervisor", home)
    deep = tmp_path / ("d" * 90)
    too_long = Supervisor(LocalTransport(), {**env, "SUPERVISOR_HOME": str(deep)})
    with pytest.raises(SlipwayError, match="longer than a unix socket's path may be"):
        too_long.start([app(tmp_path, "app-c")], str(tmp_path / "c.json"))
    assert not deep.exists()  # refused before anything was made


def test_supervisor_status_lines_are_read_as_slipway_states() -> None:
    text = (
        "app-a                            RUNNING   pid 4242, uptime 0:00:05\n"
        "app-b                            BACKOFF   Exited too quickly (process log may"
        " have details)\n"
        "app-c                            STOPPED   Not started\n"
        "app-d: ERROR (no such process)\n"
    )
    states = parse_status(text, ["app-a", "app-b", "app-c", "app-d"])
    assert (states["app-a"].status, states["app-a"].pid) == ("online", 4242)
    assert [states[n].status for n in ("app-b", "app-c", "app-d")] == [
        "errored",
        "stopped",
        "missing",
    ]
    spec = AppSpec("x", ["python", "-m", "app", "--name", "a b"], "/srv/%d", {"K": "1%"})
    text = program(spec)
    assert "command=python -m app --name 'a b'" in text
    assert "directory=/srv/%%d" in text and 'environment=K="1%%"' in text


def test_a_deploy_a_failed_deploy_and_a_rollback_under_supervisor(tmp_path: Path) -> None:
    require_binary("supervisord", str(VENV_BIN))
    repo = make_repo(tmp_path / "repo")
    root = tmp_path / "srv"
    home = root / "sv"
    extra = f'process_manager = "supervisor"\nsupervisor_home = "{home}"'
    config = write_config(repo, root, extra_env=extra, health="comprehensive")
    write_env_file(root, "API_TOKEN=sup-token\n")
    loaded = load_config(config)
    try:
        first = Deployer(loaded, "testing", LocalTransport()).deploy("v1")
        d = Deployer(loaded, "testing", LocalTransport())
        url = f"http://127.0.0.1:{d.env.ports.backend}/health"
        assert httpx.get(url, timeout=5).json()["status"] == "ok"
        second = Deployer(loaded, "testing", LocalTransport()).deploy("v2")
        assert second.status == "succeeded" and second.release != first.release
        with pytest.raises(DeployFailed) as failed:
            Deployer(loaded, "testing", LocalTransport()).deploy("broken/crash")
        assert failed.value.rolled_back
        assert d.current_release() == second.release
        assert httpx.get(url, timeout=5).status_code == 200
        back = manual_rollback(Deployer(loaded, "testing", LocalTransport()), first.release)
        assert back.release == first.release
        states = d.pm.status(d.app_names)
        assert all(s.online for s in states.values()), states
        listed = sorted(p.name for p in (home / "apps").iterdir())
        assert listed == [f"{n}.conf" for n in sorted(d.app_names)]  # what boot starts
        # A value supervisor cannot carry is refused before the live release stops.
        pids = {n: s.pid for n, s in d.pm.status(d.app_names).items()}
        write_env_file(root, "API_TOKEN=sup-token\nTITLE=Shop #1\n")
        with pytest.raises(DeployFailed) as refused:
            Deployer(loaded, "testing", LocalTransport()).deploy("v2")
        assert "TITLE" in str(refused.value) and "Shop #1" not in str(refused.value)
        assert {n: s.pid for n, s in d.pm.status(d.app_names).items()} == pids
        assert httpx.get(url, timeout=5).status_code == 200
    finally:
        shutdown("supervisor", home)


def test_blue_green_under_supervisor_switches_rolls_back_and_retires_the_standby(
    tmp_path: Path,
) -> None:
    """The router and both colours run under supervisor; the standby's timed retirement
    (a job on the host) stops it through supervisor's own commands. Under write load,
    no request fails."""
    require_binary("supervisord", str(VENV_BIN))
    require_binary("traefik", str(VENV_BIN))
    repo = make_repo(tmp_path / "repo")
    root = tmp_path / "srv"
    home = root / "sv"
    extra = f'process_manager = "supervisor"\nsupervisor_home = "{home}"'
    table = blue_green_table(standby_seconds=300, watch_seconds=1, switch_timeout_seconds=5)
    config = write_config(
        repo, root, extra_env=extra, strategy="blue-green", blue_green=table, health="comprehensive"
    )
    write_env_file(root, "API_TOKEN=sup-token\n")
    loaded = load_config(config)

    def deployer() -> Deployer:
        return Deployer(loaded, "testing", LocalTransport())

    try:
        first = deployer().deploy("v1")
        port = deployer().env.ports.backend
        with Traffic(port, writers=2, websockets=0) as traffic:
            second = deployer().deploy("v2")
            back = manual_rollback(deployer())
            assert back.release == first.release
            again = deployer().deploy("v2")
            time.sleep(0.5)
        failed = [w for w in traffic.writes if w.status != 201]
        assert traffic.writes and not failed, failed[:5]
        assert again.release != second.release
        d = deployer()
        standby = d.read_colors()["standby"]
        assert standby is not None
        bluegreen.schedule_retire(d, standby["color"], standby["token"], 0.2)
        names = d.app_names_of(standby["color"])
        wait_for(lambda: d.read_colors()["standby"] is None, 30)
        assert all(s.status == "missing" for s in d.pm.status(names).values())
        assert not any((home / "apps" / f"{n}.conf").exists() for n in names)
        events = [a["event"] for a in records.audit_log(LocalTransport(), d.layout)]
        assert "standby.retired" in events
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        shutdown("supervisor", home)
