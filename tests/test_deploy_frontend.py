"""A full deploy with the Next.js frontend: npm ci, build tied to the backend's port,
reuse of unchanged node_modules and builds, and a failing frontend build."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from apprepo import make_repo, write_config, write_env_file
from support import TOOLS_BIN, free_port, require_binary, stop_pm2

from slipway.config import load_config
from slipway.config.load import LoadedConfig
from slipway.deploy import bluegreen
from slipway.deploy.engine import Deployer, StepEvent
from slipway.deploy.rollback import manual_rollback
from slipway.errors import DeployFailed
from slipway.routers.base import COLOR_HEADER
from slipway.transports.local import LocalTransport

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def factory(loaded: LoadedConfig) -> Callable[[], tuple[Deployer, list[StepEvent]]]:
    """Fresh Deployers for one environment, sharing one list of step events."""
    events: list[StepEvent] = []

    def make() -> tuple[Deployer, list[StepEvent]]:
        events.clear()
        return Deployer(loaded, "testing", LocalTransport(), emit=events.append), events

    return make


@pytest.fixture(scope="module")
def deployer_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    require_binary("pm2", path=str(TOOLS_BIN))
    require_binary("npm")
    tmp = tmp_path_factory.mktemp("frontend")
    repo = make_repo(tmp / "repo")
    config = write_config(repo, tmp / "srv", frontend=True)
    write_env_file(tmp / "srv", "API_TOKEN=fe-token-1\n")
    yield factory(load_config(config))
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


@pytest.fixture(scope="module")
def blue_green(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    require_binary("pm2", path=str(TOOLS_BIN))
    require_binary("npm")
    tmp = tmp_path_factory.mktemp("frontend-bg")
    repo = make_repo(tmp / "repo")
    table = f"""
[environments.testing.blue_green]
api_port = {free_port()}
blue = {{ backend = {free_port()}, frontend = {free_port()} }}
green = {{ backend = {free_port()}, frontend = {free_port()} }}
standby_seconds = 300
watch_seconds = 1
"""
    config = write_config(repo, tmp / "srv", frontend=True, strategy="blue-green", blue_green=table)
    write_env_file(tmp / "srv", "API_TOKEN=fe-token-2\n")
    yield factory(load_config(config))
    stop_pm2(tmp / "srv" / "pm2")


def test_each_colour_frontend_talks_to_its_own_backend(blue_green):
    """A Next.js build is tied to a backend address: each colour's build points at that
    colour's backend, the public frontend port follows the switch, and a release rolled
    back onto the other colour is rebuilt for it."""
    d, events = blue_green()
    public_fe = d.env.ports.frontend
    colors = d.env.blue_green.color_ports(d.env.ports)

    def page() -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{public_fe}/", timeout=10)

    v1 = d.deploy("v1")
    assert page().headers[COLOR_HEADER] == "blue"
    assert f"http://127.0.0.1:{colors['blue'].backend}" in page().text

    d, events = blue_green()
    d.deploy("v2")
    notes = [e.detail for e in events if e.status == "info"]
    assert "frontend: node_modules unchanged, reused" in notes
    assert "frontend: sources unchanged, build reused" not in notes  # built for green
    assert page().headers[COLOR_HEADER] == "green"
    assert f"http://127.0.0.1:{colors['green'].backend}" in page().text

    d, events = blue_green()
    d.deploy("v3")  # back on blue: v1's blue build is reused
    notes = [e.detail for e in events if e.status == "info"]
    assert "frontend: sources unchanged, build reused" in notes
    assert page().headers[COLOR_HEADER] == "blue"

    # v1 was built for blue; blue is live, so it goes to green and is rebuilt for it.
    d, events = blue_green()
    bluegreen.stop_standby(d)
    manual_rollback(d, v1.release)
    notes = [e.detail for e in events if e.status == "info"]
    assert f"rebuilding {v1.release}'s frontend for green" in notes
    assert page().headers[COLOR_HEADER] == "green"
    assert f"http://127.0.0.1:{colors['green'].backend}" in page().text
    api = httpx.get(f"http://127.0.0.1:{public_fe}/api/health", timeout=10).json()
    assert api["release"] == v1.release
