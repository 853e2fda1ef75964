"""The database side of a blue-green deploy, under write load: each release's migrations
are rehearsed on a copy and the class decides the deploy.

Real Traefik, PM2, the example app and SQLite; writers POST unique rows through the
public port the whole time (``tests/writeload.py``) and WebSocket clients stay connected.
The claims: a destructive release is refused before anything live changes and loses no
row; an additive one switches as usual and keeps the old colour warm; a breaking one
takes the hold without being told, so no write fails and none acknowledged by the old
code is missing from the backup; an allowed destructive one is audited and written up.
Tests run in order on one environment.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import TOOLS_BIN, require_binary, run_cli
from test_bluegreen import Env
from writeload import Traffic, rows

from slipway.errors import DeployFailed
from slipway.state import records
from slipway.transports.local import LocalTransport

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_binary("pm2", path=str(TOOLS_BIN))
    require_binary("traefik", path=str(Path(sys.executable).parent))
    e = Env(tmp_path_factory.mktemp("migrations"), standby=300, watch=1)
    yield e
    e.pm2("kill")


def database(env: Env) -> Path:
    return env.root / "testing" / ".codeframe" / "state.db"


def table_info(env: Env) -> list[str]:
    with sqlite3.connect(f"file:{database(env)}?mode=ro", uri=True) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(projects)")]


def audit_events(env: Env) -> list[dict[str, object]]:
    return records.audit_log(LocalTransport(), env.deployer().layout, 50)


def assert_every_write_kept(env: Env, traffic: Traffic) -> None:
    writes = traffic.writes
    failed = [w for w in writes if w.status != 201]
    assert writes and not failed, failed[:5]
    assert {w.name for w in writes} <= rows(database(env))
    assert not traffic.ws_failures, traffic.ws_failures[:3]


def test_a_first_deploy_has_nothing_to_rehearse(env: Env) -> None:
    outcome = env.deployer().deploy("v1")
    assert outcome.status == "succeeded" and outcome.rehearsal is None
    assert any(e.step == "rehearse" and "nothing to rehearse" in e.detail for e in env.events)


def test_a_destructive_release_is_refused_before_anything_live_changes(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    colors = env.colors()
    with Traffic(env.port) as traffic:
        code, out, err = run_cli(
            ["--config", str(env.config_path), "deploy", "testing", "--ref", "v3"], capsys
        )
    assert code == 1, out + err
    assert "deploy failed at step 'rehearse'" in err
    assert "this release's migrations lose data: projects:" in err
    assert "rows lost (rows " in err and " -> 0)" in err
    assert "--allow-data-loss projects" in err
    assert env.colors() == colors
    assert "status" not in table_info(env)  # v3's migration never ran on the live file
    assert_every_write_kept(env, traffic)
    row = records.deployments(LocalTransport(), env.deployer().layout, 1)[0]
    found = row["rehearsal"]  # decoded by the records reader
    assert found["class"] == "destructive"
    projects = next(t for t in found["tables"] if t["table"] == "projects")
    assert projects["rows_after"] == 0 and projects["rows_before"] > 0
    assert "deploy.rehearsed" in [e["event"] for e in audit_events(env)]


def test_plan_rehearse_says_the_class_and_changes_nothing(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ["--config", str(env.config_path)]
    colors, releases = env.colors(), sorted((env.root / "testing" / "releases").iterdir())
    code, out, err = run_cli([*config, "plan", "testing", "--ref", "v3", "--rehearse"], capsys)
    assert code == 1, out + err
    assert "rehearsal on local: migrations destructive: projects:" in out
    assert "a deploy would be refused" in out
    code, out, err = run_cli(
        [*config, "plan", "testing", "--ref", "v2", "--rehearse", "--json"], capsys
    )
    assert code == 0, err
    assert json.loads(out)["rehearsal"]["class"] == "additive"
    assert env.colors() == colors
    assert sorted((env.root / "testing" / "releases").iterdir()) == releases  # scratch gone


def test_an_additive_release_switches_as_usual_and_keeps_the_old_colour_warm(env: Env) -> None:
    old = env.colors()["live"]
    with Traffic(env.port) as traffic:
        outcome = env.deployer().deploy("v2")
    assert outcome.status == "succeeded"
    assert outcome.rehearsal is not None and outcome.rehearsal["class"] == "additive"
    assert "hold" not in [s["step"] for s in outcome.steps]
    assert env.colors()["standby"]["release"] == old["release"]  # instant rollback kept
    assert_every_write_kept(env, traffic)


def test_restore_db_after_an_instant_rollback_puts_the_older_data_back(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """v1's code fits v2's additive schema: the rollback is an instant switch. Then
    `rollback --restore-db` alone restores the backup taken before v2, under a hold."""
    config = ["--config", str(env.config_path)]
    code, out, err = run_cli([*config, "rollback", "testing", "--json"], capsys)
    assert code == 0, out + err
    assert "switched to the warm" in json.loads(out.splitlines()[-1])["detail"]
    assert "description" in table_info(env)  # v2's column is still there
    with Traffic(env.port) as traffic:
        code, out, err = run_cli([*config, "rollback", "testing", "--restore-db"], capsys)
    assert code == 0, out + err
    assert "database restored from" in out and "held requests released" in out
    assert "description" not in table_info(env)  # as before v2 was deployed
    failed = [w for w in traffic.writes if w.status != 201]
    assert traffic.writes and not failed, failed[:5]


def test_a_breaking_release_takes_the_hold_without_being_told(env: Env) -> None:
    old = env.colors()["live"]["color"]
    with Traffic(env.port) as traffic:
        d = env.deployer()
        outcome = d.deploy("v2-rebuild")  # not marked breaking anywhere
    assert outcome.status == "succeeded", outcome
    assert outcome.rehearsal is not None and outcome.rehearsal["class"] == "breaking"
    steps = [s["step"] for s in outcome.steps]
    assert steps.index("rehearse") < steps.index("hold") < steps.index("backup")
    assert_every_write_kept(env, traffic)
    # The old code never wrote after the backup: all it acknowledged is in the backup.
    by_old = {w.name for w in traffic.writes if w.color == old}
    manifest = d.backups.before_deploy_of(outcome.release)
    assert by_old <= rows(Path(d.backups.path_of(manifest)))
    assert manifest["release"] != outcome.release  # labelled with the release it holds
    assert env.colors()["standby"] is None  # the old code cannot run on the new schema
    assert "status" in table_info(env)


def test_a_rollback_across_a_schema_change_restores_under_a_hold(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """v2's code cannot write to v2-rebuild's table (a NOT NULL column it does not know):
    the rollback restores the backup taken before v2-rebuild, holding requests meanwhile,
    and reports the writes it set aside."""
    with Traffic(env.port) as traffic:
        code, out, err = run_cli(
            ["--config", str(env.config_path), "rollback", "testing", "--json"], capsys
        )
    assert code == 0, out + err
    detail = json.loads(out.splitlines()[-1])["detail"]
    assert "the schema changed since" in detail
    # v2-rebuild acknowledged writes after the backup: taken off the site, and said so.
    assert "rows only in the set-aside copy (not in the restored database): projects" in detail
    assert "status" not in table_info(env)  # v2's schema again
    failed = [w for w in traffic.writes if w.status != 201]
    assert traffic.writes and not failed, failed[:5]
    acked = {w.name for w in traffic.writes if w.status == 201}
    missing = acked - rows(database(env))
    d = env.deployer()
    aside = next(m for m in d.backups.list() if m["reason"] == "pre-restore")
    assert missing <= rows(Path(d.backups.path_of(aside)))  # set aside, never destroyed
    restored = [e for e in audit_events(env) if e["event"] == "database.restored"]
    assert restored, "the restore and what it set aside are audited"


def test_allowed_data_loss_is_audited_and_written_up(env: Env) -> None:
    with Traffic(env.port) as traffic:
        d = env.deployer()
        outcome = d.deploy("v3", allow_data_loss=["projects"])
    assert outcome.status == "succeeded"
    assert outcome.rehearsal is not None
    assert outcome.rehearsal["allowed_data_loss"] == ["projects"]
    assert "hold" in [s["step"] for s in outcome.steps]
    failed = [w for w in traffic.writes if w.status != 201]
    assert not failed, failed[:5]
    allowed = [e for e in audit_events(env) if e["event"] == "data_loss.allowed"]
    detail = allowed[0]["detail"]
    tables = (json.loads(detail) if isinstance(detail, str) else detail)["tables"]
    assert tables["projects"][1] == 0 and tables["projects"][0] > 0  # [before, after]
    incidents = list((env.root / "testing" / ".slipway" / "incidents").glob("*.md"))
    assert any("data loss allowed" in p.read_text() for p in incidents)
    warnings = [e.detail for e in env.events if e.status == "warning"]
    assert any("data loss allowed by tester: projects" in w for w in warnings)


def test_a_backup_restore_holds_requests_and_reports_what_it_set_aside(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ["--config", str(env.config_path)]
    code, out, err = run_cli([*config, "backup", "testing", "create", "--json"], capsys)
    assert code == 0, err
    backup_id = json.loads(out)["id"]
    with Traffic(env.port) as traffic:
        code, out, err = run_cli([*config, "backup", "testing", "restore", backup_id], capsys)
    assert code == 0, out + err
    failed = [w for w in traffic.writes if w.status != 201]
    assert traffic.writes and not failed, failed[:5]  # held at the proxy, not refused
    assert "held requests released" in out
    acked = {w.name for w in traffic.writes if w.status == 201}
    missing = acked - rows(database(env))
    assert missing, "writes between the backup and the restore are taken off the live site"
    assert "rows only in the set-aside copy (not in the restored database): projects" in out
    d = env.deployer()
    aside = next(m for m in d.backups.list() if m["reason"] == "pre-restore")
    assert missing <= rows(Path(d.backups.path_of(aside)))
    code, out, err = run_cli(
        [*config, "backup", "testing", "diff", aside["id"], backup_id, "--json"], capsys
    )
    assert code == 0, err
    assert json.loads(out)["only_first"]["projects"] >= len(missing)
    # verify without an id checks a backup of the live database, not the set-aside copy
    code, out, err = run_cli([*config, "backup", "testing", "verify"], capsys)
    assert code == 0 and "pre-restore" not in out, out + err


def test_a_crash_cause_reaches_the_error_and_the_incident(env: Env) -> None:
    """Without the rehearsal a crashing release fails live, at its gate: the error and
    the incident report carry its own last output lines, not only "crash-looping"."""
    with pytest.raises(DeployFailed) as failed:
        env.deployer().deploy("broken/crash", rehearse=False)
    assert failed.value.step == "health" and failed.value.rolled_back
    assert "crashing at start (variant crash)" in str(failed.value)
    assert ".err.log (last 30 lines)" in str(failed.value)
    hint = failed.value.hint or ""
    path = Path(hint.split("incident report: ", 1)[1].split(";", 1)[0].strip())
    assert "crashing at start (variant crash)" in path.read_text()
