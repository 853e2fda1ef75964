"""Deploy edge cases on a fresh environment: nothing to roll back to, busy ports, URLs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from apprepo import make_repo, write_config, write_env_file
from support import TOOLS_BIN, require_binary, stop_pm2

from slipway.config import load_config
from slipway.deploy.engine import Deployer
from slipway.errors import DeployFailed, UsageError
from slipway.transports.local import LocalTransport

pytestmark = pytest.mark.integration


def fresh(tmp_path: Path) -> Deployer:
    repo = make_repo(tmp_path / "repo")
    config = write_config(repo, tmp_path / "srv")
    write_env_file(tmp_path / "srv", "API_TOKEN=x-token-1\n")
    return Deployer(load_config(config), "testing", LocalTransport())


def test_busy_port_on_first_deploy_fails_and_says_the_site_is_down(tmp_path: Path):
    require_binary("pm2", path=str(TOOLS_BIN))
    d = fresh(tmp_path)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", d.env.ports.backend))
        squatter.listen()
        try:
            with pytest.raises(DeployFailed) as info:
                d.deploy("v1")
        finally:
            stop_pm2(tmp_path / "srv" / "pm2")
    assert info.value.step == "start"
    assert not info.value.rolled_back
    assert "is still in use" in info.value.cause
    assert "no previous release" in (info.value.hint or "")
    assert not (tmp_path / "srv" / "testing" / "current").exists()


def test_missing_env_file_is_named(tmp_path: Path):
    d = fresh(tmp_path)
    (tmp_path / "srv" / "testing" / "shared" / ".env.testing").unlink()
    with pytest.raises(DeployFailed) as info:
        d.deploy("v1")
    assert info.value.step == "link"
    assert "env file" in info.value.cause and "missing on the host" in info.value.cause
    assert info.value.rolled_back  # nothing live had changed


def test_repository_url_is_refused_clearly(tmp_path: Path):
    d = fresh(tmp_path)
    project = d.config.project.model_copy(update={"repository": "https://example.org/app.git"})
    config = d.config.model_copy(update={"project": project})
    from slipway.config.load import LoadedConfig

    remote = Deployer(LoadedConfig(config, d.loaded.path), "testing", LocalTransport())
    with pytest.raises(UsageError, match="remote repository URL"):
        remote.deploy("v1")


def test_environment_without_root_cannot_be_deployed(tmp_path: Path):
    d = fresh(tmp_path)
    with pytest.raises(UsageError, match="is not deployed"):
        Deployer(d.loaded, "development", LocalTransport())
