"""Canary deploys on this machine, under load: real Traefik (weighted, sticky), PM2, the
example app and SQLite. One environment for the module, tests in order, each leaving a
healthy release live. Load: keep-alive and ``Connection: close`` GETs of a page every
request of which a canary's fault reaches, POSTs writing rows, open WebSockets.

A bad canary answers 500s or slowly (its own fault, not a lost connection): what the
tests hold to zero is connection-level failures, and the count of requests the bad
release answered is reported by ``benchmarks/canary.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from loadgen import Load
from support import TOOLS_BIN, require_binary
from test_bluegreen import Env

from slipway.cli.hosts import with_strategy
from slipway.deploy.engine import Deployer
from slipway.errors import DeployFailed
from slipway.state import records
from slipway.state.lock import is_held
from slipway.transports.local import LocalTransport

pytestmark = pytest.mark.integration

EXE = str(Path(sys.executable).with_name("slipway"))
CANARY = """
[environments.testing.canary]
steps = {steps}
step_seconds = {step}
min_requests = {least}
"""


class CanaryEnv(Env):
    def __init__(self, tmp: Path, router: str = "traefik") -> None:
        super().__init__(tmp, router=router, watch=1)
        self.reader: Deployer | None = None
        self.good_v2 = ""  # the v2 that went live (a split needs a release that did)
        text = self.config_path.read_text()  # every release of the module kept
        self.config_path.write_text(text.replace("keep_releases = 3\n", "keep_releases = 30\n"))
        self.write_canary(step=3)
        env_file = self.root / "testing" / "shared" / ".env.testing"
        env_file.write_text(env_file.read_text() + "CODEFRAME_MINI_FAIL_AFTER=5\n")

    def write_canary(
        self, step: float, steps: tuple[int, ...] = (10, 50, 100), least: int = 10
    ) -> None:
        text = self.config_path.read_text().split("\n[environments.testing.canary]")[0]
        canary_table = CANARY.format(step=step, steps=list(steps), least=least)
        self.config_path.write_text(text + canary_table)
        from slipway.config import load_config

        self.loaded = with_strategy(load_config(self.config_path), "testing", "canary")
        self.env = self.loaded.config.environment("testing")

    def deployer(self) -> Deployer:
        return Deployer(
            self.loaded, "testing", LocalTransport(), emit=self.events.append, actor="tester"
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The CLI in this process (coverage sees it), its output captured. The deploys
        running meanwhile in a thread print nothing (their events go to a list)."""
        from slipway.cli.main import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--config", str(self.config_path), *args])
        return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())

    def status(self) -> dict:
        if self.reader is None:  # one context for every look (each starts a host agent)
            self.reader = self.deployer()
        return self.reader.canary_status() or {}

    def variant(self, client: httpx.Client | None = None) -> str:
        get = client.get if client else httpx.get
        return str(get(f"http://127.0.0.1:{self.port}/health", timeout=5).json()["variant"])


def connection_failures(load: Load) -> list[str]:
    """Failures that are not an HTTP answer (a refused, reset or timed-out request)."""
    return [s.error for s in load.samples if not s.ok and not s.error.isdigit()]


def load_on(env: CanaryEnv) -> Load:
    return Load(env.port, path="/api/projects", websockets=5)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CanaryEnv]:
    require_binary("traefik", path=str(Path(sys.executable).parent))
    yield from _module_env(tmp_path_factory, "traefik")


def _module_env(factory: pytest.TempPathFactory, router: str) -> Iterator[CanaryEnv]:
    """One environment for the module's tests (in order), its PM2 stopped after."""
    require_binary("pm2", path=str(TOOLS_BIN))
    made = CanaryEnv(factory.mktemp(f"canary-{router}"), router=router)
    try:
        yield made
    finally:
        made.pm2("kill")


def test_the_first_canary_deploy_switches_as_blue_green(env: CanaryEnv) -> None:
    outcome = env.deployer().deploy("v1")
    assert outcome.status == "succeeded" and env.variant() == "v1"
    assert env.colors()["live"]["color"] == "blue"


def test_a_good_canary_rises_step_by_step_and_is_promoted(env: CanaryEnv) -> None:
    with load_on(env) as load:
        time.sleep(0.5)
        outcome = env.deployer().deploy("v2")
        time.sleep(0.5)
    assert outcome.status == "succeeded" and env.variant() == "v2"
    env.good_v2 = outcome.release
    assert connection_failures(load) == [] and load.ws.abnormal == 0
    assert all(s.ok for s in load.samples), load.summary()
    status = env.status()
    assert status["state"] == "passed" and status["weight"] == 100
    steps = status["steps"]
    assert [s["weight"] for s in steps] == [10, 50, 100]
    assert all(s["ended_by"] == "time" and s["breach"] is None for s in steps)
    assert set(steps[0]["processes"]) == {"backend"}  # judged per process
    assert steps[0]["canary"]["requests"] > 0 and steps[0]["stable"]["requests"] > 0
    held = steps[0]["websocket"]  # slipway's own sessions on each colour: none dropped
    assert held["canary"]["sessions"] >= 4 and held["canary"]["dropped"] == 0, held
    assert held["stable"]["sessions"] >= 4 and held["stable"]["dropped"] == 0, held
    ten = steps[0]["canary"]["requests"] / (
        steps[0]["canary"]["requests"] + steps[0]["stable"]["requests"]
    )
    assert 0.02 < ten < 0.3, steps[0]  # about a tenth, as weighted
    assert env.colors()["live"]["color"] == "green"


@pytest.mark.parametrize(
    ("ref", "breach"),
    [
        ("fail-after", "error rate"),
        ("ws-drop", "WebSocket sessions ended abnormally"),
        ("sluggish", "p95"),
    ],
)
def test_a_bad_canary_is_aborted_and_every_request_goes_back(
    env: CanaryEnv, ref: str, breach: str
) -> None:
    live = env.colors()["live"]
    with load_on(env) as load, pytest.raises(DeployFailed) as failed:
        env.deployer().deploy(f"broken/{ref}")
    assert failed.value.step == "canary" and failed.value.rolled_back
    assert breach in str(failed.value) and "| canary |" in str(failed.value)
    assert connection_failures(load) == []
    if ref != "ws-drop":  # ws-drop ends the sessions it gets itself: its own failure
        assert load.ws.abnormal == 0
    status = env.status()
    assert status["state"] == "aborted" and status["weight"] == 0
    assert status["to_zero_s"] < 1.0, status
    assert [s["weight"] for s in status["steps"]] == [10]  # at the first step
    if ref == "ws-drop":
        held = status["steps"][0]["websocket"]
        assert held["canary"]["dropped"] >= 1 and held["stable"]["dropped"] == 0, held
    assert env.colors()["live"] == live
    assert env.deployer().router().canary_weight() == 0
    assert env.variant() == "v2"
    assert not any(name.endswith("-blue") and "backend" in name for name in env.online())
    row = records.deployments(LocalTransport(), env.deployer().layout, 1)[0]
    assert row["status"] == "rolled_back" and row["failed_step"] == "canary"


def test_the_dashboard_shows_the_last_canary_and_its_analysis(env: CanaryEnv) -> None:
    from test_dashboard import loaded_page, served

    from slipway.dashboard.data import overview

    found = overview(env.loaded, run_checks=False)["environments"]
    testing = next(e for e in found if e["name"] == "testing")
    assert testing["canary"]["state"] == "aborted" and testing["canary"]["steps"]
    with served(env.loaded) as (url, token), loaded_page(url, token) as page:
        text = page.get_by_test_id("canary-testing").inner_text()
    assert "canary p95" in text and "stable" in text  # the sluggish canary's breach


def test_a_canary_with_too_little_traffic_to_judge_is_aborted(env: CanaryEnv) -> None:
    """No load at all: a step never sees min_requests; after three times its length it
    fails, never passes unjudged."""
    env.write_canary(step=1, least=1000)
    live = env.colors()["live"]
    try:
        with pytest.raises(DeployFailed, match="too little traffic to judge"):
            env.deployer().deploy("v1")
    finally:
        env.write_canary(step=3)
    assert env.colors()["live"] == live and env.variant() == "v2"


def test_a_client_with_the_cookie_stays_on_its_side(env: CanaryEnv) -> None:
    env.write_canary(step=30, steps=(50, 100))
    done: list[object] = []
    thread = threading.Thread(target=lambda: done.append(_deploy(env, "v1")))
    thread.start()
    try:
        _wait_for(lambda: env.status().get("weight") == 50 and env.status()["state"] == "running")
        with httpx.Client() as sticky:
            seen = {env.variant(sticky) for _ in range(30)}
        fresh = {env.variant() for _ in range(60)}
        assert len(seen) == 1, seen  # the cookie keeps its side
        assert fresh == {"v2", "v1"}, fresh  # without it, both sides answer
        promoted = env.cli("canary", "testing", "promote", "--actor", "ops")
        assert promoted.returncode == 0, promoted.stderr
    finally:
        thread.join(timeout=120)
        env.write_canary(step=3)
    assert done and getattr(done[0], "status", None) == "succeeded", done
    assert env.variant() == "v1"
    assert env.status()["steps"][-1]["ended_by"] == "promote"


def test_abort_by_command_sends_every_request_back(env: CanaryEnv) -> None:
    env.write_canary(step=30)
    live = env.colors()["live"]
    done: list[object] = []
    try:
        with load_on(env) as load:
            thread = threading.Thread(target=lambda: done.append(_deploy(env, "v2")))
            thread.start()
            _wait_for(lambda: env.status().get("state") == "running")
            aborted = env.cli("canary", "testing", "abort", "--actor", "ops", "--json")
            thread.join(timeout=120)
    finally:
        env.write_canary(step=3)
    assert aborted.returncode == 0, aborted.stderr
    assert json.loads(aborted.stdout)["canary"]["state"] == "aborted"
    assert isinstance(done[0], DeployFailed) and "aborted by ops" in str(done[0])
    assert connection_failures(load) == [] and load.ws.abnormal == 0
    assert env.colors()["live"] == live and env.variant() == "v1"
    nothing = env.cli("canary", "testing", "abort")
    assert nothing.returncode == 1 and "no canary is running" in nothing.stderr


def test_a_canary_whose_process_stops_is_aborted(env: CanaryEnv) -> None:
    """Its WebSockets and requests in flight are lost with it (the app's own failure);
    the canary is aborted within a second or so and the stable colour keeps serving."""
    env.write_canary(step=30)
    live = env.colors()["live"]
    canary_color = "green" if live["color"] == "blue" else "blue"
    done: list[object] = []
    try:
        thread = threading.Thread(target=lambda: done.append(_deploy(env, "v2")))
        thread.start()
        _wait_for(lambda: env.status().get("state") == "running" and env.status()["weight"])
        env.pm2("stop", f"codeframe-mini-testing-backend-{canary_color}")
        thread.join(timeout=120)
    finally:
        env.write_canary(step=3)
    assert isinstance(done[0], DeployFailed), done
    # Seen by whichever look comes first: the processes, or the sessions slipway holds.
    seen = ("is stopped", "WebSocket sessions ended abnormally")
    assert any(s in str(done[0]) for s in seen) and done[0].step == "canary", done[0]
    assert env.colors()["live"] == live and env.variant() == "v1"


def test_a_canary_killed_mid_step_is_recovered_onto_the_stable_colour(env: CanaryEnv) -> None:
    live = env.colors()["live"]
    argv = [EXE, "--config", str(env.config_path), "deploy", "testing", "--ref", "v2"]
    with load_on(env) as load:
        _kill_at(
            [*argv, "--strategy", "canary"],
            lambda e: e.get("step") == "canary" and "10% on" in str(e.get("detail")),
        )
        _wait_for(lambda: not is_held(LocalTransport(), env.deployer().layout))
        recovered = env.cli("recover", "testing")
        time.sleep(0.5)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert connection_failures(load) == [] and load.ws.abnormal == 0
    assert env.colors()["live"] == live and env.variant() == "v1"
    assert env.deployer().router().canary_weight() == 0
    assert {env.variant() for _ in range(20)} == {"v1"}


def _deploy(env: CanaryEnv, ref: str) -> object:
    try:
        return env.deployer().deploy(ref)
    except DeployFailed as exc:
        return exc


def _wait_for(condition: Callable[[], object], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_an_ab_split_shares_clients_counts_each_side_and_keeps_one(env: CanaryEnv) -> None:
    live = env.deployer().current_release()
    assert live is not None
    args = ["split", "testing", "start", "--a", live, "--b", env.good_v2, "--percent", "50"]
    with load_on(env) as load:
        started = env.cli(*args, "--conversion-path", "/api/projects", "--json")
        assert started.returncode == 0, started.stdout + started.stderr
        time.sleep(3)
        with httpx.Client() as sticky:
            seen = {env.variant(sticky) for _ in range(20)}
        refused = env.cli("deploy", "testing", "--ref", "v2")
        status = env.cli("split", "testing", "status", "--json")
        ended = env.cli("split", "testing", "end", "--keep", "b")
        time.sleep(1)
    assert len(seen) == 1, seen
    assert refused.returncode == 2 and "end it first" in refused.stderr
    figures = json.loads(status.stdout)["figures"]
    for side in ("a", "b"):
        assert figures[side]["requests"] > 20 and figures[side]["conversions"] > 0, figures
        assert figures[side]["errors"] == 0 and figures[side]["p95_ms"] is not None
        backend = figures[side]["processes"]["backend"]  # each process apart too
        assert backend["requests"] == figures[side]["requests"], figures
    share = figures["b"]["requests"] / (figures["a"]["requests"] + figures["b"]["requests"])
    assert 0.2 < share < 0.8, figures
    assert ended.returncode == 0, ended.stdout + ended.stderr
    assert connection_failures(load) == [] and load.ws.abnormal == 0
    assert (
        env.deployer().current_release()
        == json.loads(started.stdout.splitlines()[-1])["split"]["b"]["release"]
    )
    assert {env.variant() for _ in range(20)} == {"v2"}
    assert env.colors()["standby"]["release"] == live  # A kept warm for a rollback
    row = records.deployments(LocalTransport(), env.deployer().layout, 1)[0]
    assert (row["kind"], row["status"], row["previous_release"]) == ("split", "succeeded", live)
    backup = env.deployer().backups.list()[0]
    assert backup["reason"] == "pre-deploy" and backup["release"] == live  # its "before"


def test_a_split_killed_while_starting_is_undone_by_the_next_command(env: CanaryEnv) -> None:
    live = env.deployer().current_release()
    warm = env.colors()["standby"]["release"]  # went live before: its schema is known
    before = env.colors()["live"]
    path = Path(env.deployer().layout.state_dir) / "split.json"
    argv = [EXE, "--config", str(env.config_path), "split", "testing", "start"]
    with load_on(env) as load:
        proc = subprocess.Popen([*argv, "--a", str(live), "--b", warm])
        _wait_for(lambda: path.exists(), 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _wait_for(lambda: not is_held(LocalTransport(), env.deployer().layout))
        recovered = env.cli("recover", "testing")
        time.sleep(0.5)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert not path.exists()
    assert connection_failures(load) == [] and load.ws.abnormal == 0
    assert env.colors()["live"]["color"] == before["color"]
    assert env.deployer().router().canary_weight() == 0
    assert {env.variant() for _ in range(20)} == {"v2"}
    standby = env.colors()["standby"]  # the warm standby the start cancelled is back
    assert standby is not None and env.deployer().color_online(standby["color"])


def test_a_split_ends_only_on_a_side_that_answers(env: CanaryEnv) -> None:
    live = env.deployer().current_release()
    started = env.cli("split", "testing", "start", "--a", str(live), "--b", "v1", "--json")
    assert started.returncode == 0, started.stdout + started.stderr
    b_color = json.loads(started.stdout.splitlines()[-1])["split"]["b"]["color"]
    env.pm2("stop", f"codeframe-mini-testing-backend-{b_color}")
    refused = env.cli("split", "testing", "end", "--keep", "b")
    assert refused.returncode == 2 and "cannot take every request" in refused.stderr
    assert env.deployer().current_release() == live
    ended = env.cli("split", "testing", "end", "--keep", "a")
    assert ended.returncode == 0, ended.stdout + ended.stderr
    assert {env.variant() for _ in range(20)} == {"v2"}
    assert env.deployer().router().canary_weight() == 0
    assert env.cli("split", "testing", "status").stdout.strip().endswith("no A/B split in testing")


def test_a_split_whose_other_side_fails_to_start_is_undone_at_once(
    env: CanaryEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault injected where the other side starts (its gate): the start is undone
    before the error is reported, nothing is left for the next command."""
    from slipway.deploy import split
    from slipway.errors import HealthCheckFailed

    live = env.deployer().current_release()
    real = split.bluegreen.start_on

    def failing(d: Deployer, release: str, color: str) -> object:
        real(d, release, color)
        raise HealthCheckFailed(f"{release} is not healthy on {color}: injected")

    monkeypatch.setattr(split.bluegreen, "start_on", failing)
    failed = env.cli("split", "testing", "start", "--a", str(live), "--b", "v1")
    assert failed.returncode == 1 and "injected" in failed.stderr
    assert split.read(env.deployer()) is None
    assert env.deployer().router().canary_weight() == 0
    assert {env.variant() for _ in range(10)} == {"v2"}


def test_a_split_end_killed_after_its_switch_is_completed_by_the_next_command(
    env: CanaryEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``end --keep b`` stopped (as by SIGKILL: a BaseException nothing catches) after
    the switch, before B became the live release: the journal says "ending", and
    `slipway recover` completes it."""
    from slipway.deploy import split

    class Killed(BaseException):
        pass

    live = env.deployer().current_release()
    started = env.cli("split", "testing", "start", "--a", str(live), "--b", "v1", "--json")
    assert started.returncode == 0, started.stdout + started.stderr
    b_release = json.loads(started.stdout.splitlines()[-1])["split"]["b"]["release"]

    def killed(*args: object) -> None:
        raise Killed

    monkeypatch.setattr(split, "_keep_other", killed)
    with pytest.raises(Killed):
        env.cli("split", "testing", "end", "--keep", "b")
    monkeypatch.undo()
    assert split.read(env.deployer())["state"] == "ending"
    assert {env.variant() for _ in range(10)} == {"v1"}  # the switch had happened
    recovered = env.cli("recover", "testing")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert split.read(env.deployer()) is None
    assert env.deployer().current_release() == b_release
    assert env.colors()["live"]["release"] == b_release


def _kill_at(argv: list[str], at: Callable[[dict[str, Any]], bool]) -> None:
    """Run the CLI with ``--json`` and SIGKILL it at the first step event ``at`` accepts."""
    proc = subprocess.Popen([*argv, "--json"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "step" and at(event):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the command ended before its kill point"


@pytest.mark.parametrize("when", ["sending every request back to", "every request back on"])
def test_a_canary_killed_while_aborting_is_recovered_onto_the_stable_colour(
    env: CanaryEnv, when: str
) -> None:
    """SIGKILL as the breach's switch back begins (the routes may be half written) and
    right after it: the next command leaves every request on the stable colour, the
    canary stopped, the run recorded as interrupted at its canary step."""
    live = env.colors()["live"]
    serving = env.variant()
    argv = [EXE, "--config", str(env.config_path), "deploy", "testing", "--ref"]
    with load_on(env) as load:
        _kill_at(
            [*argv, "broken/fail-after", "--strategy", "canary"],
            lambda e: e.get("step") == "canary" and when in str(e.get("detail")),
        )
        _wait_for(lambda: not is_held(LocalTransport(), env.deployer().layout))
        recovered = env.cli("recover", "testing")
        time.sleep(0.5)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert connection_failures(load) == [] and load.ws.abnormal == 0
    assert env.colors()["live"] == live
    assert env.deployer().router().canary_weight() == 0
    assert {env.variant() for _ in range(20)} == {serving}
    canary_color = "green" if live["color"] == "blue" else "blue"
    assert not any(name.endswith(f"-{canary_color}") for name in env.online())
    status = env.status()
    assert status["state"] in ("aborted", "rolled back") and status["weight"] == 0, status
    row = records.deployments(LocalTransport(), env.deployer().layout, 1)[0]
    assert (row["status"], row["failed_step"]) == ("interrupted", "canary"), row


@pytest.mark.parametrize("when", ["start", "ok"])
def test_a_split_end_killed_around_its_switch_is_completed_by_the_next_command(
    env: CanaryEnv, when: str
) -> None:
    """``split end --keep b`` SIGKILLed as its switch starts and once it is done, under
    load: the journal says "ending", and `slipway recover` makes B the live release,
    A warm, with no connection-level failure."""
    from slipway.deploy import split

    live = env.deployer().current_release()
    rows = records.deployments(LocalTransport(), env.deployer().layout, 50)
    other = next(  # one that went live before (its schema is known), not the live one
        r["release"] for r in rows if r["status"] == "succeeded" and r["release"] != live
    )
    started = env.cli("split", "testing", "start", "--a", str(live), "--b", other)
    assert started.returncode == 0, started.stdout + started.stderr
    argv = [EXE, "--config", str(env.config_path), "split", "testing", "end", "--keep", "b"]
    with load_on(env) as load:
        _kill_at(argv, lambda e: e.get("step") == "switch" and e.get("status") == when)
        assert split.read(env.deployer())["state"] == "ending"
        _wait_for(lambda: not is_held(LocalTransport(), env.deployer().layout))
        recovered = env.cli("recover", "testing")
        time.sleep(0.5)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "finished ending the A/B split" in recovered.stdout + recovered.stderr
    assert connection_failures(load) == [] and load.ws.abnormal == 0
    assert split.read(env.deployer()) is None
    assert env.deployer().current_release() == other
    assert env.colors()["standby"]["release"] == live  # A kept warm for a rollback
    assert env.deployer().router().canary_weight() == 0
    b_variant = env.variant()
    assert {env.variant() for _ in range(20)} == {b_variant}


# --- the same canary through nginx ------------------------------------------------------


@pytest.fixture(scope="module")
def nginx_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CanaryEnv]:
    require_binary("nginx", path="/usr/sbin:/usr/bin")
    yield from _module_env(tmp_path_factory, "nginx")


def close_load_on(env: CanaryEnv) -> Load:
    """nginx reloads at each step: its old workers close idle keep-alive connections
    (the router's documented cost), so the load here opens a connection per request."""
    return Load(env.port, keepalive=0, close=3, posts=0, websockets=5, path="/api/projects")


def test_an_nginx_canary_rises_is_sticky_and_is_promoted(nginx_env: CanaryEnv) -> None:
    assert nginx_env.deployer().deploy("v1").status == "succeeded"
    url = f"http://127.0.0.1:{nginx_env.port}/health"
    with close_load_on(nginx_env) as load, httpx.Client(timeout=5) as client:
        done: list[object] = []
        thread = threading.Thread(target=lambda: done.append(_deploy(nginx_env, "v2")))
        thread.start()
        _wait_for(lambda: nginx_env.status().get("weight") == 10)
        side = client.get(url).json()["variant"]
        _wait_for(lambda: nginx_env.status().get("weight") == 50)
        kept = {client.get(url).json()["variant"] for _ in range(20)}
        thread.join(timeout=120)
    assert kept == {side}  # the router's cookie kept the client on its side
    assert getattr(done[0], "status", None) == "succeeded", done
    assert connection_failures(load) == [], load.summary()
    steps = nginx_env.status()["steps"]
    assert [s["weight"] for s in steps] == [10, 50, 100]
    ten = steps[0]["canary"]["requests"] / (
        steps[0]["canary"]["requests"] + steps[0]["stable"]["requests"]
    )
    assert 0.02 < ten < 0.3, steps[0]  # about a tenth, as weighted
    assert {nginx_env.variant() for _ in range(10)} == {"v2"}


def test_a_bad_nginx_canary_is_aborted_at_the_first_step(nginx_env: CanaryEnv) -> None:
    live = nginx_env.colors()["live"]
    with close_load_on(nginx_env) as load, pytest.raises(DeployFailed) as failed:
        nginx_env.deployer().deploy("broken/fail-after")
    assert failed.value.step == "canary" and "error rate" in str(failed.value)
    assert connection_failures(load) == [], load.summary()
    status = nginx_env.status()
    assert status["state"] == "aborted" and [s["weight"] for s in status["steps"]] == [10]
    assert status["to_zero_s"] < 1.0, status
    assert nginx_env.colors()["live"] == live
    assert nginx_env.deployer().router().canary_weight() == 0
    assert {nginx_env.variant() for _ in range(10)} == {"v2"}


def test_an_nginx_split_counts_each_side_and_ends(nginx_env: CanaryEnv) -> None:
    live = nginx_env.deployer().current_release()
    rows = records.deployments(LocalTransport(), nginx_env.deployer().layout, 50)
    other = next(r["release"] for r in rows if r["status"] == "succeeded" and r["release"] != live)
    args = ["split", "testing", "start", "--a", str(live), "--b", other, "--percent", "50"]
    with close_load_on(nginx_env) as load:
        started = nginx_env.cli(*args)
        assert started.returncode == 0, started.stdout + started.stderr
        for i in range(6):  # the app marks a created project as a conversion
            created = httpx.post(
                f"http://127.0.0.1:{nginx_env.port}/api/projects",
                json={"name": f"ab-{i}-{time.time_ns()}"},
                headers={"Connection": "close"},
                timeout=5,
            )
            assert created.status_code == 201, created.text
        time.sleep(3)
        status = nginx_env.cli("split", "testing", "status", "--json")
        ended = nginx_env.cli("split", "testing", "end", "--keep", "a")
    assert ended.returncode == 0, ended.stdout + ended.stderr
    figures = json.loads(status.stdout)["figures"]
    assert figures["a"]["requests"] > 20 and figures["b"]["requests"] > 20, figures
    assert figures["a"]["conversions"] + figures["b"]["conversions"] == 6, figures
    assert connection_failures(load) == [], load.summary()
    assert nginx_env.deployer().current_release() == live
    assert nginx_env.deployer().router().canary_weight() == 0
    assert {nginx_env.variant() for _ in range(10)} == {"v2"}
