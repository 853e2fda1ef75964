"""The process manager interface the deploy engine drives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AppSpec:
    """One process to run: exact name, argv, working directory and environment."""

    name: str
    argv: list[str]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    kill_timeout_ms: int = 8000
    log_dir: str = ""
    max_restarts: int = 3  # PM2 gives up after this many quick crashes (a crash loop)


@dataclass(frozen=True)
class ProcessState:
    name: str
    status: str  # online, stopped, errored, launching, missing
    pid: int | None
    restarts: int
    started_at: float | None = None  # when the process last (re)started, epoch seconds

    @property
    def online(self) -> bool:
        return self.status == "online"


def with_missing(found: dict[str, ProcessState], names: Sequence[str]) -> dict[str, ProcessState]:
    """``found``, plus a ``missing`` state for each of ``names`` the manager did not list."""
    for name in names:
        found.setdefault(name, ProcessState(name, "missing", None, 0))
    return found


class ProcessManager(ABC):
    @abstractmethod
    def start(self, apps: Sequence[AppSpec], config_path: str) -> None:
        """Start ``apps`` (their config written to ``config_path``, mode 0600)."""

    @abstractmethod
    def stop(self, names: Sequence[str]) -> None:
        """Stop and forget exactly these apps; absent ones are fine."""

    @abstractmethod
    def status(self, names: Sequence[str]) -> dict[str, ProcessState]:
        """Current state of each named app (``missing`` when unknown)."""

    @abstractmethod
    def save(self) -> None:
        """Persist the process list so a reboot brings the live release back."""

    def check(self, apps: Sequence[AppSpec]) -> None:
        """Raise if ``apps`` cannot be started as given (a value this manager cannot
        carry): flows ask before they stop anything."""
        return None

    def stop_commands(self, names: Sequence[str]) -> list[list[str]]:
        """Commands (argv lists) that stop and forget ``names`` and persist the list,
        for a job running on the host without slipway (the standby's retirement).
        Empty: the job speaks this manager itself (PM2)."""
        return []
