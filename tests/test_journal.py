"""The journal and its replay rules, in milliseconds: a real local transport, host helper
and SQLite records, with a fake process manager and router (``tests/fakes.py``).

Each test writes the journal a run would have left when killed at some point, then lets
``take_lock`` (what every deploy, rollback and recover starts with) complete it, and
checks the undo's order and what was recorded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from apprepo import blue_green_table, write_config, write_env_file
from fakes import FakeProcessManager, FakeRouter, answer_gates

from slipway.config import load_config
from slipway.deploy import bluegreen, journal, runspec
from slipway.deploy.engine import Deployer, StepEvent
from slipway.deploy.journal import Journal
from slipway.deploy.run import RunState
from slipway.errors import LockLost, SlipwayError
from slipway.state import records
from slipway.state.lock import is_held
from slipway.transports.local import LocalTransport

SECRET = "tok-journal-secret-31337"
OLD, NEW = "20261101000000-aaaaaaaa", "20261102000000-bbbbbbbb"


def make_deployer(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    strategy: str = "restart",
    router: FakeRouter | None = None,
) -> tuple[Deployer, FakeProcessManager]:
    table = blue_green_table() if strategy == "blue-green" else ""
    repo = tmp_path / "repo"
    repo.mkdir()
    root = tmp_path / "srv"
    config = write_config(repo, root, strategy=strategy, blue_green=table)
    write_env_file(root, f"API_TOKEN={SECRET}\n")
    pm = FakeProcessManager()
    d = Deployer(
        load_config(config), "testing", LocalTransport(), process_manager=pm, router=router
    )
    answer_gates(monkeypatch, True)
    for release in (OLD, NEW):
        path = Path(d.layout.release(release))
        path.mkdir(parents=True)
        (path / ".slipway-release.json").write_text(json.dumps({"commit": release[-8:] * 5}))
    Path(d.layout.state_dir).mkdir(parents=True, exist_ok=True)
    return d, pm


def link_current(d: Deployer, release: str) -> None:
    """``release`` is live, as a deploy leaves it: with the records it wrote first (a
    records database missing behind a live release is an error, never recreated)."""
    if not Path(d.layout.records).exists():
        started = records.audit_event("earlier-deployer", "deploy.started", None)
        records.save(d.transport, d.layout, audit=[started])
    current = Path(d.layout.current)
    current.unlink(missing_ok=True)
    current.symlink_to(d.layout.release(release))


def leave_journal(
    d: Deployer,
    steps: list[str],
    state: RunState,
    kind: str = "deploy",
    release: str = NEW,
    previous: str = OLD,
    **assume: Any,
) -> Journal:
    """The journal a deploy of NEW over OLD (or another run) leaves when killed inside
    ``steps[-1]``."""
    row = {
        "id": "dead0000beef",
        "env": "testing",
        "ref": "v2",
        "commit_sha": "b" * 40,
        "release": release,
        "actor": "killed-deployer",
        "started_at": time.time() - 5,
        "status": "running",
        "previous_release": previous,
        "kind": kind,
    }
    started = records.audit_event("killed-deployer", "deploy.started", row["id"])
    records.save(d.transport, d.layout, deployment=row, audit=[started])
    j = Journal.begin(
        d.transport,
        d.layout,
        kind=kind,
        strategy=d.env.strategy.value,
        row=row,
        build_color="green" if d.blue_green else None,
    )
    for step in steps[:-1]:
        j.intent(step, state)
        j.done(step, state)
    j.intent(steps[-1], state, **assume)
    return j


def recover(d: Deployer) -> None:
    lock = d.take_lock(ref="next", reason="deploy", wait=0)
    lock.release()


def test_the_journal_keeps_the_worst_case_and_a_lost_lock_stops_writes(tmp_path: Path) -> None:
    transport = LocalTransport()
    from slipway.state.host import Layout

    layout = Layout(str(tmp_path), "testing")
    (tmp_path / "testing" / ".slipway").mkdir(parents=True)
    j = Journal.begin(
        transport, layout, kind="deploy", strategy="restart", row={"id": "x"}, build_color=None
    )
    state = RunState(old_color="blue")
    j.intent("switch", state, switched=True)
    saved = journal.read(transport, layout)
    assert saved is not None
    assert saved["state"]["switched"] is True and saved["state"]["old_color"] == "blue"
    assert journal.last_step(saved) == "switch" and saved["steps"][-1]["done"] is False
    j.done("switch", state)
    assert journal.read(transport, layout)["steps"][-1]["done"] is True  # type: ignore[index]
    assert oct(Path(journal.path_of(layout)).stat().st_mode & 0o777) == "0o600"

    def lost() -> None:
        raise LockLost("lost")

    j.guard = lost
    with pytest.raises(LockLost):
        j.intent("promote", state)
    assert journal.last_step(journal.read(transport, layout) or {}) == "switch"
    with pytest.raises(LockLost):
        j.close()  # a run that lost its lock never removes the journal either
    assert journal.read(transport, layout) is not None
    j.guard = lambda: None
    j.close()
    assert journal.read(transport, layout) is None


def test_restart_killed_after_the_swap_starts_the_previous_release_from_its_own_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, pm = make_deployer(tmp_path, monkeypatch)
    link_current(d, OLD)
    # OLD was built with a good start command; today's configuration has a typo.
    good = d.configured_processes()
    runspec.save(d.transport, d.layout.release(OLD), good, ["API_TOKEN"])
    typo = good["backend"].model_copy(update={"start": ["{python}", "-m", "codeframe_minii"]})
    monkeypatch.setattr(Deployer, "configured_processes", lambda self: {"backend": typo})
    leave_journal(d, ["upload", "build", "rehearse", "backup", "start"], RunState(swapped=True))
    pm.calls.clear()
    recover(d)
    names = d.app_names
    assert pm.calls[0] == ("stop", names)  # stopped before the database may be touched
    assert pm.calls[-2:] == [("start", names), ("save", [])]
    assert pm.started[names[0]].argv[1:3] == ["-m", "codeframe_mini.server"]
    assert SECRET in pm.started[names[0]].env["API_TOKEN"]  # the app gets its secret...
    row = records.deployments(d.transport, d.layout, 1)[0]
    assert row["status"] == "interrupted" and row["failed_step"] == "start"
    assert row["rolled_back_to"] == OLD
    assert SECRET not in json.dumps(row)  # ...the records never do
    assert journal.read(d.transport, d.layout) is None
    assert not is_held(d.transport, d.layout)
    incident = next(Path(d.layout.state_dir, "incidents").glob("*dead0000beef.md")).read_text()
    assert incident.startswith("# Incident: interrupted deploy in testing")
    assert "| start |" in incident
    events = [a["event"] for a in records.audit_log(d.transport, d.layout, 5)]
    assert events[:2] == ["incident.written", "deploy.interrupted"]


def test_a_run_killed_before_any_live_change_only_ends_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, pm = make_deployer(tmp_path, monkeypatch)
    link_current(d, OLD)
    leave_journal(d, ["upload", "install"], RunState())
    recover(d)
    assert pm.calls == []
    row = records.deployments(d.transport, d.layout, 1)[0]
    assert (row["status"], row["failed_step"], row["rolled_back_to"]) == (
        "interrupted",
        "install",
        OLD,  # the release live before it still is
    )
    assert d.recovered is not None and d.recovered.note == "nothing live had changed"


def test_a_run_killed_after_promote_is_rolled_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, pm = make_deployer(tmp_path, monkeypatch)
    link_current(d, NEW)
    leave_journal(d, ["start", "health", "promote"], RunState(swapped=True))
    recover(d)
    assert ("stop", d.app_names) not in pm.calls  # the serving release is never stopped
    assert d.current_release() == NEW
    assert d.recovered is not None and "had been promoted" in d.recovered.note
    assert records.deployments(d.transport, d.layout, 1)[0]["status"] == "interrupted"


def test_blue_green_killed_after_the_switch_switches_back_then_stops_the_new_colour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = FakeRouter(active="green")
    d, pm = make_deployer(tmp_path, monkeypatch, strategy="blue-green", router=router)
    link_current(d, OLD)
    pm.online |= {*d.app_names_of("blue"), *d.app_names_of("green")}
    d.write_colors({"live": {"color": "blue", "release": OLD}, "standby": None})
    state = RunState(swapped=True, old_color="blue")
    leave_journal(d, ["start", "health", "switch"], state, switched=True)
    pm.calls.clear()
    recover(d)
    assert router.switches == ["blue"]
    assert pm.calls == [("stop", d.app_names_of("green"))]
    assert d.read_colors()["live"]["color"] == "blue"
    row = records.deployments(d.transport, d.layout, 1)[0]
    assert row["status"] == "interrupted" and row["rolled_back_to"] == OLD


def test_blue_green_killed_after_promote_rewrites_the_stale_colours_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = FakeRouter(active="green")
    d, pm = make_deployer(tmp_path, monkeypatch, strategy="blue-green", router=router)
    link_current(d, NEW)
    monkeypatch.setattr(bluegreen, "schedule_retire", lambda *a: None)
    pm.online |= {*d.app_names_of("blue"), *d.app_names_of("green")}
    d.write_colors({"live": {"color": "blue", "release": OLD}, "standby": None})
    leave_journal(
        d, ["switch", "watch", "promote"], RunState(swapped=True, switched=True, old_color="blue")
    )
    recover(d)
    colors = d.read_colors()
    assert colors["live"]["color"] == "green" and colors["live"]["release"] == NEW
    assert colors["standby"]["color"] == "blue"  # kept warm, as after any deploy
    assert router.switches == []
    assert ("stop", d.app_names_of("green")) not in pm.calls


def test_an_unreadable_journal_stops_the_command_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, pm = make_deployer(tmp_path, monkeypatch)
    Path(journal.path_of(d.layout)).write_text("{not json")
    with pytest.raises(SlipwayError) as info:
        d.take_lock(ref="x", reason="deploy", wait=0)
    assert "is not readable" in str(info.value) and "remove the file" in (info.value.hint or "")
    assert pm.calls == []
    assert not is_held(d.transport, d.layout)


def test_a_rollback_killed_after_its_start_brings_back_the_release_live_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, pm = make_deployer(tmp_path, monkeypatch)
    link_current(d, NEW)  # `slipway rollback --to OLD` had not promoted yet
    leave_journal(d, ["start"], RunState(swapped=True), kind="rollback", release=OLD, previous=NEW)
    recover(d)
    name = d.app_names[0]
    assert pm.started[name].env["SLIPWAY_RELEASE"] == NEW
    assert d.current_release() == NEW
    row = records.deployments(d.transport, d.layout, 1)[0]
    assert (row["kind"], row["status"], row["rolled_back_to"]) == ("rollback", "interrupted", NEW)
    events = [a["event"] for a in records.audit_log(d.transport, d.layout, 5)]
    assert "rollback.interrupted" in events


def test_a_journal_whose_record_is_final_is_only_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, pm = make_deployer(tmp_path, monkeypatch)
    link_current(d, NEW)
    j = leave_journal(d, ["promote"], RunState(swapped=True))
    done = records.audit_event("killed-deployer", "deploy.succeeded", j.data["row"]["id"])
    records.save(
        d.transport, d.layout, deployment={**j.data["row"], "status": "succeeded"}, audit=[done]
    )
    recover(d)
    assert pm.calls == [] and d.recovered is None
    assert journal.read(d.transport, d.layout) is None
    assert records.deployments(d.transport, d.layout, 1)[0]["status"] == "succeeded"


def test_a_recovery_that_cannot_bring_a_release_back_keeps_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, _ = make_deployer(tmp_path, monkeypatch)
    link_current(d, OLD)
    leave_journal(d, ["start"], RunState(swapped=True))
    answer_gates(monkeypatch, False, "down")
    recover(d)
    assert d.recovered is not None and not d.recovered.serving
    kept = journal.read(d.transport, d.layout)
    assert kept is not None and kept["attempts"] == 1
    assert records.deployments(d.transport, d.layout, 1)[0]["rolled_back_to"] is None
    answer_gates(monkeypatch, True)
    recover(d)  # fixed: the next try succeeds and ends it
    assert d.recovered is not None and d.recovered.serving
    assert journal.read(d.transport, d.layout) is None


def test_an_interrupted_restore_starts_the_live_release_with_the_journals_strategy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, pm = make_deployer(tmp_path, monkeypatch)
    link_current(d, OLD)
    leave_journal(d, ["restore"], RunState(swapped=True), kind="restore", release=OLD)
    data = journal.read(d.transport, d.layout)
    assert data is not None and data["strategy"] == "restart"
    # The configuration changed since: the journal's strategy still decides.
    d.env = d.env.model_copy(update={"strategy": type(d.env.strategy)("blue-green")})
    recover(d)
    assert pm.started[d.app_names[0]].env["SLIPWAY_RELEASE"] == OLD
    assert d.recovered is not None and d.recovered.serving
    row = records.deployments(d.transport, d.layout, 1)[0]
    assert (row["kind"], row["status"]) == ("restore", "interrupted")


def test_recovery_failures_are_recorded_and_keep_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The undo itself fails (the router refuses, say), the incident cannot be written,
    and the journal names a strategy this version does not know: the record says so,
    the journal is kept, nothing raises."""
    from slipway.deploy import incident, restart

    d, _ = make_deployer(tmp_path, monkeypatch)
    link_current(d, OLD)
    leave_journal(d, ["start"], RunState(swapped=True))
    data = journal.read(d.transport, d.layout)
    assert data is not None
    Journal(d.transport, d.layout, {**data, "strategy": "canary-from-the-future"}).write()

    def refuses(*args: Any) -> tuple[bool, str]:
        raise SlipwayError("router refused the switch")

    def no_disk(*args: Any) -> str:
        raise SlipwayError("no space left for the report")

    monkeypatch.setattr(restart.Restart, "recover", refuses)
    monkeypatch.setattr(incident, "write", no_disk)
    recover(d)
    assert d.recovered is not None and not d.recovered.serving
    assert d.recovered.note == "recovery failed: router refused the switch"
    row = records.deployments(d.transport, d.layout, 1)[0]
    assert row["status"] == "interrupted" and "router refused" not in (row["error"] or "")
    assert journal.read(d.transport, d.layout) is not None


def test_a_promoted_release_that_is_not_healthy_is_reported_not_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, pm = make_deployer(tmp_path, monkeypatch)
    link_current(d, NEW)
    leave_journal(d, ["promote"], RunState(swapped=True))
    answer_gates(monkeypatch, False, "500s")
    recover(d)
    assert d.recovered is not None and not d.recovered.serving
    assert d.recovered.note.startswith(f"{NEW} was promoted but is not healthy: 500s")
    assert ("stop", d.app_names) not in pm.calls


def test_an_interrupted_restore_whose_release_stays_down_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, _ = make_deployer(tmp_path, monkeypatch)
    link_current(d, OLD)
    leave_journal(d, ["restore"], RunState(swapped=True), kind="restore", release=OLD)
    answer_gates(monkeypatch, False, "down")
    recover(d)
    assert d.recovered is not None and not d.recovered.serving
    assert d.recovered.note == "the live release did not come back healthy"


def test_a_lost_lock_during_a_recovery_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slipway.state.lock import DeployLock

    d, _ = make_deployer(tmp_path, monkeypatch)
    link_current(d, OLD)
    leave_journal(d, ["start"], RunState(swapped=True))
    monkeypatch.setattr(DeployLock, "lost", lambda self: True)
    with pytest.raises(LockLost):
        d.take_lock(ref="x", reason="deploy", wait=0)
    assert journal.read(d.transport, d.layout) is not None  # left for the new holder


def test_an_instant_rollback_killed_after_promote_leaves_its_drain_job_nothing_to_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instant rollback promoted OLD, named NEW's colour draining and scheduled the
    job that stops it once the lock is free; then slipway was killed. The next command
    rolls the rollback forward and rewrites the colours with a new token, so the job
    (run here for real against the files) stops nothing, and OLD's colour keeps
    serving."""
    from slipway.state import hostscript as hs

    router = FakeRouter(active="blue")
    d, pm = make_deployer(tmp_path, monkeypatch, strategy="blue-green", router=router)
    link_current(d, OLD)
    monkeypatch.setattr(bluegreen, "schedule_retire", lambda *a, **k: None)
    pm.online |= {*d.app_names_of("blue"), *d.app_names_of("green")}
    draining = {"color": "green", "release": NEW, "until": 0, "token": "t0", "draining": True}
    d.write_colors({"live": {"color": "blue", "release": OLD}, "standby": draining})
    state = RunState(swapped=True, switched=True, old_color="green")
    j = leave_journal(d, ["switch", "promote"], state, kind="rollback", release=OLD, previous=NEW)
    j.note(build_color="blue")  # the colour the rollback went to
    recover(d)
    colors = d.read_colors()
    assert colors["live"]["color"] == "blue" and colors["live"]["release"] == OLD
    assert (colors["standby"] or {}).get("token") != "t0"
    job = bluegreen.retire_request(d, "green", "t0", 0.0)
    assert job["current"] == d.layout.current  # its record never recreates a lost log
    assert hs.op_retire({**job, "wait_lock": 0}) == {"retired": False, "why": "the standby changed"}
    assert ("stop", d.app_names_of("blue")) not in pm.calls
    assert router.switches in ([], ["blue"])


def test_a_command_waits_for_a_drain_job_and_refuses_any_other_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job stopping an old colour holds the lock for one drain and labels it so: a
    rollback or deploy issued meanwhile waits for it instead of failing "locked"."""
    import subprocess
    import sys
    import threading

    from slipway.state import hostscript as hs
    from slipway.state.lock import DeployLock

    d, _ = make_deployer(tmp_path, monkeypatch, strategy="blue-green")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "pm2-calls"
    pm2 = bin_dir / "pm2"  # stands in for PM2's CLI: a drain that takes a second
    pm2.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nsleep 1\n')
    pm2.chmod(0o755)
    d.write_colors(
        {
            "live": {"color": "blue", "release": OLD},
            "standby": {"color": "green", "release": NEW, "until": 0, "token": "t1"},
        }
    )
    job = bluegreen.retire_request(d, "green", "t1", 0.0)
    job["env"] = {**job["env"], "PATH": f"{bin_dir}:{job['env'].get('PATH', '')}"}
    answers: list[dict[str, Any]] = []
    worker = threading.Thread(target=lambda: answers.append(hs.op_retire(job)))
    worker.start()
    until = time.monotonic() + 5
    while not Path(d.layout.lock_info).exists() and time.monotonic() < until:
        time.sleep(0.01)
    assert json.loads(Path(d.layout.lock_info).read_text())["reason"] == "drain"
    lock = DeployLock(d.transport, d.layout)
    owner = lock.acquire(actor="me", ref="v3", reason="deploy", wait=0)  # waited
    worker.join()
    assert answers == [{"retired": True}] and owner.reason == "deploy"
    assert d.read_colors()["standby"] is None and "delete" in calls.read_text()
    lock.release()
    assert not Path(d.layout.lock_info).exists()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a');"
            " fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)",
            d.layout.lock_file,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(SlipwayError, match="is locked by an unknown deploy"):
            DeployLock(d.transport, d.layout).acquire(actor="me", ref="v3", reason="deploy")
    finally:
        holder.kill()
        holder.wait()


def test_a_colour_left_draining_by_a_dead_job_is_stopped_by_the_next_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job draining the colour an instant rollback left was killed: colors.json
    still names it draining and its processes may still run. The next command that
    takes the lock stops it and clears the standby, so nothing runs unaccounted for;
    the job, if it ever gets the lock, finds its token gone and stops nothing."""
    from slipway.state import hostscript as hs

    d, pm = make_deployer(tmp_path, monkeypatch, strategy="blue-green")
    link_current(d, OLD)
    pm.online |= {*d.app_names_of("blue"), *d.app_names_of("green")}
    draining = {"color": "green", "release": NEW, "until": 0, "token": "t1", "draining": True}
    d.write_colors({"live": {"color": "blue", "release": OLD}, "standby": draining})
    seen: list[StepEvent] = []
    d.emit_fn = seen.append
    lock = d.take_lock(ref="x", reason="deploy", wait=0)
    lock.release()
    assert ("stop", d.app_names_of("green")) in pm.calls
    assert ("stop", d.app_names_of("blue")) not in pm.calls
    assert d.read_colors() == {"live": {"color": "blue", "release": OLD}, "standby": None}
    assert any("green" in (e.detail or "") and "left draining" in (e.detail or "") for e in seen)
    job = bluegreen.retire_request(d, "green", "t1", 0.0)
    assert hs.op_retire({**job, "wait_lock": 0}) == {"retired": False, "why": "the standby changed"}
    # With nothing left draining, the next command stops nothing.
    pm.calls.clear()
    d.take_lock(ref="x", reason="deploy", wait=0).release()
    assert not [c for c in pm.calls if c[0] == "stop"]
