"""Shared virtualenvs, fast: a tiny Python app deployed with the real local transport,
host helper and uv, and the fake process manager (nothing is started). The example
app's shared environments, killed half-made under load, are in ``test_recovery.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from apprepo import git
from fakes import FakeProcessManager, answer_gates, tiny_repo

from slipway.config import load_config
from slipway.deploy import venvs
from slipway.deploy.engine import Deployer
from slipway.deploy.run import StepEvent
from slipway.deploy.source import resolve
from slipway.transports.local import LocalTransport


def tiny(tmp_path: Path, requirements: str | None) -> Path:
    backend = 'kind = "python"\nstart = ["{python}", "-c", "pass"]'
    if requirements is None:
        return tiny_repo(tmp_path, backend, {})
    backend += '\nrequirements = "requirements.txt"'
    return tiny_repo(tmp_path, backend, {"requirements.txt": requirements})


def deployer(repo: Path, events: list[StepEvent]) -> Deployer:
    return Deployer(
        load_config(repo / "slipway.toml"),
        "testing",
        LocalTransport(),
        process_manager=FakeProcessManager(),
        emit=events.append,
    )


def details(events: list[StepEvent]) -> list[str]:
    return [e.detail for e in events if e.step == "install" and e.detail]


def test_releases_without_a_lock_share_one_environment_until_the_python_pin_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer_gates(monkeypatch, True)
    repo = tiny(tmp_path, requirements=None)
    events: list[StepEvent] = []
    first = deployer(repo, events).deploy("main")
    second = deployer(repo, events).deploy("main")
    d = deployer(repo, events)
    link = Path(d.layout.release(second.release)) / ".venv"
    assert link.resolve() == (Path(d.layout.release(first.release)) / ".venv").resolve()
    assert (link / "bin" / "python").exists()
    assert details(events)[0].startswith("python: shared environment")
    assert "reused" in details(events)[1]
    before = venvs.venv_key(d, resolve(repo, "main"))
    (repo / ".python-version").write_text("3\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pin python")
    assert venvs.venv_key(d, resolve(repo, "main")) not in (None, before)


def test_a_lock_installing_the_release_own_code_gets_an_environment_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer_gates(monkeypatch, True)
    repo = tiny(tmp_path, requirements="-e .\n")
    events: list[StepEvent] = []
    d = deployer(repo, events)
    assert venvs.venv_key(d, resolve(repo, "main")) is None
    # Installing `-e .` needs a buildable project; the tiny app has none, so the lock
    # is emptied for the deploy itself, with the key still saying "not shared".
    monkeypatch.setattr(venvs, "venv_key", lambda d, source: None)
    (repo / "requirements.txt").write_text("# nothing to install\n")
    git(repo, "commit", "-q", "-am", "empty lock")
    done = d.deploy("main")
    venv = Path(d.layout.release(done.release)) / ".venv"
    assert venv.is_dir() and not venv.is_symlink()
    assert (venv / "bin" / "python").exists()
    assert details(events) == ["python: own environment (the lock installs the release's code)"]
    assert not Path(d.layout.shared, venvs.VENVS).exists()
    assert venvs.prune(d, d.list_releases()) == []  # nothing shared to prune


def test_a_lock_missing_from_the_commit_is_never_shared(tmp_path: Path) -> None:
    repo = tiny(tmp_path, requirements="httpx==0.27.0\n")
    d = deployer(repo, [])
    assert venvs.venv_key(d, resolve(repo, "main")) is not None
    git(repo, "rm", "-q", "requirements.txt")
    git(repo, "commit", "-q", "-m", "lock gone")
    assert venvs.venv_key(d, resolve(repo, "main")) is None


def test_a_broken_shared_environment_in_use_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Incomplete (here: its marker gone) yet linked by a kept release: the next
    release gets its own environment and the shared one is not removed."""
    answer_gates(monkeypatch, True)
    repo = tiny(tmp_path, requirements=None)
    events: list[StepEvent] = []
    first = deployer(repo, events).deploy("main")
    d = deployer(repo, events)
    shared = (Path(d.layout.release(first.release)) / ".venv").resolve()
    (shared / venvs.COMPLETE).unlink()
    second = deployer(repo, events).deploy("main")
    own = Path(d.layout.release(second.release)) / ".venv"
    assert own.is_dir() and not own.is_symlink()
    assert "is broken and in use" in details(events)[-1]
    assert (shared / "bin" / "python").exists()


def test_a_python_process_with_its_own_install_command_is_never_shared(
    tmp_path: Path,
) -> None:
    """`uv sync` or `pip install -e .` in its own install step would write into an
    environment other releases run from."""
    repo = tiny(tmp_path, requirements="httpx==0.27.0\n")
    text = (repo / "slipway.toml").read_text()
    text = text.replace('health_path = "/health"', 'health_path = "/health"\ninstall = ["true"]')
    (repo / "slipway.toml").write_text(text)
    git(repo, "commit", "-q", "-am", "own install step")
    assert venvs.venv_key(deployer(repo, []), resolve(repo, "main")) is None
