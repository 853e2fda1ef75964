"""The rehearsal is skipped when the backend to deploy is the live release's, on the
schema that release left; rehearsed otherwise. Real PM2, app and SQLite; the fast part
(which files count as the backend's) uses a tiny two-process repository."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from apprepo import git, make_repo, write_config, write_env_file
from support import TOOLS_BIN, require_binary, stop_pm2

from slipway.config import load_config
from slipway.deploy import rehearsal
from slipway.deploy.engine import Deployer
from slipway.deploy.run import StepEvent
from slipway.deploy.source import resolve
from slipway.state import records
from slipway.transports.local import LocalTransport


def rehearse_details(events: list[StepEvent]) -> list[str]:
    return [e.detail for e in events if e.step == "rehearse" and e.detail]


@pytest.mark.integration
def test_a_redeploy_of_the_live_backend_skips_the_rehearsal_unless_the_schema_moved(
    tmp_path: Path,
) -> None:
    require_binary("pm2", path=str(TOOLS_BIN))
    repo = make_repo(tmp_path / "repo")
    root = tmp_path / "srv"
    loaded = load_config(write_config(repo, root))
    write_env_file(root, "API_TOKEN=skip-token-1\n")
    events: list[StepEvent] = []
    layout = Deployer(loaded, "testing", LocalTransport()).layout

    def deploy(ref: str) -> str:
        events.clear()
        d = Deployer(loaded, "testing", LocalTransport(), emit=events.append)
        outcome = d.deploy(ref)
        assert outcome.status == "succeeded"
        return outcome.release

    try:
        deploy("v1")
        deploy("v2")
        assert any("migrating a copy" in t for t in rehearse_details(events))
        again = deploy("v2")
        assert any("nothing to rehearse" in t for t in rehearse_details(events))
        assert not any("migrating a copy" in t for t in rehearse_details(events))
        row = records.deployments(LocalTransport(), layout, 1)[0]
        assert row["release"] == again
        assert json.loads(row["rehearsal"])["skipped"].startswith("backend as in")
        # The live database moved since (a table added by hand, as a restore of an
        # older backup would move it): the same backend is rehearsed again.
        db = root / "testing" / ".codeframe" / "state.db"
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE added_by_hand (id INTEGER PRIMARY KEY)")
        deploy("v2")
        assert any("migrating a copy" in t for t in rehearse_details(events))
        # A different env file is a different backend too.
        write_env_file(root, "API_TOKEN=skip-token-2\n")
        deploy("v2")
        assert any("migrating a copy" in t for t in rehearse_details(events))
    finally:
        stop_pm2(root / "pm2")


def test_only_the_backend_files_count(tmp_path: Path) -> None:
    """A change in the frontend's directory keeps the backend's inputs; a change in the
    backend's does not."""
    repo = tmp_path / "repo"
    (repo / "api").mkdir(parents=True)
    (repo / "web").mkdir()
    (repo / "api" / "main.py").write_text("print('api')\n")
    (repo / "web" / "page.js").write_text("// v1\n")
    (repo / "slipway.toml").write_text(f"""
[project]
name = "two"
repository = "."

[processes.backend]
kind = "python"
workdir = "api"
start = ["{{python}}", "main.py"]
port = "backend"

[processes.frontend]
kind = "node"
workdir = "web"
start = ["node", "page.js"]
port = "frontend"

[environments.testing]
hosts = ["local"]
root = "{tmp_path / 'srv'}"
database = "testing/state.db"
ports = {{ backend = 1, frontend = 2 }}
""")
    write_env_file(tmp_path / "srv", "A=1\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    d = Deployer(load_config(repo / "slipway.toml"), "testing", LocalTransport())
    first = rehearsal.backend_inputs(d, resolve(repo, "main"))
    assert first is not None
    (repo / "web" / "page.js").write_text("// v2\n")
    git(repo, "commit", "-q", "-am", "frontend only")
    assert rehearsal.backend_inputs(d, resolve(repo, "main")) == first
    (repo / "api" / "main.py").write_text("print('api v2')\n")
    git(repo, "commit", "-q", "-am", "backend")
    assert rehearsal.backend_inputs(d, resolve(repo, "main")) != first
