"""The live database's files are set by slipway, not left at the app's umask: 0600, or
0660 for a configured ``database_group``. Once a review found the live database 0644,
readable by every user of the host. The real local transport, host helper and SQLite;
the fake process manager.
"""

from __future__ import annotations

import grp
import os
import sqlite3
from pathlib import Path

import pytest
from fakes import FakeProcessManager, answer_gates, tiny_repo

from slipway.config import load_config
from slipway.deploy.engine import Deployer
from slipway.errors import DeployFailed
from slipway.transports.local import LocalTransport


def deployer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str = "") -> Deployer:
    repo = tiny_repo(
        tmp_path,
        'kind = "node"\nstart = ["node", "server.js", "{port}"]',
        {"server.js": "// the fake process manager runs nothing\n"},
    )
    config = repo / "slipway.toml"
    config.write_text(
        config.read_text().replace('strategy = "restart"', f'strategy = "restart"\n{extra}')
    )
    answer_gates(monkeypatch, True)
    return Deployer(
        load_config(config), "testing", LocalTransport(), process_manager=FakeProcessManager()
    )


def live_database(d: Deployer) -> Path:
    """A database the app made with its default mode, WAL files included."""
    db = Path(d.layout.database(d.env.database))
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        os.chmod(path, 0o644)
    conn.close()  # the last connection's close checkpoints and removes the WAL ...
    sqlite3.connect(db).execute("SELECT 1").fetchall()  # ... and an open one makes it again
    os.chmod(db, 0o644)
    return db


def modes(db: Path) -> dict[str, str]:
    return {
        p.name: oct(p.stat().st_mode & 0o777)
        for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm"))
        if p.exists()
    }


def test_a_deploy_makes_the_database_its_owners_only(tmp_path: Path, monkeypatch):
    d = deployer(tmp_path, monkeypatch)
    db = live_database(d)
    assert modes(db)["state.db"] == "0o644"
    assert d.deploy("v1").status == "succeeded"
    assert set(modes(db).values()) == {"0o600"}, modes(db)


def test_a_database_group_may_read_and_write(tmp_path: Path, monkeypatch):
    group = grp.getgrgid(os.getgid()).gr_name  # one this user belongs to
    d = deployer(tmp_path, monkeypatch, f'database_group = "{group}"')
    db = live_database(d)
    assert d.deploy("v1").status == "succeeded"
    assert set(modes(db).values()) == {"0o660"}, modes(db)
    assert db.stat().st_gid == os.getgid()


def test_an_unknown_group_fails_the_deploy_before_anything_changes(tmp_path: Path, monkeypatch):
    d = deployer(tmp_path, monkeypatch, 'database_group = "no-such-group-x"')
    db = live_database(d)
    with pytest.raises(DeployFailed, match="no group 'no-such-group-x' on this host"):
        d.deploy("v1")
    assert d.pm.calls == [] or all(call[0] != "start" for call in d.pm.calls)
    assert modes(db)["state.db"] == "0o644"  # untouched
