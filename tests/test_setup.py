"""``slipway setup`` on a network-namespace host (``tests/netns.py``) whose PATH, as
slipway's commands over SSH see it, has python3 and Node.js but no uv, PM2 or Traefik
(``host_path`` empty: the standard directories only). doctor fails naming them; setup
installs them from this machine into ``<root>/.slipway/tools``; doctor passes; a
blue-green deploy works; setup again changes nothing."""

from __future__ import annotations

import configparser
import http.client
import stat
from collections.abc import Iterator

import pytest
from fleetenv import Fleet, namespace_fleet

from slipway.cli.setup import dependency_closure, node_package

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with namespace_fleet(tmp_path_factory, "setup", 1) as fleet:
        text = fleet.config.read_text()
        start = text.index("host_path = [")
        end = text.index("\n", start)
        fleet.config.write_text(text[:start] + "host_path = []" + text[end:])
        yield fleet


def test_setup_makes_a_bare_host_ready_and_a_deploy_works(bare: Fleet) -> None:
    host = bare.ns.hosts[0]
    before = bare.cli("doctor", "testing")
    assert before.returncode == 1, before.stdout
    for missing in ("uv", "pm2", "traefik"):
        assert f"FAIL {missing}" in before.stdout, before.stdout

    done = bare.cli("setup", "testing")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installed uv" in done.stdout and "installed pm2" in done.stdout
    assert "installed traefik" in done.stdout and "present   node" in done.stdout
    assert "ready: doctor finds nothing left to fix" in done.stdout
    tools = host.data / ".slipway" / "tools" / "bin"
    assert stat.S_IMODE((tools / "uv").stat().st_mode) == 0o755
    state = host.data / "testing" / ".slipway"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    text = next(state.glob("slipway-*.service")).read_text()
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(text)  # systemd's syntax is ini-like: it parses
    assert unit["Service"]["ExecStart"] == "/usr/bin/env pm2 resurrect"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert f'Environment="PATH={bare.ns.root}/.slipway/tools/bin:' in text
    assert f'Environment="PM2_HOME={bare.ns.root}/pm2"' in text

    after = bare.cli("doctor", "testing")
    assert after.returncode == 0, after.stdout
    code, _, err = bare.deploy("v1")
    assert code == 0, err
    conn = http.client.HTTPConnection(host.address, bare.port, timeout=5)
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200

    again = bare.cli("setup", "testing")
    assert again.returncode == 0, again.stdout
    assert "installed" not in again.stdout
    assert "present   uv" in again.stdout and "present   pm2" in again.stdout


def test_pm2_travels_with_exactly_its_dependencies() -> None:
    found = node_package("pm2")
    assert found is not None, "pm2 is one of the set-up requirements (run `make test`)"
    package, entry = found
    assert entry.is_relative_to(package) and package.name == "pm2"
    names = {str(p.relative_to(package.parent)) for p in dependency_closure(package)}
    assert {"pm2", "commander"} <= names and "@pm2/js-api" in names  # a scoped one too
    assert not {"pnpm", "yarn"} & names  # beside it in tools/, not its dependencies
    assert all((package.parent / n / "package.json").is_file() for n in names)
