"""One sample of an environment's figures (pure data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slipway.health.checks import CheckResult


@dataclass
class Sample:
    """What the monitor saw in one window.

    ``requests``/``errors``/``p95_seconds`` come from the router's access log (real
    traffic, API entry point only) when the environment has a router, else from the
    synthetic HTTP probes; ``source`` says which.
    """

    at: float
    source: str
    window_seconds: float | None = None
    requests: int = 0
    errors: int = 0
    p95_seconds: float | None = None
    ws_probes: int = 0
    ws_drops: int = 0
    ws_sessions: int = 0  # WebSocket sessions that ended in the window (access log)
    db_probes: int = 0
    db_failures: int = 0
    db_errors: list[str] = field(default_factory=list)
    disks: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)

    def error_percent(self) -> float | None:
        return 100.0 * self.errors / self.requests if self.requests else None

    def ws_drop_percent(self) -> float | None:
        return 100.0 * self.ws_drops / self.ws_probes if self.ws_probes else None

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["checks"] = [c.__dict__ for c in self.checks]
        data["error_percent"] = self.error_percent()
        data["ws_drop_percent"] = self.ws_drop_percent()
        return data
