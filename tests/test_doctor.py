"""`slipway doctor ENV`: each host's readiness, read-only, a fix per problem (this
machine as the host; the commands are the ones it runs over SSH)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from apprepo import make_repo, write_config
from support import TOOLS_BIN, run_cli

from slipway.config import load_config

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("doctor") / "repo")


def config(repo: Path, root: Path, extra: str = "") -> Path:
    path = write_config(repo, root, frontend=True, extra_env=extra)
    return path


def doctor(config_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code, out, err = run_cli(["--config", str(config_path), "doctor", "testing", *args], capsys)
    assert "Traceback" not in err
    return code, out + err


def test_a_ready_host_passes_and_nothing_is_made_on_it(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "srv"
    code, out = doctor(config(repo, root), capsys)
    assert code == 0, out
    for check in ("python3", "uv", "pm2", "node", "npm", "root", "ports"):
        assert f"ok   {check}" in out, out
    assert not root.exists(), "doctor wrote on the host"
    code, out = doctor(config(repo, root), capsys, "--json")
    report = json.loads(out)
    assert report[0]["host"] == "local" and all(f["ok"] for f in report[0]["findings"])


def test_a_missing_process_manager_and_a_held_port_fail_with_their_fix(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config(repo, tmp_path / "srv")
    # host_path puts tools/ and the venv first; without them pm2 is nowhere.
    text = path.read_text().replace(f'host_path = ["{TOOLS_BIN}", "{VENV_BIN}"]', "host_path = []")
    path.write_text(text)
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "uv").symlink_to(VENV_BIN / "uv")
    monkeypatch.setenv("PATH", f"{bare}:/usr/bin:/bin")
    port = load_config(path).config.environment("testing").ports.backend
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        code, out = doctor(path, capsys)
    assert code == 1, out
    assert "FAIL pm2            not on PATH (it runs the apps)" in out
    assert "fix: npm install -g pm2, or add its bin to host_path" in out
    assert f"FAIL port {port}" in out and "ports.backend: something listens" in out
    assert "ok   uv" in out


def test_supervisor_environments_check_its_two_commands(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = f'process_manager = "supervisor"\nsupervisor_home = "{tmp_path / "sv"}"'
    code, out = doctor(config(repo, tmp_path / "srv", extra), capsys)
    assert "supervisord" in out and "supervisorctl" in out and " pm2 " not in out
    assert code == 0, out
    assert not (tmp_path / "sv").exists()  # its home is made by the first deploy
