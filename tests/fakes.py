"""Stand-ins for the parts a fast test cannot start: processes and the router.

As httpx's ``MockTransport`` stands in for the network, :class:`FakeProcessManager`
stands in for PM2 (it records every call, and what it "started" is online) and
:class:`FakeRouter` for Traefik (it records every switch). Everything else in a fast
test is real: the local transport, the host helper, SQLite records, files on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

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
