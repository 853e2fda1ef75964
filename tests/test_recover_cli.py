"""``slipway recover`` and ``slipway status`` around a journal, and the small registries,
without starting an app: a real local host (flock, host helper, SQLite records)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from apprepo import write_config, write_env_file
from support import run_cli

from slipway.config.model import ProcessManagerName
from slipway.config.model import Strategy as StrategyName
from slipway.deploy import runspec, strategies
from slipway.errors import UsageError
from slipway.processes import make_process_manager
from slipway.processes.none import NoProcessManager
from slipway.transports.local import LocalTransport


def config_in(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    config = write_config(repo, tmp_path / "srv")
    write_env_file(tmp_path / "srv", "API_TOKEN=tok-cli-secret-2718\n")
    return config


def test_recover_with_nothing_to_recover(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_in(tmp_path)
    code, out, err = run_cli(["--config", str(config), "recover", "testing"], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "testing on local: nothing to recover"
    code, out, _ = run_cli(["--config", str(config), "recover", "testing", "--json"], capsys)
    assert json.loads(out.splitlines()[-1])["recovered"] is None


def test_status_names_an_interrupted_run_and_recover_ends_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_in(tmp_path)
    state_dir = tmp_path / "srv" / "testing" / ".slipway"
    state_dir.mkdir(parents=True)
    row = {
        "id": "0123abcd4567",
        "env": "testing",
        "ref": "v9",
        "commit_sha": "c" * 40,
        "release": "20261130000000-cccccccc",
        "actor": "ci",
        "started_at": time.time(),
        "status": "running",
        "previous_release": None,
        "kind": "deploy",
    }
    journal = {
        "version": 1,
        "kind": "deploy",
        "strategy": "restart",
        "row": row,
        "build_color": None,
        "state": {"swapped": False},
        "steps": [{"step": "install", "at": time.time(), "done": False}],
    }
    (state_dir / "journal.json").write_text(json.dumps(journal))
    code, out, _ = run_cli(["--config", str(config), "status", "testing"], capsys)
    assert code == 0
    assert (
        "INTERRUPTED deploy 0123abcd4567 of 20261130000000-cccccccc in step 'install':"
        " run `slipway recover testing`" in out
    )
    code, out, _ = run_cli(["--config", str(config), "status", "testing", "--json"], capsys)
    assert json.loads(out)[0]["unfinished"]["interrupted"] is True
    code, out, err = run_cli(["--config", str(config), "recover", "testing"], capsys)
    assert code == 0, err
    assert "recovered the interrupted deploy of 20261130000000-cccccccc" in out
    assert "nothing live had changed" in out
    assert not (state_dir / "journal.json").exists()
    code, out, _ = run_cli(["--config", str(config), "status", "testing", "--json"], capsys)
    report = json.loads(out)[0]
    assert report["unfinished"] is None
    assert report["deployments"][0]["status"] == "interrupted"


def test_a_run_spec_that_cannot_be_read_falls_back_to_the_configuration(tmp_path: Path) -> None:
    assert runspec.parse("{not json") is None
    assert runspec.parse('{"processes": {"backend": {"kind": "cobol"}}}') is None
    assert runspec.parse('["a list"]') is None
    assert runspec.load(LocalTransport(), str(tmp_path / "missing-release")) is None


def test_registries_refuse_what_they_do_not_have() -> None:
    from slipway.config import load_config

    env = load_config(Path(__file__).resolve().parents[1] / "examples/codeframe-mini/slipway.toml")
    development = env.config.environment("development")
    assert development.strategy is StrategyName.DIRECT
    with pytest.raises(UsageError, match="strategy = 'direct' cannot deploy to hosts"):
        strategies.for_env(development)
    manager = make_process_manager(ProcessManagerName.NONE, LocalTransport(), {})
    assert isinstance(manager, NoProcessManager)
    assert manager.status(["a"])["a"].status == "missing"
    manager.save()
    with pytest.raises(UsageError, match='process_manager = "none"'):
        manager.start([], "/nowhere")
    with pytest.raises(UsageError, match='process_manager = "none"'):
        manager.stop(["a"])


def test_a_deploy_that_meets_a_status_probe_on_the_lock_still_takes_it(tmp_path: Path) -> None:
    """`slipway status` and `slipway lock` probe the lock by taking it for a moment; a
    deploy starting at that moment once failed with "locked by an unknown deploy"."""
    import subprocess

    from slipway.state.host import Layout
    from slipway.state.lock import DeployLock

    layout = Layout(str(tmp_path), "testing")
    (tmp_path / "testing" / ".slipway").mkdir(parents=True)
    probe = subprocess.Popen(["flock", layout.lock_file, "sleep", "0.4"])
    try:
        time.sleep(0.1)  # the probe holds the lock now
        lock = DeployLock(LocalTransport(), layout)
        owner = lock.acquire(actor="me", ref="v1", reason="deploy", wait=0)
        assert owner.owner == "me"
        lock.release()
    finally:
        probe.wait(timeout=5)
