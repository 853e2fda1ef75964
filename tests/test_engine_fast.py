"""The deploy pipeline end to end in about a second a deploy: a tiny git repository,
the real local transport, host helper, SQLite records and backups, with the fake
process manager (``tests/fakes.py``) and a health gate that answers as told.

The integration tests start the example app under PM2 for real; these cover the
pipeline's own branches (a lost lock, a failure that cannot be recorded, a backup
restore that does not come back) in milliseconds.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from fakes import FakeProcessManager, answer_gates, tiny_repo

from slipway.backups.restore import restore_backup
from slipway.config import load_config
from slipway.deploy import incident, journal
from slipway.deploy.engine import Deployer
from slipway.errors import DeployFailed, HealthCheckFailed, LockLost, SlipwayError, UsageError
from slipway.health.gate import GateReport
from slipway.state import records
from slipway.state.lock import DeployLock, is_held
from slipway.transports.local import LocalTransport


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Deployer, FakeProcessManager]:
    repo = tiny_repo(
        tmp_path,
        'kind = "node"\nstart = ["node", "server.js", "{port}"]',
        {"server.js": "// a stand-in: the fake process manager runs nothing\n"},
    )
    pm = FakeProcessManager()
    d = Deployer(
        load_config(repo / "slipway.toml"), "testing", LocalTransport(), process_manager=pm
    )
    answer_gates(monkeypatch, True)
    return d, pm


def fresh(d: Deployer) -> Deployer:
    return Deployer(d.loaded, "testing", LocalTransport(), process_manager=d.pm)


def test_a_deploy_runs_every_phase_and_leaves_no_journal(
    tiny: tuple[Deployer, FakeProcessManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    from slipway.deploy import engine

    d, pm = tiny
    monkeypatch.setattr(engine, "release_id", lambda source: f"20261130120000-{source.commit[:8]}")
    first = d.deploy("v1")
    outcome = fresh(d).deploy("v1")  # the same commit again, within the same second
    assert outcome.release == f"{first.release}-1"  # never the serving release's directory
    assert outcome.status == "succeeded"
    assert [s["step"] for s in outcome.steps] == [
        "lock",
        "upload",
        "link",
        "install",
        "build",
        "rehearse",
        "backup",
        "start",
        "health",
        "promote",
    ]
    assert pm.calls[-2:] == [("start", ["tiny-testing-backend"]), ("save", [])]
    assert journal.read(d.transport, d.layout) is None
    assert Path(d.layout.release(outcome.release), ".slipway-run.json").exists()


def test_a_deploy_that_loses_its_lock_stops_and_leaves_its_journal(
    tiny: tuple[Deployer, FakeProcessManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    d, pm = tiny
    seen: list[str] = []

    def lost_after_build(self: DeployLock) -> bool:
        return "build" in seen

    d.emit_fn = lambda event: seen.append(event.step)
    monkeypatch.setattr(DeployLock, "lost", lost_after_build)
    with pytest.raises(LockLost, match="lost testing's lock"):
        d.deploy("v1")
    assert ("start", ["tiny-testing-backend"]) not in pm.calls  # nothing live changed
    assert journal.read(d.transport, d.layout) is not None  # the next holder recovers it
    assert records.deployments(d.transport, d.layout, 1)[0]["status"] == "running"
    assert not is_held(d.transport, d.layout)


def test_a_failure_that_cannot_be_recorded_still_rolls_back_and_says_so(
    tiny: tuple[Deployer, FakeProcessManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    d, pm = tiny
    assert d.deploy("v1").status == "succeeded"
    d = fresh(d)
    gates: list[bool] = []

    def new_release_unhealthy(self: Deployer, *a: object, **k: object) -> GateReport:
        gates.append(not gates)  # the first gate (the new release) fails, then all pass
        return GateReport(len(gates) > 1, 2, 0, 2.0, reason="500")

    monkeypatch.setattr(Deployer, "gate_report", new_release_unhealthy)

    def records_down(*args: object, **kwargs: object) -> None:
        raise SlipwayError("records.db is not writable")

    def no_report(*args: object) -> str:
        raise SlipwayError("disk full")

    monkeypatch.setattr(incident, "write", no_report)
    real_record = Deployer.record_event

    def failing_final_record(self: Deployer, row: dict, event: str, **detail: object) -> None:
        if event == "deploy.failed":
            records_down()
        real_record(self, row, event, **detail)

    monkeypatch.setattr(Deployer, "record_event", failing_final_record)
    with pytest.raises(DeployFailed) as info:
        d.deploy("v1")
    hint = info.value.hint or ""
    assert info.value.step == "health" and info.value.rolled_back
    assert "the incident report could not be written: disk full" in hint
    assert "the failure could not be recorded: records.db is not writable" in hint
    assert pm.calls[-2:] == [("start", ["tiny-testing-backend"]), ("save", [])]


def test_a_backup_restore_whose_release_does_not_come_back_is_recovered_and_said(
    tiny: tuple[Deployer, FakeProcessManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    d, _ = tiny
    assert d.deploy("v1").status == "succeeded"
    db = Path(d.layout.database(d.env.database))
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    manifest = d.backups.create(str(db), reason="manual", release=None, commit=None)
    assert manifest is not None
    d = fresh(d)
    answer_gates(monkeypatch, False, "down")
    with pytest.raises(HealthCheckFailed) as info:
        restore_backup(d, manifest["id"])
    assert "did not come back healthy" in str(info.value)
    assert "the live release did not come back healthy" in (info.value.hint or "")
    row = records.deployments(d.transport, d.layout, 1)[0]
    assert (row["kind"], row["status"]) == ("restore", "failed")
    kept = journal.read(d.transport, d.layout)
    assert kept is not None and kept["attempts"] == 1  # `slipway recover` can try again
    answer_gates(monkeypatch, True)
    d = fresh(d)
    lock = d.take_lock(ref="recover", reason="recover", wait=0)
    lock.release()
    assert d.recovered is not None and d.recovered.serving
    assert journal.read(d.transport, d.layout) is None


def test_a_rollback_checks_the_schema_its_target_ran_on(
    tiny: tuple[Deployer, FakeProcessManager],
) -> None:
    """Each deploy saves the schema its release runs on; a rollback to it fits while
    the live schema only grew (additive), and not once a column it knew is gone."""
    from slipway.deploy.database import schema_fits

    d, _ = tiny
    db = Path(d.layout.database(d.env.database))
    db.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT)")
    release = d.deploy("v1").release
    assert set(d.release_meta(release)["schema"]["t"]["columns"]) == {"id", "a", "b"}
    assert schema_fits(fresh(d), release, release) == (True, "")
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE t ADD COLUMN c TEXT")  # additive: v1's code ignores it
    assert schema_fits(fresh(d), None, release) == (True, "")
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE t DROP COLUMN b")
    fits, why = schema_fits(fresh(d), None, release)
    assert not fits
    assert "column b removed" in why and f"against {release}'s last live schema" in why
    # A release with no saved schema and no backup to compare with: nothing to say.
    d.save_meta(release, schema=None)
    assert schema_fits(fresh(d), None, release) == (True, "")


def table_rows(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        found = [row[0] for row in conn.execute("SELECT x FROM t ORDER BY x")]
    conn.close()
    return found


def write_row(db: Path, value: int) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY, a TEXT, b TEXT)")
        conn.execute("INSERT INTO t (x) VALUES (?)", (value,))
    conn.close()


def test_a_release_without_a_saved_schema_is_checked_against_the_backup_holding_its_data(
    tiny: tuple[Deployer, FakeProcessManager],
) -> None:
    """Releases deployed before schemas were saved: the backup taken before the next
    release holds their data and its schema; any other backup says nothing."""
    from slipway.deploy.database import schema_fits

    d, _ = tiny
    db = Path(d.layout.database(d.env.database))
    write_row(db, 1)
    first = d.deploy("v1").release
    second = fresh(d).deploy("v1").release
    d.save_meta(first, schema=None)
    assert schema_fits(fresh(d), second, first) == (True, "")
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE t DROP COLUMN b")
    conn.close()
    fits, why = schema_fits(fresh(d), second, first)
    manifest = d.backups.before_deploy_of(second)
    assert not fits and f"against backup {manifest['id']}" in why and "column b removed" in why
    # The backup before `first` holds no release's data; `nowhere` has no backup at all.
    assert schema_fits(fresh(d), first, first) == (True, "")
    assert schema_fits(fresh(d), "nowhere", first) == (True, "")


def test_a_restore_that_cannot_compare_the_set_aside_copy_says_so_and_stands(
    tiny: tuple[Deployer, FakeProcessManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    from slipway.deploy import database

    d, _ = tiny
    db = Path(d.layout.database(d.env.database))
    write_row(db, 1)
    manifest = d.backups.create(str(db), reason="manual", release=None, commit=None)
    assert manifest is not None
    write_row(db, 2)

    def unreadable(*_: object) -> dict[str, int]:
        raise SlipwayError("diff: disk I/O error")

    monkeypatch.setattr(database, "set_aside_rows", unreadable)
    path = d.backups.path_of(manifest)
    note = database.restore_database(d, path, manifest["id"])
    assert "could not be compared with the restored database: diff: disk I/O error" in note
    assert table_rows(db) == [1]  # the restore was not undone by the report failing
    db.unlink()
    note = database.restore_database(fresh(d), path, manifest["id"])
    assert "there was no live database to set aside" in note
    assert table_rows(db) == [1]


def test_restore_db_restores_only_a_backup_of_the_live_release(
    tiny: tuple[Deployer, FakeProcessManager], capsys: pytest.CaptureFixture[str]
) -> None:
    """``rollback --restore-db`` after a rollback away from ``second``: the backup taken
    before ``second`` holds ``first``'s data, so it is restored only while ``first`` is
    live (else a usage error, and nothing changes)."""
    from slipway.cli.rollback import _restore_data_of
    from slipway.deploy.rollback import manual_rollback

    d, _ = tiny
    db = Path(d.layout.database(d.env.database))
    write_row(db, 1)
    first = d.deploy("v1").release
    write_row(db, 2)
    second = fresh(d).deploy("v1").release
    write_row(db, 3)
    with pytest.raises(UsageError, match=re.escape(f"holds {first}'s data, not the live")):
        _restore_data_of(fresh(d), second, 0, False)
    assert table_rows(db) == [1, 2, 3]
    assert manual_rollback(fresh(d), first).release == first
    capsys.readouterr()
    _restore_data_of(fresh(d), second, 0, True)
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["status"] == "succeeded" and "database restored from" in result["detail"]
    assert "rows only in the set-aside copy (not in the restored database): t 1" in (
        result["detail"]
    )
    assert table_rows(db) == [1, 2]


def swap_index_roots(db: Path) -> None:
    """Corruption that ``quick_check`` does not see and ``integrity_check`` does: two
    indexes point at each other's b-trees (each well formed, the wrong rows)."""
    with sqlite3.connect(db) as conn:
        conn.executescript(
            "CREATE TABLE t2 (x INTEGER); CREATE INDEX i1 ON t2 (x);"
            " CREATE TABLE u2 (x INTEGER); CREATE INDEX i2 ON u2 (x);"
        )
        conn.executemany("INSERT INTO t2 VALUES (?)", [(i,) for i in range(50)])
        conn.executemany("INSERT INTO u2 VALUES (?)", [(i + 1000,) for i in range(50)])
    roots = dict(conn.execute("SELECT name, rootpage FROM sqlite_master WHERE name LIKE 'i_'"))
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA writable_schema=ON")
        conn.execute("UPDATE sqlite_master SET rootpage=? WHERE name='i1'", (roots["i2"],))
        conn.execute("UPDATE sqlite_master SET rootpage=? WHERE name='i2'", (roots["i1"],))
    conn.close()


def test_the_deploy_backup_is_quick_checked_then_fully_checked_after_the_deploy(
    tiny: tuple[Deployer, FakeProcessManager],
) -> None:
    """The pre-deploy backup runs quick_check on the critical path and describes the
    database the failed-release rules judge against; the full integrity_check follows
    once the release is live, and a backup failing it is audited and said."""
    d, _ = tiny
    db = Path(d.layout.database(d.env.database))
    write_row(db, 1)
    outcome = d.deploy("v1")
    write_row(db, 2)
    second = fresh(d).deploy("v1")
    manifest = d.backups.before_deploy_of(second.release)
    assert manifest["check"] == "integrity_check"  # upgraded after the deploy
    assert manifest["tables"]["t"] == 2 and manifest["migrations"] == []
    assert set(manifest["schema"]["t"]["columns"]) == {"x", "a", "b"}
    assert outcome.status == second.status == "succeeded"
    swap_index_roots(db)
    third = fresh(d).deploy("v1")
    assert third.status == "succeeded"  # the copy passed quick_check; the release is live
    bad = d.backups.before_deploy_of(third.release)
    assert bad["check"] == "quick_check"  # never claimed fully checked
    events = records.audit_log(d.transport, d.layout, 20)
    failed = [e for e in events if e["event"] == "backup.check_failed"]
    assert failed and "missing from index" in str(failed[0]["detail"])


def test_a_backup_with_the_full_check_refuses_what_quick_check_lets_through(
    tiny: tuple[Deployer, FakeProcessManager],
) -> None:
    d, _ = tiny
    db = Path(d.layout.database(d.env.database))
    write_row(db, 1)
    swap_index_roots(db)
    quick = d.backups.create(str(db), reason="manual", release=None, commit=None, quick=True)
    assert quick is not None and quick["check"] == "quick_check"
    with pytest.raises(SlipwayError, match=r"failed integrity_check: row \d+ missing from index"):
        d.backups.full_check(quick)
    with pytest.raises(SlipwayError, match="backup failed integrity_check"):
        d.backups.create(str(db), reason="manual", release=None, commit=None)


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing catches it (finally blocks still run, as the
    kernel's release of the lock on a real kill)."""


@pytest.mark.parametrize("event", ["deploy.started", "rollback.started"])
def test_a_run_killed_before_its_first_record_is_still_ended_by_the_next(
    tiny: tuple[Deployer, FakeProcessManager], monkeypatch: pytest.MonkeyPatch, event: str
) -> None:
    """The journal is written before the record: a kill between them once left a
    record `running` that no command would ever end."""
    from slipway.deploy.rollback import manual_rollback

    d, _ = tiny
    first = d.deploy("v1")
    fresh(d).deploy("v1")
    real = Deployer.record_event

    def killed_at_start(self: Deployer, row: dict, name: str, **detail: object) -> None:
        if name == event:
            raise _Killed()
        real(self, row, name, **detail)

    monkeypatch.setattr(Deployer, "record_event", killed_at_start)
    with pytest.raises(_Killed):
        if event == "deploy.started":
            fresh(d).deploy("v1")
        else:
            manual_rollback(fresh(d), first.release)
    monkeypatch.setattr(Deployer, "record_event", real)
    assert journal.read(d.transport, d.layout) is not None  # what the next command reads
    fresh(d).deploy("v1")
    rows = records.deployments(d.transport, d.layout, 10)
    assert [r for r in rows if r["status"] == "running"] == []
    assert "interrupted" in [r["status"] for r in rows]
