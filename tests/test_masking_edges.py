"""Masking happens at the edges only: what slipway reads back from a host is never masked.

Env files hold settings beside secrets. Values such as ``false``, ``null``, ``exists``,
``1``, ``ok`` or the project's own name once turned the host helper's JSON answers and
PM2's process list into garbage (``{"ok": *****}``). These tests run the real host
helper and a real SQLite records database through a transport whose masker knows those
values, and check that a real secret is still masked wherever people read it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from support import run_cli

from slipway.errors import CommandFailed
from slipway.processes.pm2 import Pm2
from slipway.secrets import MASK, Masker
from slipway.state import records
from slipway.state.host import Layout, call
from slipway.transports.local import LocalTransport

SECRET = "tok-edge-secret-9931"
COMMON_VALUES = ["false", "true", "null", "exists", "1", "ok", "codeframe-mini", "backend"]


def transport_knowing_values() -> LocalTransport:
    return LocalTransport(masker=Masker([*COMMON_VALUES, SECRET]))


def test_host_answers_are_parsed_unmasked(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO projects (name) VALUES ('codeframe-mini')")
    transport = transport_knowing_values()
    described = call(transport, "describe", db=str(db))
    assert described["exists"] is True
    assert described["tables"] == {"projects": 1}
    layout = Layout(str(tmp_path), "testing")
    (tmp_path / "testing" / ".slipway").mkdir(parents=True)
    row = {
        "id": "abc123",
        "env": "testing",
        "ref": "v1",
        "commit_sha": "0" * 40,
        "release": "r1",
        "actor": "tester",
        "started_at": 1.0,
        "status": "succeeded",
        "kind": "deploy",
    }
    done = records.audit_event("tester", "deploy.succeeded", "abc123")
    records.save(transport, layout, deployment=row, audit=[done])
    assert records.deployments(transport, layout)[0]["status"] == "succeeded"


def test_process_names_equal_to_env_values_still_parse(tmp_path: Path) -> None:
    """``pm2 jlist`` through the transport (a stand-in pm2 on PATH; no daemon runs, so
    the RPC path fails over to jlist as on a fresh host)."""
    listing = '[{"name": "codeframe-mini", "pid": 7, "pm2_env": {"status": "online"}}]'
    fake = tmp_path / "pm2"
    fake.write_text(f"#!/bin/sh\necho '{listing}'\n")
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "PM2_HOME": str(tmp_path / "no-daemon")}
    status = Pm2(transport_knowing_values(), env).status(["codeframe-mini", "other"])
    assert status["codeframe-mini"].online
    assert status["codeframe-mini"].pid == 7
    assert status["other"].status == "missing"


def test_a_failed_command_masks_the_secret_but_keeps_common_words() -> None:
    transport = transport_knowing_values()
    with pytest.raises(CommandFailed) as info:
        transport.run(["sh", "-c", f"echo {SECRET} false; exit 3", "ignored"])
    assert SECRET not in str(info.value)
    assert MASK in str(info.value)
    assert "false" in str(info.value)  # a setting, never masked


def test_the_cli_masks_errors_raised_far_from_the_masker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keep = Masker([SECRET])  # a deploy's masker, alive while the CLI prints
    config = tmp_path / "slipway.toml"
    config.write_text(f'[project]\nname = "x"\n[environments.{SECRET}]\nhosts = ["local"]\n')
    code, out, err = run_cli(["--config", str(config), "status", "nowhere"], capsys)
    assert code == 2
    assert SECRET not in out + err
    assert keep(SECRET) == MASK


def test_common_words_are_never_treated_as_secrets() -> None:
    masker = Masker(["false", "NULL", "True", "on", SECRET])
    assert masker(f'{{"ok": false, "value": null, "secret": "{SECRET}"}}') == (
        f'{{"ok": false, "value": null, "secret": "{MASK}"}}'
    )
