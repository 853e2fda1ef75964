"""The onboarding parts that need no deploy: what init writes from hostile app files,
which locks a shared environment may hold, when a lock that could not be checked is
only a warning, and the guards of `slipway try`."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from support import EXAMPLE_APP, run_cli

from slipway.cli import tryout
from slipway.config import deep, validate_config
from slipway.config.starter import detect_project, render_starter
from slipway.deploy import steps, venvs
from slipway.errors import SlipwayError
from slipway.project import python
from slipway.project.tree import DictTree

HOSTILE = """
import os
from fastapi import FastAPI, WebSocket

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./data/app.db")
app = FastAPI()


@app.get("/health")
def health():
    return {"status": "ok", "app.version": "1", "db state": "up", "say": "🚀 \\"q\\" \\\\ x"}


@app.websocket("/ws")
async def ws(socket: WebSocket):
    await socket.send_text("pong 🚀")
"""


def test_init_writes_valid_toml_whatever_the_app_returns(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(HOSTILE)
    (tmp_path / "requirements.txt").write_text("fastapi==0.115.6\nwebsockets==14.1\n")
    text = render_starter(detect_project(tmp_path))
    config = validate_config(tomllib.loads(text))
    expected = {"status": "ok", "app.version": "1", "db state": "up", "say": '🚀 "q" \\ x'}
    assert config.health.basic[0].expect_json == expected
    assert config.health.websocket is not None
    assert config.health.websocket.expect_text == "pong 🚀"
    backend = config.processes["backend"]
    # The async driver is kept: create_async_engine needs it.
    assert (backend.database_env, backend.database_value) == (
        "DATABASE_URL",
        "sqlite+aiosqlite:///{path}",
    )


def test_init_without_a_websocket_library_leaves_the_check_to_the_user(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(HOSTILE)
    (tmp_path / "requirements.txt").write_text("fastapi==0.115.6\nuvicorn==0.34.0\n")
    detected = detect_project(tmp_path)
    assert any("no WebSocket library" in todo for todo in detected.todos)
    assert tomllib.loads(render_starter(detected)).get("health", {}).get("websocket") is None


def test_a_broken_package_json_elsewhere_does_not_stop_init(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(HOSTILE)
    (tmp_path / "fixtures").mkdir()
    (tmp_path / "fixtures" / "package.json").write_text("{ not json")
    assert detect_project(tmp_path).frontend is None


UV_LOCK_WITH_MEMBER = """version = 1
[[package]]
name = "app"
version = "0.1.0"
source = { virtual = "." }

[[package]]
name = "greeting"
version = "0.1.0"
source = { editable = "packages/greeting" }
"""


def test_a_lock_that_installs_repository_directories_is_never_shared() -> None:
    assert venvs.installs_local_code(UV_LOCK_WITH_MEMBER)
    assert not venvs.installs_local_code(UV_LOCK_WITH_MEMBER.replace("editable", "registry"))
    assert venvs.installs_local_code("-e .\n")
    assert not venvs.installs_local_code("fastapi==0.115.6\n")


@pytest.mark.parametrize(
    ("lock", "workdir", "local"),
    [
        ("web/package-lock.json", "web", True),
        ("package-lock.json", ".", True),
        ("pnpm-lock.yaml", "web-ui", False),  # a workspace's: hoisted above the workdir
    ],
)
def test_node_modules_are_reused_only_from_the_workdirs_own_lock(
    lock: str, workdir: str, local: bool
) -> None:
    assert steps.lock_is_local(lock, workdir) is local


def test_a_lock_that_could_not_be_checked_is_a_warning_not_a_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = tomllib.loads((EXAMPLE_APP / "slipway.toml").read_text())
    config = validate_config(raw)
    tree = DictTree({"requirements.lock": "fastapi==0.115.6\n"})

    def unknown(tree: object, deps: object) -> list[str]:
        return ["cannot check uv.lock against pyproject.toml: uv is not installed here"]

    monkeypatch.setattr(python, "stale_problems", unknown)
    assert deep.refuse_stale_locks(config, tree, "v1") == [
        "processes.backend: cannot check uv.lock against pyproject.toml:"
        " uv is not installed here"
    ]

    def stale(tree: object, deps: object) -> list[str]:
        return ["uv.lock does not match pyproject.toml (run `uv lock`)"]

    monkeypatch.setattr(python, "stale_problems", stale)
    with pytest.raises(SlipwayError, match="uv lock"):
        deep.refuse_stale_locks(config, tree, "v1")


def test_a_pin_that_cannot_be_installed_is_found_before_the_deploy() -> None:
    raw = tomllib.loads((EXAMPLE_APP / "slipway.toml").read_text())
    del raw["processes"]["backend"]["requirements"]
    config = validate_config(raw)
    pyproject = (
        '[tool.poetry]\nname = "x"\nversion = "1"\n'
        '[tool.poetry.dependencies]\npython = "^3.11"\nfastapi = "^0.110 || ^0.115"\n'
    )
    issues = deep.lock_issues(config, DictTree({"pyproject.toml": pyproject}))
    assert [i.location for i in issues] == ["processes.backend"]


def test_try_signals_only_a_slipway_process() -> None:
    """A state file's pid may have been reused by anything since."""
    other = subprocess.Popen(["sleep", "30"])
    code = "import time; print('up', flush=True); time.sleep(30)"
    ours = subprocess.Popen(
        [sys.executable, "-c", code, "slipway"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert ours.stdout is not None and ours.stdout.readline() == "up\n"  # running
        assert tryout._is_slipway(ours.pid)
        assert not tryout._is_slipway(other.pid)
        assert not tryout._is_slipway(2**22 + 7)  # no such process
    finally:
        for proc in (other, ours):
            proc.kill()
            proc.wait()


def test_try_stop_with_nothing_running_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIPWAY_STATE_HOME", str(tmp_path))
    code, _, err = run_cli(["--config", str(EXAMPLE_APP / "slipway.toml"), "try", "--stop"], capsys)
    assert code == 2 and "no try of codeframe-mini is running" in err


def test_try_refuses_a_file_that_is_not_a_database_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIPWAY_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    bogus = tmp_path / "bogus.db"
    bogus.write_text("not sqlite at all, " * 100)
    monkeypatch.setattr(tryout.shutil, "which", lambda name: f"/usr/bin/{name}")
    code, _, err = run_cli(
        ["--config", str(EXAMPLE_APP / "slipway.toml"), "try", "--db", str(bogus)], capsys
    )
    assert code == 2 and f"--db {bogus}: not a SQLite database" in err
    assert list((tmp_path / "tmp").iterdir()) == []
