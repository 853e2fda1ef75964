"""Checks that look at the host rather than at HTTP: the process manager, disk space and
a direct read-only query of the SQLite file.

Each takes a function that asks the host (through the transport) so the check itself
stays independent of SSH or local runs and is testable with plain data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from slipway.health.checks import Check, CheckResult, named
from slipway.processes.base import ProcessState

# A process that restarted at least this often, the last time within the window, is in
# a restart loop (PM2's cumulative count alone would flag a process that restarted twice
# last month).
RESTART_LOOP_RESTARTS = 2
RESTART_LOOP_WINDOW_SECONDS = 60.0


def timed(name: str, probe: Callable[[], str | None]) -> Check:
    """A check from ``probe``, which returns a problem or None; any exception is one."""

    def run() -> CheckResult:
        started = time.perf_counter()
        try:
            error = probe()
        except Exception as exc:  # a check reports; it never raises
            error = named(exc)
        latency = (time.perf_counter() - started) * 1000
        return CheckResult(name, error is None, round(latency, 1), error)

    return run


def processes_problem(states: Mapping[str, ProcessState], now: float) -> str | None:
    """Why the processes are not healthy: not online, or restarting in a loop."""
    for name, state in sorted(states.items()):
        if not state.online:
            return f"{name} is {state.status}"
        recent = state.started_at is not None and now - state.started_at < (
            RESTART_LOOP_WINDOW_SECONDS
        )
        if state.restarts >= RESTART_LOOP_RESTARTS and recent:
            ago = now - (state.started_at or now)
            return f"{name} is in a restart loop ({state.restarts} restarts, last {ago:.0f}s ago)"
    return None


def processes_check(status: Callable[[], Mapping[str, ProcessState]]) -> Check:
    return timed("processes", lambda: processes_problem(status(), time.time()))


def disk_problem(disks: Mapping[str, Mapping[str, Any]], min_free_percent: float) -> str | None:
    """The first path whose filesystem has less free space than ``min_free_percent``."""
    for path, disk in sorted(disks.items()):
        free_percent = float(disk["free_ratio"]) * 100
        if free_percent < min_free_percent:
            return (
                f"{path}: {free_percent:.1f}% free, below {min_free_percent:g}%"
                f" ({int(disk['free']) >> 20} MiB of {int(disk['total']) >> 20} MiB)"
            )
    return None


def disk_check(disks: Callable[[], Mapping[str, Mapping[str, Any]]], min_free: float) -> Check:
    return timed("disk", lambda: disk_problem(disks(), min_free))


def sqlite_check(name: str, probe: Callable[[], object]) -> Check:
    """Passes when ``probe`` (a read-only query of the database file) answers."""

    def ask() -> None:
        probe()
        return None

    return timed(name, ask)
