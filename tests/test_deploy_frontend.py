"""A full deploy with the Next.js frontend: npm ci, build tied to the backend's port,
reuse of unchanged node_modules and builds, and a failing frontend build."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apprepo import make_repo, write_config, write_env_file
from support import TOOLS_BIN, require_binary, stop_pm2

from slipway.config import load_config
from slipway.deploy.engine import Deployer, StepEvent
from slipway.errors import DeployFailed
from slipway.transports.local import LocalTransport

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def deployer_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    require_binary("pm2", path=str(TOOLS_BIN))
    require_binary("npm")
    tmp = tmp_path_factory.mktemp("frontend")
    repo = make_repo(tmp / "repo")
    config = write_config(repo, tmp / "srv", frontend=True)
    write_env_file(tmp / "srv", "API_TOKEN=fe-token-1\n")
    loaded = load_config(config)
    events: list[StepEvent] = []

    def make() -> tuple[Deployer, list[StepEvent]]:
        events.clear()
        return Deployer(loaded, "testing", LocalTransport(), emit=events.append), events

    yield make
    stop_pm2(tmp / "srv" / "pm2")


def test_frontend_deploy_reuse_and_failed_build(deployer_factory):
    d, events = deployer_factory()
    first = d.deploy("v1")
    assert first.status == "succeeded"
    fe = d.env.ports.frontend
    page = httpx.get(f"http://127.0.0.1:{fe}/", timeout=10)
    assert 'id="app-marker"' in page.text
    # The build is tied to THIS environment's backend port (Next.js inlines it).
    assert f"http://127.0.0.1:{d.env.ports.backend}" in page.text
    api = httpx.get(f"http://127.0.0.1:{fe}/api/health", timeout=10).json()
    assert api["release"] == first.release

    d, events = deployer_factory()
    second = d.deploy("v2")
    notes = [e.detail for e in events if e.status == "info"]
    assert "frontend: node_modules unchanged, reused" in notes
    assert "frontend: sources unchanged, build reused" in notes
    assert httpx.get(f"http://127.0.0.1:{fe}/api/health").json()["release"] == second.release

    d, events = deployer_factory()
    with pytest.raises(DeployFailed) as info:
        d.deploy("broken/frontend-build-fail")
    assert info.value.step == "build"
    assert "fails on purpose" in info.value.cause
    assert info.value.hint == "nothing live had changed"
    assert httpx.get(f"http://127.0.0.1:{fe}/api/health").json()["release"] == second.release
    releases = Path(d.layout.releases)
    assert (releases / second.release / "web-ui" / ".next").is_dir()
