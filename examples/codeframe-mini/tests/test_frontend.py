"""The example frontend builds with its build-time API address and serves (real npm)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from support import EXAMPLE_APP, free_port, require_binary, wait_http

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def copy_web_ui(target: Path) -> Path:
    ignore = shutil.ignore_patterns("node_modules", ".next")
    shutil.copytree(EXAMPLE_APP / "web-ui", target / "web-ui", ignore=ignore)
    shutil.copytree(EXAMPLE_APP / "codeframe_mini", target / "codeframe_mini")
    return target / "web-ui"


def test_frontend_builds_and_serves_with_build_time_api_url(tmp_path: Path):
    npm = require_binary("npm")
    web = copy_web_ui(tmp_path)
    env = {**os.environ, "NEXT_TELEMETRY_DISABLED": "1"}
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=web, env=env, check=True)
    build_env = {**env, "NEXT_PUBLIC_API_URL": "http://127.0.0.1:14999"}
    subprocess.run([npm, "run", "build"], cwd=web, env=build_env, check=True)
    port = free_port()
    proc = subprocess.Popen(
        ["node_modules/.bin/next", "start", "-H", "127.0.0.1", "-p", str(port)],
        cwd=web,
        env=env,
    )
    try:
        page = wait_http(f"http://127.0.0.1:{port}/", deadline=60)
        assert 'id="app-marker"' in page.text
        assert "http://127.0.0.1:14999" in page.text  # fixed at build time
        first = httpx.get(f"http://127.0.0.1:{port}/api/health").json()
        second = httpx.get(f"http://127.0.0.1:{port}/api/health").json()
        assert first["status"] == "ok"
        assert first["time"] != second["time"]  # dynamic, not frozen at build
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_frontend_build_fail_variant_fails_the_build(tmp_path: Path):
    node = require_binary("node")
    web = copy_web_ui(tmp_path)
    (tmp_path / "codeframe_mini" / "VARIANT").write_text("frontend-build-fail\n")
    result = subprocess.run(
        [node, "check-variant.js"], cwd=web, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "fails on purpose" in result.stderr
