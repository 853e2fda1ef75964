"""The audit log as evidence: a hash chain that shows rows changed, removed or inserted
behind slipway's back, deployment rows it vouches for, a records database that is never
recreated silently, and text fields that cannot forge what a terminal shows.

Each case here once passed unnoticed on main: `DROP TRIGGER` then UPDATE/DELETE hid a
failed deploy from `audit` and `metrics`; a records.db truncated to 0 bytes was made
again empty; an actor holding a newline forged a line of `slipway audit`. Real SQLite
files, the host helper in-process and the CLI in-process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from apprepo import make_repo, write_config
from support import run_cli

from slipway.state import heads
from slipway.state import hostscript as hs


def event(name: str, deployment: str | None = None, **detail: Any) -> dict[str, Any]:
    return {
        "at": 1_700_000_000.5,
        "actor": "ci",
        "event": name,
        "deployment_id": deployment,
        "detail": detail,
    }


def deployment(dep_id: str, status: str) -> dict[str, Any]:
    return {
        "id": dep_id,
        "env": "testing",
        "ref": "v1",
        "commit_sha": "abc",
        "release": "r1",
        "actor": "ci",
        "started_at": time.time() - 60,
        "finished_at": time.time() - 30,
        "kind": "deploy",
        "status": status,
    }


def history(records: str, second: str = "failed") -> None:
    """Two deploys, the second failed (unless ``second`` says otherwise): five audit
    rows."""
    hs.op_record(
        {
            "records": records,
            "deployment": deployment("d1", "running"),
            "audit": [event("deploy.started", "d1")],
        }
    )
    hs.op_record(
        {
            "records": records,
            "deployment": deployment("d1", "succeeded"),
            "audit": [event("deploy.succeeded", "d1")],
        }
    )
    hs.op_record(
        {
            "records": records,
            "deployment": deployment("d2", "running"),
            "audit": [event("deploy.started", "d2")],
        }
    )
    hs.op_record(
        {
            "records": records,
            "deployment": deployment("d2", second),
            "audit": [event(f"deploy.{second}", "d2", step="health")],
        }
    )
    hs.op_record({"records": records, "audit": [event("notify.sent", "d2")]})


def tamper(records: str, *statements: str) -> None:
    """What someone with write access to the file can do: drop the append-only triggers
    and edit at will."""
    conn = sqlite3.connect(records, isolation_level=None)
    conn.execute("DROP TRIGGER audit_append_only_u")
    conn.execute("DROP TRIGGER audit_append_only_d")
    for statement in statements:
        conn.execute(statement)
    conn.close()


def verify(records: str, head: dict[str, Any] | None = None) -> dict[str, Any]:
    return hs.op_audit_verify({"records": records, "heads": [head] if head else []})


@pytest.fixture
def records(tmp_path: Path) -> str:
    path = str(tmp_path / "testing" / ".slipway" / "records.db")
    history(path)
    return path


def test_an_untouched_log_verifies_and_its_head_is_the_last_row(records: str):
    report = verify(records)
    assert report["ok"] and report["problems"] == [] and report["rows"] == 5
    last = hs.op_query({"records": records, "table": "audit", "limit": 1})["rows"][0]
    assert report["head"] == {"id": last["id"], "hash": last["hash"]} and last["id"] == 5
    assert verify(records, report["head"])["ok"]


def test_a_changed_row_is_named(records: str):
    tamper(records, "UPDATE audit SET event='deploy.succeeded' WHERE event='deploy.failed'")
    report = verify(records)
    assert not report["ok"]
    assert report["problems"][0] == "audit row 4 (deploy.succeeded): changed after it was written"


def test_a_removed_row_is_named_by_the_row_after_it(records: str):
    tamper(records, "DELETE FROM audit WHERE event='deploy.failed'")
    report = verify(records)
    assert report["problems"][0].startswith("audit row 5: the row before it (after row 3)")


def test_removed_last_rows_are_found(records: str):
    tamper(records, "DELETE FROM audit WHERE id >= 4")
    assert verify(records)["problems"] == [
        "audit rows after row 3 (up to 5) were removed",
        "deployment d2: changed after its last audit row",  # the failure's row is gone
    ]


def test_a_deployment_row_changed_after_its_audit_row_is_named(records: str):
    """The deployments table has no trigger and is updated by every step: the audit row
    saved with each update vouches for the row's content."""
    conn = sqlite3.connect(records, isolation_level=None)
    conn.execute("UPDATE deployments SET status='succeeded' WHERE id='d2'")
    conn.close()
    assert verify(records)["problems"] == ["deployment d2: changed after its last audit row"]
    conn = sqlite3.connect(records, isolation_level=None)
    conn.execute(
        "INSERT INTO deployments (id, env, ref, commit_sha, release, actor,"
        " started_at, status) VALUES ('d9','testing','v9','f','r9','x',9,'succeeded')"
    )
    conn.close()
    assert "deployment d9: no audit row vouches for it" in verify(records)["problems"]


def test_a_whole_rewritten_chain_is_caught_by_a_head_kept_elsewhere(records: str):
    seen = verify(records)["head"]
    tamper(records, "DELETE FROM audit", "DELETE FROM deployments", "DELETE FROM sqlite_sequence")
    os.remove(records)  # and a fresh, self-consistent history in its place
    history(records, second="succeeded")
    assert verify(records)["ok"]  # consistent in itself ...
    report = verify(records, seen)  # ... but not the log the deployer saw
    assert report["problems"] == [
        f"audit row 5, seen with hash {seen['hash'][:16]} by the deployer, is no longer in"
        " the log as it was"
    ]


def test_an_emptied_or_missing_records_database_is_an_error_never_made_again(
    records: str, tmp_path: Path
):
    current = tmp_path / "testing" / "current"
    current.symlink_to("releases/r1")
    with open(records, "w"):
        pass  # truncated to 0 bytes
    answer = hs.answer(
        {"op": "query", "records": records, "current": str(current), "table": "audit"}
    )
    assert answer["error"].endswith("is empty (0 bytes): it was truncated")
    assert "--new-log" in answer["hint"]
    answer = hs.answer(
        {
            "op": "record",
            "records": records,
            "current": str(current),
            "audit": [event("deploy.started")],
        }
    )
    assert "is empty (0 bytes)" in answer["error"]
    assert os.path.getsize(records) == 0  # nothing written over the evidence
    os.remove(records)
    for op in ("query", "record", "audit_verify"):
        answer = hs.answer(
            {
                "op": op,
                "records": records,
                "current": str(current),
                "table": "audit",
                "audit": [event("deploy.started")],
            }
        )
        assert "is missing, but this environment has releases" in answer["error"], op
    assert not os.path.exists(records)
    # Before the first release there is nothing to lose: the first deploy creates it.
    current.unlink()
    assert hs.answer(
        {"op": "query", "records": records, "current": str(current), "table": "audit"}
    ) == {"rows": []}
    hs.op_record({"records": records, "current": str(current), "audit": [event("a")]})
    assert oct(os.stat(records).st_mode & 0o777) == "0o600"


def test_a_file_that_is_not_a_database_is_an_error_with_the_way_out(records: str):
    Path(records).write_bytes(b"x" * 5000)
    for suffix in ("-wal", "-shm"):
        Path(records + suffix).unlink(missing_ok=True)
    answer = hs.answer({"op": "query", "records": records, "table": "audit"})
    assert "is unreadable" in answer["error"] and "--new-log" in answer["hint"]


def test_a_new_log_keeps_the_old_file_and_says_so_in_its_first_row(records: str):
    with open(records, "w"):
        pass
    answer = hs.op_records_new({"records": records, "actor": "ops", "reason": "disk fault"})
    assert answer["previous"].startswith(records + ".broken-")
    assert os.path.getsize(answer["previous"]) == 0
    [row] = hs.op_query({"records": records, "table": "audit"})["rows"]
    assert row["event"] == "audit.new_log" and row["actor"] == "ops"
    assert json.loads(row["detail"]) == {"previous": answer["previous"], "reason": "disk fault"}
    assert verify(records)["ok"]


def test_records_from_before_the_chain_are_sealed_once_and_verify(tmp_path: Path):
    path = str(tmp_path / "records.db")
    old_schema = """
    CREATE TABLE deployments (id TEXT PRIMARY KEY, env TEXT NOT NULL, ref TEXT NOT NULL,
      commit_sha TEXT NOT NULL, release TEXT NOT NULL, actor TEXT NOT NULL,
      started_at REAL NOT NULL, finished_at REAL, duration_s REAL, status TEXT NOT NULL,
      failed_step TEXT, error TEXT, previous_release TEXT, rolled_back_to TEXT,
      kind TEXT NOT NULL DEFAULT 'deploy', steps TEXT NOT NULL DEFAULT '[]');
    CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
      actor TEXT NOT NULL, deployment_id TEXT, event TEXT NOT NULL,
      detail TEXT NOT NULL DEFAULT '{}');
    CREATE TRIGGER audit_append_only_u BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
    INSERT INTO deployments (id, env, ref, commit_sha, release, actor, started_at, status)
      VALUES ('old1', 'testing', 'v1', 'abc', 'r1', 'ci', 1, 'succeeded');
    INSERT INTO audit (at, actor, deployment_id, event) VALUES (1, 'ci', 'old1', 'deploy.started');
    INSERT INTO audit (at, actor, deployment_id, event) VALUES (2, 'ci', 'old1', 'deploy.succeeded');
    """
    conn = sqlite3.connect(path)
    conn.executescript(old_schema)
    conn.close()
    rows = hs.op_query({"records": path, "table": "audit"})["rows"]
    assert [r["event"] for r in rows] == ["audit.chained", "deploy.succeeded", "deploy.started"]
    assert json.loads(rows[0]["detail"])["rows"] == 2
    assert verify(path)["ok"]
    hs.op_record({"records": path, "audit": [event("deploy.started")]})  # no second seal
    assert [r["event"] for r in hs.op_query({"records": path, "table": "audit"})["rows"]][:2] == [
        "deploy.started",
        "audit.chained",
    ]
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit SET actor='x'")
    conn.close()
    tamper(path, "UPDATE deployments SET status='failed' WHERE id='old1'")
    assert verify(path)["problems"] == ["deployment old1: changed after its last audit row"]


def test_no_text_field_carries_control_characters(tmp_path: Path):
    """Stripped where they are written (whoever wrote them); newlines stay where a
    field has several lines (an error's output)."""
    path = str(tmp_path / "records.db")
    forged = "x\n2026-11-30 09:00:00  alice  deploy.succeeded \x1b[2K\u202eevil"
    row = {
        **deployment("d1", "failed"),
        "ref": forged,
        "error": "line 1\nline 2\x1b[31m\x00",
        "steps": json.dumps([{"step": forged}]),
    }
    hs.op_record(
        {
            "records": path,
            "deployment": row,
            "audit": [{**event("deploy.failed", "d1", output=forged), "actor": forged}],
        }
    )
    [saved] = hs.op_query({"records": path, "table": "deployments"})["rows"]
    assert saved["ref"] == "x2026-11-30 09:00:00  alice  deploy.succeeded [2Kevil"
    assert saved["error"] == "line 1\nline 2[31m"
    assert json.loads(saved["steps"]) == [
        {"step": "x\n2026-11-30 09:00:00  alice  deploy.succeeded [2Kevil"}
    ]
    [audit] = hs.op_query({"records": path, "table": "audit"})["rows"]
    assert audit["actor"] == "x2026-11-30 09:00:00  alice  deploy.succeeded [2Kevil"
    assert "\x1b" not in audit["detail"] and "\\u001b" not in audit["detail"]
    assert verify(path)["ok"]


# --- the CLI -------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path]:
    repo = make_repo(tmp_path / "repo")
    root = tmp_path / "srv"
    config = write_config(repo, root)
    history(str(root / "testing" / ".slipway" / "records.db"))
    (root / "testing" / "releases" / "r1").mkdir(parents=True)
    (root / "testing" / "current").symlink_to("releases/r1")
    return config, root / "testing" / ".slipway" / "records.db"


def test_cli_verify_exits_1_naming_the_break_and_metrics_warns(project, capsys):
    config, records = project
    cli = ["--config", str(config)]
    code, out, err = run_cli([*cli, "audit", "testing", "--verify"], capsys)
    assert code == 0, err
    assert out.startswith("testing on local: audit log verified (5 rows, head 5:")
    code, out, err = run_cli([*cli, "metrics", "testing", "--json"], capsys)
    assert code == 0 and json.loads(out)[0]["failed"] == 1 and "warning" not in err
    tamper(
        str(records),
        "DELETE FROM audit WHERE event='deploy.failed'",
        "UPDATE deployments SET status='succeeded' WHERE id='d2'",
    )
    code, out, err = run_cli([*cli, "audit", "testing", "--verify"], capsys)
    assert code == 1
    assert "audit log FAILS verification" in err
    assert "audit row 5: the row before it (after row 3) was removed" in err
    code, out, err = run_cli([*cli, "metrics", "testing", "--json"], capsys)
    assert code == 0 and json.loads(out)[0]["failed"] == 0  # what the edit wanted ...
    assert "warning: testing on local: the records fail verification" in err  # ... said


def test_cli_verify_checks_the_head_this_machine_saw_and_one_given(project, capsys):
    config, records = project
    cli = ["--config", str(config)]
    assert run_cli([*cli, "audit", "testing", "--verify"], capsys)[0] == 0
    seen = heads.recall(heads.key("local", str(records.parent.parent)))
    assert seen is not None and seen["id"] == 5
    tamper(
        str(records), "DELETE FROM audit", "DELETE FROM deployments", "DELETE FROM sqlite_sequence"
    )
    records.unlink()
    history(str(records), second="succeeded")
    code, _, err = run_cli([*cli, "audit", "testing", "--verify"], capsys)
    assert code == 1 and "seen with hash" in err
    code, _, err = run_cli([*cli, "audit", "testing", "--verify", "--head", "5:zz"], capsys)
    assert code == 2 and "is not ROW:HASH" in err and "Traceback" not in err


def test_cli_an_emptied_records_database_then_a_new_log(project, capsys):
    config, records = project
    cli = ["--config", str(config)]
    with open(records, "w"):
        pass
    for args in (["audit", "testing"], ["status", "testing"], ["metrics", "testing"]):
        code, _, err = run_cli([*cli, *args], capsys)
        assert code == 1, args
        assert "is empty (0 bytes): it was truncated" in err and "--new-log" in err
        assert "Traceback" not in err
    code, _, err = run_cli([*cli, "audit", "testing", "--new-log"], capsys)
    assert code == 2 and "--reason" in err
    code, out, err = run_cli([*cli, "audit", "testing", "--new-log", "--reason", "disk"], capsys)
    assert code == 0, err
    assert "new audit log started; the old file is kept as" in out
    assert run_cli([*cli, "audit", "testing", "--verify"], capsys)[0] == 0


def test_cli_audit_shows_old_control_characters_escaped(project, capsys):
    """Rows written before the helper stripped control characters cannot act on the
    terminal either."""
    config, records = project
    conn = sqlite3.connect(records, isolation_level=None)
    conn.execute("DROP TRIGGER audit_append_only_u")
    conn.execute("UPDATE audit SET actor=? WHERE id=1", ("x\n2026-11-30 alice \x1b[2K",))
    conn.close()
    code, out, _ = run_cli(["--config", str(config), "audit", "testing"], capsys)
    assert code == 0
    assert "x\\n2026-11-30 alice \\x1b[2K" in out and "\x1b" not in out


def test_an_environment_never_deployed_verifies_empty(tmp_path: Path):
    records = str(tmp_path / "staging" / ".slipway" / "records.db")
    current = str(tmp_path / "staging" / "current")
    report = hs.op_audit_verify({"records": records, "current": current})
    assert report == {"ok": True, "rows": 0, "problems": [], "head": None}
    assert not os.path.exists(records)


def test_a_new_log_is_refused_for_a_sound_records_database(records: str):
    """`audit --new-log` runs on every host: a healthy log (what rollback reads) stays."""
    answer = hs.answer({"op": "records_new", "records": records, "actor": "ops", "reason": "x"})
    assert answer["error"].endswith("is readable and verifies: it is kept")
    assert verify(records)["rows"] == 5


def test_a_new_log_never_overwrites_an_earlier_aside(records: str):
    for _ in range(2):
        with open(records, "w"):
            pass
        hs.op_records_new({"records": records, "actor": "ops", "reason": "disk"})
    asides = sorted(p.name for p in Path(records).parent.glob("records.db.broken-*"))
    assert len(asides) == 2, asides  # the same second twice: two files


def test_a_row_without_a_hash_is_refused(records: str):
    """A slipway from before the chain appending a row would break it for good."""
    conn = sqlite3.connect(records, isolation_level=None)
    with pytest.raises(sqlite3.DatabaseError, match="audit rows must be chained"):
        conn.execute("INSERT INTO audit (at, actor, event) VALUES (1, 'old', 'deploy.started')")
    conn.close()
    assert verify(records)["ok"]


def test_verify_sees_one_snapshot_while_a_writer_appends(records: str):
    """A deploy (or the retire job) writing during `--verify` is not a break."""
    import threading

    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            hs.op_record(
                {
                    "records": records,
                    "deployment": deployment("d3", f"s{n}"),
                    "audit": [event("deploy.step", "d3", n=n)],
                }
            )

    writer = threading.Thread(target=write)
    writer.start()
    try:
        reports = [verify(records) for _ in range(40)]
    finally:
        stop.set()
        writer.join()
    assert [r["problems"] for r in reports if not r["ok"]] == []
    assert reports[-1]["rows"] > 5


def test_the_retire_job_never_recreates_a_missing_records_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The job a blue-green deploy leaves to stop the old colour records its end; with
    the records gone it once made a new, empty log that verified."""
    records = tmp_path / "testing" / ".slipway" / "records.db"
    current = tmp_path / "testing" / "current"
    current.parent.mkdir(parents=True)
    current.symlink_to("releases/r1")
    colors = tmp_path / "colors.json"
    colors.write_text(json.dumps({"live": None, "standby": {"token": "t", "color": "green"}}))
    job = {
        "colors": str(colors),
        "token": "t",
        "records": str(records),
        "current": str(current),
        "names": [],
        "env": {"PM2_HOME": str(tmp_path / "pm2")},
        "actor": "retire",
    }
    monkeypatch.setattr(hs, "op_pm2_delete", lambda req: {"deleted": 0})  # no PM2 here
    monkeypatch.setattr(hs, "op_pm2_save", lambda req: {"saved": 0})
    with pytest.raises(hs.HostProblem, match="is missing, but this environment has releases"):
        hs._retire_locked(job)
    assert not records.exists()


def test_a_stray_file_or_a_scratch_being_made_survives_the_sweep(tmp_path: Path):
    scratch = tmp_path / ".scratch"
    opened = hs.op_scratch_open({"dir": str(scratch)})
    (scratch / "stray.txt").write_text("?")
    (scratch / "making-abc").mkdir()  # another command between mkdtemp and its lock
    old = scratch / "killed"
    old.mkdir()
    (old / ".lock").write_text("")  # a killed command's: its lock is free
    (old / "identity").write_text("AGE-SECRET-KEY")
    assert hs.op_scratch_sweep({"dir": str(scratch)})["removed"] == ["killed"]
    assert sorted(p.name for p in scratch.iterdir()) == sorted(
        [Path(opened["path"]).name, "making-abc", "stray.txt"]
    )
    hs.op_scratch_close({"path": opened["path"]})


def test_a_deploy_never_replaces_the_head_of_a_chain_that_was_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Someone cuts the chain's tail and waits for the next deploy: its new head must
    not replace the one this machine saw (which exposes the cut)."""
    from fakes import FakeProcessManager, answer_gates, tiny_repo

    from slipway.config import load_config
    from slipway.deploy.engine import Deployer
    from slipway.transports.local import LocalTransport

    repo = tiny_repo(tmp_path, 'kind = "node"\nstart = ["node", "s.js", "{port}"]', {"s.js": ""})
    answer_gates(monkeypatch, True)
    events: list[Any] = []

    def deployer() -> Deployer:
        loaded = load_config(repo / "slipway.toml")
        pm = FakeProcessManager()
        return Deployer(loaded, "testing", LocalTransport(), process_manager=pm, emit=events.append)

    d = deployer()
    assert d.deploy("v1").status == "succeeded"
    name = heads.key("local", d.layout.base)
    seen = heads.recall(name)
    assert (
        seen is not None
        and hs.op_audit_verify({"records": d.layout.records, "heads": [seen]})["ok"]
    )
    tamper(
        d.layout.records,
        f"DELETE FROM audit WHERE id > {seen['id'] - 3}",
        f"UPDATE sqlite_sequence SET seq = {seen['id'] - 3} WHERE name = 'audit'",
    )
    assert deployer().deploy("v1").status == "succeeded"
    assert heads.recall(name) == seen  # kept: `audit --verify` still shows the cut
    warnings = [e.detail for e in events if e.status == "warning"]
    assert any("the audit log fails verification" in w for w in warnings), warnings
