"""Small helpers for tests that start real processes: free ports, waiting for HTTP."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_APP = ROOT / "examples" / "codeframe-mini"
TOOLS_BIN = ROOT / "tools" / "node_modules" / ".bin"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and never handed out before in this process.

    The kernel may give the same ephemeral port to two binds in a row once the first
    socket is closed, so a test asking for a backend and a frontend port could get one
    port twice (a config error, seen in CI); remembering what was handed out stops that.
    """
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise AssertionError("no fresh free port after 100 tries")


def wait_http(url: str, deadline: float = 20.0, status: int = 200) -> httpx.Response:
    end = time.monotonic() + deadline
    last: object = None
    while time.monotonic() < end:
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == status:
                return response
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {deadline}s (last: {last!r})")


def require_binary(name: str, path: str | None = None) -> str:
    """The binary's path, or skip with the reason (the CI hook fails skipped integrations)."""
    found = shutil.which(name, path=path or os.environ.get("PATH"))
    if found is None:
        pytest.skip(f"needs {name!r} on PATH (install it, or run `make test`)")
    return found


def stop_pm2(pm2_home: Path) -> None:
    """Kill the PM2 daemon (and its apps) of one test's PM2_HOME."""
    import subprocess

    subprocess.run(
        [str(TOOLS_BIN / "pm2"), "kill"],
        env={**os.environ, "PM2_HOME": str(pm2_home)},
        capture_output=True,
        check=False,
    )


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The CLI in-process (so coverage sees it): exit code, stdout, stderr."""
    from slipway.cli.main import main

    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def workflow_problems(path: Path) -> list[str]:
    """What actionlint and the GitHub workflow JSON schema say is wrong with a workflow."""
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    commands = [
        [str(bin_dir / "actionlint"), "-no-color", str(path)],
        [
            str(bin_dir / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            str(path),
        ],
    ]
    problems = []
    for argv in commands:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            problems.append(f"{Path(argv[0]).name}: {result.stdout}{result.stderr}")
    return problems
