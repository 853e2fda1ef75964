"""The rehearsal is skipped when the backend to deploy is the live release's, on the
schema that release left; rehearsed otherwise. Real PM2, app and SQLite; the fast part
(which files count as the backend's) uses a tiny two-process repository."""

from __future__ import annotations

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
        assert row["rehearsal"]["skipped"].startswith("backend as in")
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


TWO_PROCESSES = """
[project]
name = "two"
repository = "."

[processes.backend]
kind = "python"
workdir = "{backend}"
start = ["{{python}}", "main.py"]
port = "backend"

[processes.frontend]
kind = "node"
workdir = "{frontend}"
start = ["node", "page.js"]
port = "frontend"

[environments.testing]
hosts = ["local"]
root = "{root}"
database = "testing/state.db"
ports = {{ backend = 1, frontend = 2 }}
"""


def two_process_repo(tmp_path: Path, backend: str, frontend: str) -> tuple[Deployer, Path]:
    repo = tmp_path / "repo"
    for path in (f"{backend}/main.py", f"{frontend}/page.js", "migrations/001.sql"):
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(f"-- {path} v1\n")
    text = TWO_PROCESSES.format(backend=backend, frontend=frontend, root=tmp_path / "srv")
    (repo / "slipway.toml").write_text(text)
    write_env_file(tmp_path / "srv", "A=1\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    return Deployer(load_config(repo / "slipway.toml"), "testing", LocalTransport()), repo


def inputs_after(d: Deployer, repo: Path, path: str) -> str | None:
    (repo / path).write_text(f"-- {path} changed\n")
    git(repo, "commit", "-q", "-am", f"change {path}")
    return rehearsal.backend_inputs(d, resolve(repo, "main"))


@pytest.mark.parametrize(
    ("backend", "frontend", "changed", "same"),
    [
        ("api", "web", "web/page.js", True),  # side by side: the frontend's own files
        ("api", "web", "api/main.py", False),
        ("api", "web", "migrations/001.sql", False),  # outside both: counts
        ("app/api", "app", "app/api/main.py", False),  # nested in the frontend's
        ("app/api", "app", "app/page.js", False),  # the frontend's dir holds the backend's
    ],
)
def test_what_counts_as_the_backend(
    tmp_path: Path, backend: str, frontend: str, changed: str, same: bool
) -> None:
    """Only a non-Python process's own directory is left out, and only when it does
    not hold the backend's: a change anywhere else is a new backend, rehearsed."""
    d, repo = two_process_repo(tmp_path, backend, frontend)
    first = rehearsal.backend_inputs(d, resolve(repo, "main"))
    assert first is not None
    assert (inputs_after(d, repo, changed) == first) is same
