"""A full deploy with the Next.js frontend: npm ci, a build that names the public
backend address, reuse of unchanged node_modules and builds (across colours too), and
a failing frontend build."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from apprepo import blue_green_table, make_repo, write_config, write_env_file
from support import TOOLS_BIN, require_binary, stop_pm2

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
    table = blue_green_table(standby_seconds=300, watch_seconds=1)
    config = write_config(repo, tmp / "srv", frontend=True, strategy="blue-green", blue_green=table)
    write_env_file(tmp / "srv", "API_TOKEN=fe-token-2\n")
    yield factory(load_config(config))
    stop_pm2(tmp / "srv" / "pm2")


def test_one_build_serves_both_colours(blue_green):
    """A Next.js build names the environment's public backend address, never a colour's
    private port: a release whose frontend sources did not change reuses the build on
    the other colour, and a rollback never rebuilds, except a release an older slipway
    built for one colour's port."""
    d, events = blue_green()
    public_fe, public_be = d.env.ports.frontend, d.env.ports.backend
    colors = d.env.blue_green.color_ports(d.env.ports)

    def page() -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{public_fe}/", timeout=10)

    def notes() -> list[str]:
        return [e.detail for e in events if e.status == "info"]

    v1 = d.deploy("v1")
    assert page().headers[COLOR_HEADER] == "blue"
    assert f"http://127.0.0.1:{public_be}" in page().text
    assert f"http://127.0.0.1:{colors['blue'].backend}" not in page().text

    d, events = blue_green()
    d.deploy("v2")
    assert "frontend: node_modules unchanged, reused" in notes()
    assert "frontend: sources unchanged, build reused" in notes()  # on green, v1's build
    assert page().headers[COLOR_HEADER] == "green"
    assert f"http://127.0.0.1:{public_be}" in page().text

    d, events = blue_green()
    v3 = d.deploy("v3")
    assert "frontend: sources unchanged, build reused" in notes()
    assert page().headers[COLOR_HEADER] == "blue"

    # v1, built while going to blue, starts cold on green: no rebuild.
    d, events = blue_green()
    bluegreen.stop_standby(d)
    manual_rollback(d, v1.release)
    assert not [n for n in notes() if n.startswith("rebuilding")], notes()
    assert page().headers[COLOR_HEADER] == "green"
    api = httpx.get(f"http://127.0.0.1:{public_fe}/api/health", timeout=10).json()
    assert api["release"] == v1.release and api["api_url"] == f"http://127.0.0.1:{public_be}"

    # v3 as an older slipway left it, built for green's private port: going back to
    # blue, it is rebuilt once, for the public address.
    d, events = blue_green()
    bluegreen.stop_standby(d)
    d.save_meta(v3.release, built_for="green")
    manual_rollback(d, v3.release)
    assert f"rebuilding {v3.release}'s frontend (built for green)" in notes()
    assert d.release_meta(v3.release)["built_for"] == "public"
    assert page().headers[COLOR_HEADER] == "blue"
    assert f"http://127.0.0.1:{public_be}" in page().text
