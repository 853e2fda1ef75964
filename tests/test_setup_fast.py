"""``slipway setup``'s parts that need no host: the boot unit's text, the PM2 package's
dependency closure, and what it leaves when a binary cannot be copied (the real setup
of a namespace host is ``tests/test_setup.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import FakeProcessManager, tiny_repo

from slipway.cli import setup
from slipway.config import load_config
from slipway.deploy.engine import Deployer
from slipway.transports.local import LocalTransport


@pytest.fixture
def deployer(tmp_path: Path) -> Deployer:
    repo = tiny_repo(tmp_path, 'kind = "node"\nstart = ["node", "s.js"]', {"s.js": "//\n"})
    return Deployer(
        load_config(repo / "slipway.toml"),
        "testing",
        LocalTransport(),
        process_manager=FakeProcessManager(),
    )


def test_the_pm2_boot_unit_resurrects_this_environments_pm2_with_the_tools(
    deployer: Deployer,
) -> None:
    text = setup.boot_unit(deployer, "deploy", "/home/deploy")
    assert "ExecStart=/usr/bin/env pm2 resurrect" in text
    assert "ExecStop=/usr/bin/env pm2 kill" in text
    assert f'Environment="PATH={deployer.layout.tools_bin}:' in text
    assert 'Environment="PM2_HOME=/home/deploy/.pm2"' in text  # never systemd's %h
    assert "User=deploy" in text and "Type=forking" in text
    assert "WantedBy=multi-user.target" in text


def test_unit_values_are_quoted_as_systemd_reads_them() -> None:
    assert setup._quoted('/srv/my app/%i"x') == '"/srv/my app/%%i\\"x"'


def test_the_supervisor_boot_unit_starts_its_supervisord(
    deployer: Deployer, tmp_path: Path
) -> None:
    raw = deployer.env.model_dump(mode="json")
    raw.update(process_manager="supervisor", supervisor_home=str(tmp_path / "sv"))
    env = type(deployer.env).model_validate(raw)
    deployer.env = env
    text = setup.boot_unit(deployer, "deploy", "/home/deploy")
    conf = f"{tmp_path / 'sv'}/supervisord.conf"
    assert f'ExecStart=/usr/bin/env supervisord -c "{conf}"' in text
    assert "PM2_HOME" not in text


def test_a_binary_for_another_architecture_is_left_with_what_to_do(
    deployer: Deployer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(setup, "same_platform", lambda d: False)
    monkeypatch.setattr(setup.doctor, "on_path", lambda d, name: None)
    action = setup.install_binary(deployer, "uv", "it installs the backend")
    assert action.done == "left" and "another system or architecture" in action.detail
    monkeypatch.setattr(setup, "deployer_binary", lambda name: None)
    action = setup.install_binary(deployer, "age", "backups are encrypted")
    assert action.done == "left" and "not on this machine either" in action.detail


def test_a_shim_or_a_binary_that_does_not_run_there_is_left_and_removed(
    deployer: Deployer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(setup.doctor, "on_path", lambda d, name: None)
    shim = tmp_path / "node"
    shim.write_text('#!/bin/sh\nexec asdf exec node "$@"\n')
    monkeypatch.setattr(setup, "deployer_binary", lambda name: shim)
    action = setup.install_binary(deployer, "node", "PM2 runs on it")
    assert action.done == "left" and "script or shim" in action.detail
    monkeypatch.setattr(setup, "deployer_binary", lambda name: Path("/bin/false"))
    action = setup.install_binary(deployer, "uv", "it installs the backend")
    assert action.done == "left" and "does not run there" in action.detail
    assert not list(Path(deployer.layout.tools_bin).glob("uv*"))  # nothing left behind


def _package(where: Path, name: str, deps: list[str]) -> Path:
    where.mkdir(parents=True)
    manifest = {"name": name, "dependencies": {d: "*" for d in deps}}
    (where / "package.json").write_text(json.dumps(manifest))
    return where


def test_the_closure_follows_flat_scoped_and_nested_dependencies(tmp_path: Path) -> None:
    modules = tmp_path / "node_modules"
    root = _package(modules / "pm2", "pm2", ["a", "@s/b", "nested", "gone"])
    _package(modules / "a", "a", ["@s/b"])
    _package(modules / "@s" / "b", "@s/b", [])
    _package(root / "node_modules" / "nested", "nested", [])  # travels inside pm2
    _package(modules / "nested", "nested", ["unrelated"])  # a different copy: not taken
    _package(modules / "unrelated", "unrelated", [])
    _package(root / "node_modules" / "semver", "semver", ["lru"])  # nested, its dep hoisted
    _package(modules / "lru", "lru", [])
    root_manifest = json.loads((root / "package.json").read_text())
    root_manifest["dependencies"]["semver"] = "*"
    (root / "package.json").write_text(json.dumps(root_manifest))
    found = {str(p.relative_to(modules)) for p in setup.dependency_closure(root)}
    assert found == {"pm2", "a", "@s/b", "lru"}


def test_npm_is_copied_with_its_bundled_packages_and_runs_from_the_tools(
    deployer: Deployer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host lacks npm (a frontend installs with it): the deployer's npm goes to the
    tools with the packages it bundles, and the copy answers as the original does."""
    import subprocess

    found = setup.node_package("npm")
    assert found is not None, "npm is one of the set-up requirements"
    package, _ = found
    assert [p.name for p in setup.dependency_closure(package)] == ["npm"]  # all nested
    monkeypatch.setattr(setup.doctor, "on_path", lambda d, name: None)
    action = setup.install_package(deployer, "npm", "install npm")
    link = Path(deployer.layout.tools_bin) / "npm"
    assert (action.what, action.done) == ("npm", "installed") and str(link) in action.detail
    assert link.resolve().is_relative_to(Path(deployer.layout.tools_bin).parent / "npm")
    copied = subprocess.run([str(link), "--version"], capture_output=True, text=True, check=True)
    original = subprocess.run(["npm", "--version"], capture_output=True, text=True, check=True)
    assert copied.stdout == original.stdout and copied.stdout.strip()
    assert "npm" in setup.doctor.managers(deployer)  # what makes setup install it
