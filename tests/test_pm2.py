"""slipway's PM2 calls against a real PM2 daemon: delete and save over its RPC socket
(no Node start per call) behave as the CLI's, and what they write PM2 can resurrect."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import TOOLS_BIN, require_binary, stop_pm2

from slipway.errors import SlipwayError
from slipway.processes import pm2 as pm2_module
from slipway.processes.base import AppSpec
from slipway.processes.pm2 import Pm2
from slipway.transports.local import LocalTransport

pytestmark = pytest.mark.integration

SECRET = "pm2-dump-secret-4242"


@pytest.fixture
def pm2_home(tmp_path: Path) -> Iterator[Path]:
    require_binary("pm2", path=str(TOOLS_BIN))
    home = tmp_path / "pm2"
    yield home
    stop_pm2(home)


def manager(home: Path) -> Pm2:
    path = f"{TOOLS_BIN}:{os.environ['PATH']}"
    return Pm2(LocalTransport(), {"PM2_HOME": str(home), "PATH": path})


def sleeper(name: str, tmp: Path) -> AppSpec:
    return AppSpec(name, ["/bin/sleep", "1000"], str(tmp), {"API_TOKEN": SECRET})


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PM2_HOME": str(home)}
    return subprocess.run(
        [str(TOOLS_BIN / "pm2"), *args], env=env, capture_output=True, text=True, check=False
    )


def test_save_writes_what_pm2_resurrects_and_only_its_owner_reads(
    pm2_home: Path, tmp_path: Path
) -> None:
    pm = manager(pm2_home)
    pm.start([sleeper("app-a", tmp_path), sleeper("app-b", tmp_path)], str(tmp_path / "eco.json"))
    cli(pm2_home, "save", "--force")  # the CLI's own dump, to compare with
    theirs = json.loads((pm2_home / "dump.pm2").read_text())
    pm.save()
    dump = pm2_home / "dump.pm2"
    ours = json.loads(dump.read_text())
    assert oct(dump.stat().st_mode & 0o777) == "0o600"
    assert oct((pm2_home / "dump.pm2.bak").stat().st_mode & 0o777) == "0o600"
    assert oct(pm2_home.stat().st_mode & 0o777) == "0o700"  # its sockets take commands
    assert sorted(a["name"] for a in ours) == ["app-a", "app-b"]
    assert [sorted(a) for a in ours] == [sorted(a) for a in theirs]
    assert all("pm_id" not in a and "instances" not in a for a in ours)
    assert all(a["env"]["API_TOKEN"] == SECRET for a in ours)  # why it is 0600
    assert [a["pm_exec_path"] for a in ours] == [a["pm_exec_path"] for a in theirs]
    cli(pm2_home, "kill")
    resurrected = cli(pm2_home, "resurrect")
    assert resurrected.returncode == 0, resurrected.stderr
    states = pm.status(["app-a", "app-b"])
    assert all(s.online for s in states.values()), states


def test_stop_deletes_only_the_named_apps_once_they_exited(pm2_home: Path, tmp_path: Path) -> None:
    pm = manager(pm2_home)
    pm.start([sleeper("app-a", tmp_path), sleeper("app-b", tmp_path)], str(tmp_path / "eco.json"))
    before = pm.status(["app-a", "app-b"])
    pid = before["app-a"].pid
    assert pid is not None
    pm.stop(["app-a", "never-started"])
    after = pm.status(["app-a", "app-b"])
    assert after["app-a"].status == "missing"
    assert after["app-b"].online and after["app-b"].pid == before["app-b"].pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # returned once the app had exited
    listed = cli(pm2_home, "jlist")
    assert [p["name"] for p in json.loads(listed.stdout)] == ["app-b"]


def test_when_the_agent_cannot_ask_the_daemon_the_cli_does_it(
    pm2_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PM2 whose RPC the agent cannot use (another protocol version) still works."""
    pm = manager(pm2_home)
    pm.start([sleeper("app-a", tmp_path)], str(tmp_path / "eco.json"))

    def unreachable(*args: object, **kwargs: object) -> None:
        raise SlipwayError("PM2 getMonitorData: protocol not understood")

    monkeypatch.setattr(pm2_module, "call", unreachable)
    pm.save()
    assert [a["name"] for a in json.loads((pm2_home / "dump.pm2").read_text())] == ["app-a"]
    assert oct((pm2_home / "dump.pm2").stat().st_mode & 0o777) == "0o600"
    pm.stop(["app-a"])
    assert json.loads(cli(pm2_home, "jlist").stdout) == []
