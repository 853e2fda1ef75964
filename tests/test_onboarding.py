"""A new user's first minutes, for real, on repositories of each shape real projects
have (tests/shapes.py): `slipway init` writes a configuration, `slipway check --deep`
finds it fits the repository, and `slipway try` deploys it here with no hand edits
(real uv, npm/pnpm/yarn, a real Next.js build, PM2) and passes its health gate; `try
--stop` and Ctrl-C leave nothing behind. A stale uv.lock is refused before anything
changes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import shapes
from support import TOOLS_BIN, require_binary, run_cli

pytestmark = pytest.mark.integration

SLIPWAY = [sys.executable, "-m", "slipway.cli.main"]


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment for slipway, as a subprocess's and in this process (the CLI runs
    in-process where it can, so coverage sees it)."""
    require_binary("pm2", str(TOOLS_BIN))
    path = f"{TOOLS_BIN}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("SLIPWAY_STATE_HOME", str(tmp_path / "state"))
    return {**os.environ, "PATH": path, "SLIPWAY_STATE_HOME": str(tmp_path / "state")}


def in_repo(
    repo: Path, args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    monkeypatch.chdir(repo)
    return run_cli(args, capsys)


def slipway(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SLIPWAY, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def pm2_daemons_under(root: str) -> list[str]:
    """PM2 daemons (and apps) whose command line or PM2_HOME names ``root``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if f"PM2_HOME={root}".encode() in environ:
            found.append(pid)
    return found


def assert_nothing_left(result: dict[str, object], state: Path) -> None:
    root = str(result["root"])
    assert not Path(root).exists(), f"{root} is left behind"
    assert pm2_daemons_under(root) == []
    for url in (result["backend"], result["frontend"]):
        if url:
            with pytest.raises(httpx.HTTPError):
                httpx.get(str(url), timeout=2)
    assert not list((state / "try").glob("*.json"))


@pytest.mark.parametrize("shape", list(shapes.SHAPES))
def test_init_check_deep_and_try_fit_each_shape_with_no_hand_edits(
    shape: str,
    tmp_path: Path,
    cli_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if shape == "poetry-pnpm":
        require_binary("pnpm", str(TOOLS_BIN))
    if shape == "requirements-yarn":
        require_binary("yarn", str(TOOLS_BIN))
    repo = shapes.make(shape, tmp_path / shape)
    code, out, err = in_repo(repo, ["init"], capsys, monkeypatch)
    assert code == 0, err
    assert "wrote" in out, out
    todos = [line for line in out.splitlines() if line.startswith("todo:")]
    # The template's frontend is a Vite app: init says so instead of guessing.
    expected = (
        ["todo: frontend/package.json is not a Next.js app"] if shape == "fastapi-template" else []
    )
    assert [t.split(":", 2)[0] + ":" + t.split(":", 2)[1] for t in todos] == expected, out
    code, out, err = in_repo(repo, ["check", "--deep"], capsys, monkeypatch)
    assert code == 0, out + err
    assert "fits the repository" in out

    code, out, err = in_repo(repo, ["try", "--detach", "--json"], capsys, monkeypatch)
    assert code == 0, out + err
    result = json.loads(out[out.index("{\n") :])
    assert result["ok"] is True
    names = {check["name"] for check in result["checks"]}
    assert "api" in names and all(check["ok"] for check in result["checks"])
    health = httpx.get(str(result["backend"]) + EXPECTED_HEALTH[shape], timeout=5)
    assert health.status_code == 200
    if result["frontend"]:
        page = httpx.get(str(result["frontend"]), timeout=10)
        assert page.status_code == 200 and "shape home" in page.text

    code, out, err = in_repo(repo, ["try", "--stop"], capsys, monkeypatch)
    assert code == 0, err
    assert "nothing is left behind" in out
    assert_nothing_left(result, tmp_path / "state")


EXPECTED_HEALTH = {
    "uv-npm": "/health",
    "poetry-pnpm": "/api/health",
    "requirements-yarn": "/healthz",
    "next-standalone": "/api/health",
    "fastapi-template": "/api/v1/utils/health-check/",
}


def test_try_in_the_foreground_removes_everything_on_ctrl_c(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    repo = shapes.make("fastapi-template", tmp_path / "app")
    # No slipway.toml: try uses what init would write.
    proc = subprocess.Popen(
        [*SLIPWAY, "try"],
        cwd=repo,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C stops it" in line:
            break
    output = "".join(lines)
    assert "Ctrl-C stops it" in output, output + (proc.stderr.read() if proc.poll() else "")
    backend = next(line.split()[-1] for line in lines if line.startswith("backend:"))
    assert httpx.get(backend + "/api/v1/utils/health-check/", timeout=5).text == "true"
    state = json.loads(next((tmp_path / "state" / "try").glob("*.json")).read_text())
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert_nothing_left(
        {"root": state["root"], "backend": backend, "frontend": None}, tmp_path / "state"
    )


def test_a_stale_uv_lock_is_refused_before_anything_changes(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    repo = shapes.make("fastapi-template", tmp_path / "app")
    assert slipway(["init"], repo, cli_env).returncode == 0
    pyproject = repo / "backend" / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("dependencies = [", 'dependencies = [\n    "six==1.16.0",')
    )
    subprocess.run(
        ["git", "-C", str(repo), "commit", "-qam", "add six, lock not updated"], check=True
    )
    srv = tmp_path / "srv"
    deploy = slipway(["deploy", "staging", "--root", str(srv)], repo, cli_env)
    assert deploy.returncode == 1, deploy.stdout + deploy.stderr
    assert "backend/uv.lock" in deploy.stderr and "backend/pyproject.toml" in deploy.stderr
    assert "uv lock" in deploy.stderr and "Traceback" not in deploy.stderr
    assert not srv.exists(), "the refused deploy made its root"
    deep = slipway(["check", "--deep"], repo, cli_env)
    assert deep.returncode == 2 and "backend/uv.lock" in deep.stderr
