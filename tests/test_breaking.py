"""Breaking migrations under blue-green: requests are held at the proxy, none is lost.

Real Traefik, PM2, the example app and SQLite. Writers POST rows through the public port
the whole time and remember every acknowledgement and which colour gave it. The claim
tested: no write is acknowledged by the old release after the backup was taken (so a
restore of that backup loses nothing), held requests are answered (not failed), and
after a failed breaking deploy every acknowledged row is in the database.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import TOOLS_BIN, require_binary, run_cli
from test_bluegreen import Env
from writeload import Traffic, rows

from slipway.config import load_config
from slipway.deploy.engine import Deployer, StepEvent
from slipway.errors import DeployFailed
from slipway.routers.base import COLOR_HEADER
from slipway.state import records
from slipway.transports.local import LocalTransport

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_binary("pm2", path=str(TOOLS_BIN))
    require_binary("traefik", path=str(Path(sys.executable).parent))
    e = Env(tmp_path_factory.mktemp("breaking"), standby=300, watch=2)
    with e.config_path.open("a") as f:
        f.write('\n[migrations]\nbreaking = ["v2"]\nhold_seconds = 60\n')
    e.loaded = load_config(e.config_path)
    yield e
    e.pm2("kill")


def database(env: Env) -> Path:
    return env.root / "testing" / ".codeframe" / "state.db"


def test_a_breaking_release_is_held_from_the_backup_to_the_switch(env: Env) -> None:
    # A first deploy has nothing to hold at (no router yet) and nothing to stop.
    assert env.deployer().deploy("v1", breaking=True).status == "succeeded"
    assert any(ev.step == "hold" and "nothing to hold at" in ev.detail for ev in env.events)
    old = env.colors()["live"]["color"]
    with Traffic(env.port) as traffic:
        time.sleep(1.0)
        d = env.deployer()
        outcome = d.deploy("v2")  # marked breaking in the config
        time.sleep(1.0)
    assert outcome.status == "succeeded"
    steps = [s["step"] for s in outcome.steps]
    assert steps.index("rehearse") + 1 == steps.index("hold") == steps.index("backup") - 1
    new = env.colors()["live"]["color"]
    assert new != old and env.colors()["standby"] is None  # no warm old schema

    writes = traffic.writes
    assert writes and all(w.status == 201 for w in writes), [w for w in writes if w.status != 201]
    assert not traffic.ws_failures and traffic.ws_sessions > 3  # drained, reconnected, held
    by_old = {w.name for w in writes if w.color == old}
    by_new = {w.name for w in writes if w.color == new}
    # Held requests were routed to the proxy: Traefik marks their answers "hold".
    held = {w.name for w in writes if w.color == "hold"}
    assert by_old and by_new and held
    assert by_old | by_new | held == {w.name for w in writes}
    # Nothing the old release acknowledged is missing from the pre-deploy backup...
    manifest = d.backups.before_deploy_of(outcome.release)
    assert by_old <= rows(Path(d.backups.path_of(manifest)))
    # ... and every acknowledged write is in the live database.
    assert {w.name for w in writes} <= rows(database(env))
    # Requests waited (longest wait reported) instead of failing.
    events = records.audit_log(LocalTransport(), d.layout, 30)
    released = next(json.loads(e["detail"]) for e in events if e["event"] == "traffic.released")
    assert released["to"] == new and released["held"] >= len(held)
    assert 0.5 < released["longest_wait"] < 60
    assert max(w.seconds for w in writes) >= released["longest_wait"] - 0.5
    assert any(ev.step == "hold" and "held requests released" in ev.detail for ev in env.events)
    started = next(json.loads(e["detail"]) for e in events if e["event"] == "deploy.started")
    assert started["breaking"] is True


def test_a_failed_breaking_deploy_loses_no_acknowledged_write(env: Env) -> None:
    """destructive-crash migrates destructively, then never serves. The held writes go to
    the old release once the database is restored: every acknowledged row is there."""
    live = env.colors()["live"]
    with Traffic(env.port) as traffic:
        time.sleep(1.0)
        with pytest.raises(DeployFailed) as failed:
            env.deployer().deploy("broken/destructive-crash", breaking=True, rehearse=False)
        time.sleep(1.0)
    assert failed.value.rolled_back
    hint = failed.value.hint or ""
    assert "database restored from" in hint and "held requests released" in hint
    assert env.colors()["live"]["color"] == live["color"]
    writes = traffic.writes
    assert writes and all(w.status == 201 for w in writes), [w for w in writes if w.status != 201]
    assert not traffic.ws_failures
    assert {w.name for w in writes} <= rows(database(env))
    assert {w.color for w in writes} == {live["color"], "hold"}  # "hold": waited, then served


def test_the_hold_deadline_rolls_back_and_releases_to_the_old_release(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """``slipway deploy --breaking`` of a release that listens only after minutes, with a
    1 s deadline: the deploy fails while requests are held (at the gate, or earlier on a
    slow machine), the old release starts again and gets the queue."""
    short = env.config_path.read_text().replace("hold_seconds = 60", "hold_seconds = 1")
    path = env.repo / "short-hold.toml"
    path.write_text(short)
    live = env.colors()["live"]
    argv = ["--config", str(path), "deploy", "testing", "--ref", "broken/slow", "--breaking"]
    argv += ["--no-rehearsal", "--json"]  # the rehearsal would refuse it before the hold
    with Traffic(env.port, writers=2, websockets=0) as traffic:
        time.sleep(0.5)
        code, out, err = run_cli(argv, capsys)
        time.sleep(0.5)
    assert code == 1, err
    assert "within the hold deadline of 1s" in err
    assert "held requests released" in err
    events = [json.loads(line) for line in out.splitlines()]
    failed = [e for e in events if e.get("status") == "failed"]
    held = ["hold", "backup", "start", "health"]
    assert failed[0]["step"] in held, failed
    done = [e["step"] for e in events if e.get("status") == "ok"]
    assert "hold" in done or failed[0]["step"] == "hold", events  # it failed while holding
    assert "switch" not in done
    assert env.colors()["live"]["color"] == live["color"]
    assert env.public().json()["variant"] == "v2"
    writes = traffic.writes
    assert writes and all(w.status == 201 for w in writes), [w for w in writes if w.status != 201]
    assert {w.name for w in writes} <= rows(database(env))


def test_ctrl_c_during_a_hold_rolls_back_and_releases_the_queue(env: Env) -> None:
    """A KeyboardInterrupt at the start of the health step (as Ctrl-C would raise it):
    the deploy rolls back like any failure, so no request stays held."""
    live = env.colors()["live"]

    def interrupt(event: StepEvent) -> None:
        if (event.step, event.status) == ("health", "start"):
            raise KeyboardInterrupt

    d = Deployer(env.loaded, "testing", LocalTransport(), emit=interrupt, actor="tester")
    with Traffic(env.port, writers=2, websockets=0) as traffic:
        time.sleep(0.5)
        with pytest.raises(DeployFailed) as failed:
            d.deploy("v1", breaking=True)
        time.sleep(0.5)
    assert failed.value.step == "health" and "interrupted" in str(failed.value)
    assert failed.value.rolled_back and "held requests released" in (failed.value.hint or "")
    assert env.colors()["live"]["color"] == live["color"]
    assert env.public().json()["variant"] == "v2"
    writes = traffic.writes
    assert writes and all(w.status == 201 for w in writes), [w for w in writes if w.status != 201]
    assert {w.name for w in writes} <= rows(database(env))


def test_a_router_that_does_not_confirm_the_hold_changes_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A switch to the holding proxy that is not confirmed in time is put back: the old
    colour was never stopped and keeps serving; the proxy is told to give up. (Traefik
    confirms a switch within milliseconds: here its API is made to never list the
    proxy, as when its file provider stops watching; the put-back is confirmed for real.)"""
    from slipway.routers.traefik import Traefik

    real = Traefik.backend_confirms
    monkeypatch.setattr(
        Traefik, "backend_confirms", lambda self, t: t.color != "hold" and real(self, t)
    )
    text = env.config_path.read_text().replace(
        "switch_timeout_seconds = 5", "switch_timeout_seconds = 0.5"
    )
    path = env.repo / "impatient.toml"
    path.write_text(text)
    d = Deployer(load_config(path), "testing", LocalTransport(), actor="tester")
    live = env.colors()["live"]
    with pytest.raises(DeployFailed) as failed:
        d.deploy("v1", breaking=True)
    assert failed.value.step == "hold" and "was not confirmed" in str(failed.value)
    assert env.colors()["live"] == live
    response = env.public()
    assert response.headers[COLOR_HEADER] == live["color"] and response.status_code == 200
    assert f"codeframe-mini-testing-backend-{live['color']}" in env.online()


def test_breaking_with_the_restart_strategy_stops_writers_before_the_backup(
    tmp_path: Path,
) -> None:
    e = Env(tmp_path)
    try:
        text = e.config_path.read_text().replace('strategy = "blue-green"', 'strategy = "restart"')
        e.config_path.write_text(text + '\n[migrations]\nbreaking = ["v2"]\n')
        e.loaded = load_config(e.config_path)
        assert e.deployer().deploy("v1").status == "succeeded"
        outcome = e.deployer().deploy("v2")
        assert outcome.status == "succeeded"
        steps = [s["step"] for s in outcome.steps]
        assert steps.index("hold") < steps.index("backup") < steps.index("start")
        d = e.deployer()
        audit = [a["event"] for a in records.audit_log(LocalTransport(), d.layout, 30)]
        assert "writers.stopped" in audit
        assert e.public().json()["variant"] == "v2"
    finally:
        e.pm2("kill")
