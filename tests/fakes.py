"""Stand-ins for the parts a fast test cannot start: processes and the router.

As httpx's ``MockTransport`` stands in for the network, :class:`FakeProcessManager`
stands in for PM2 (it records every call, and what it "started" is online) and
:class:`FakeRouter` for Traefik (it records every switch). Everything else in a fast
test is real: the local transport, the host helper, SQLite records, files on disk.
:func:`tiny_repo` makes the one-process app such tests deploy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from apprepo import git
from support import free_port

from slipway.deploy.context import HostContext
from slipway.health.gate import GateReport
from slipway.processes.base import AppSpec, ProcessManager, ProcessState
from slipway.routers.base import SwitchReport, Target


class FakeProcessManager(ProcessManager):
    def __init__(self, online: Sequence[str] = ()) -> None:
        self.online: set[str] = set(online)
        self.calls: list[tuple[str, list[str]]] = []
        self.started: dict[str, AppSpec] = {}

    def start(self, apps: Sequence[AppSpec], config_path: str) -> None:
        self.calls.append(("start", [a.name for a in apps]))
        for app in apps:
            self.online.add(app.name)
            self.started[app.name] = app

    def stop(self, names: Sequence[str]) -> None:
        self.calls.append(("stop", list(names)))
        self.online -= set(names)

    def status(self, names: Sequence[str]) -> dict[str, ProcessState]:
        return {
            n: ProcessState(n, "online" if n in self.online else "missing", 1, 0) for n in names
        }

    def save(self) -> None:
        self.calls.append(("save", []))


@dataclass
class FakeRouter:
    active: str | None = None
    switches: list[str] = field(default_factory=list)

    def running(self) -> bool:
        return True

    def ensure_running(self, target: Target) -> None:
        return None

    def switch(self, target: Target) -> SwitchReport:
        previous, self.active = self.active, target.color
        self.switches.append(target.color)
        return SwitchReport(target.color, previous, 0.01)

    def active_color(self) -> str | None:
        return self.active

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"FakeRouter has no {name}")


def answer_gates(monkeypatch: pytest.MonkeyPatch, ok: bool, reason: str = "") -> None:
    """Every health gate answers ``ok`` (no app runs behind the fake process manager)."""
    report = GateReport(ok, 2, 2 if ok else 0, 0.1, reason=reason)
    monkeypatch.setattr(HostContext, "gate_report", lambda self, *a, **k: report)


TINY_CONFIG = """
[project]
name = "tiny"
repository = "."

[processes.backend]
{backend}
port = "backend"
health_path = "/health"

[environments.testing]
hosts = ["local"]
root = "{root}"
database = "testing/state.db"
ports = {{ backend = {backend_port}, frontend = {frontend_port} }}
strategy = "restart"
health = "none"
keep_releases = 2
backups = {{ enabled = true, keep_last = 5 }}
"""


def tiny_repo(tmp_path: Path, backend: str, files: dict[str, str]) -> Path:
    """A one-process app's repository (one commit, tag v1) for the fake process
    manager: ``backend`` is its process table's kind and start lines, ``files`` the
    rest of the repository; it deploys under ``tmp_path/srv``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name, text in files.items():
        (repo / name).write_text(text)
    config = TINY_CONFIG.format(
        backend=backend,
        root=tmp_path / "srv",
        backend_port=free_port(),
        frontend_port=free_port(),
    )
    (repo / "slipway.toml").write_text(config)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    git(repo, "tag", "v1")
    return repo
