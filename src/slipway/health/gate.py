"""The health gate: every check must pass ``passes`` times in a row before a deadline.

One lucky 200 is not health (kamal-proxy accepts one): a backend that answers once and
then crash-loops must fail the gate. Checks of one round run in parallel; a round's
failures reset the streak. ``abort`` lets the caller stop early when waiting is
pointless (e.g. PM2 reports the process errored).

The floor: a round against a process still starting fails and costs a whole
``interval``, so when the caller says how (``ready``), the gate first polls every 50 ms
until the processes' ports accept connections, and only then runs its rounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from slipway.health.checks import Check, CheckResult

TIMED_OUT = "not healthy within"  # how a gate that ran out of time starts its reason


@dataclass
class GateReport:
    ok: bool
    rounds: int
    streak: int
    seconds: float
    last: list[CheckResult] = field(default_factory=list)
    reason: str = ""
    first_pass: float | None = None  # seconds from the gate's start to its first passing round

    @property
    def timed_out(self) -> bool:
        """It ran out of time (rather than being aborted by a crash or a lost lock)."""
        return not self.ok and self.reason.startswith(TIMED_OUT)

    def failures(self) -> list[CheckResult]:
        return [r for r in self.last if not r.ok]

    def summary(self) -> str:
        if self.ok:
            first = f", first pass at {self.first_pass:.2f}s" if self.first_pass is not None else ""
            return f"healthy: {self.streak} passes in a row after {self.seconds:.1f}s{first}"
        problems = "; ".join(f"{r.name}: {r.error}" for r in self.failures())
        return f"{self.reason}; {problems}" if problems else self.reason


def run_round(checks: Sequence[Check]) -> list[CheckResult]:
    if not checks:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(checks))) as pool:
        return list(pool.map(lambda check: check(), checks))


READY_POLL = 0.05  # seconds between two looks at whether the ports accept


def wait_healthy(
    checks: Sequence[Check],
    *,
    passes: int,
    interval: float,
    deadline: float,
    abort: Callable[[], str | None] | None = None,
    ready: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> GateReport:
    started = time.monotonic()
    streak = rounds = 0
    last: list[CheckResult] = []
    first_pass: float | None = None
    if ready is not None:
        refused = _wait_ready(ready, started, deadline, abort, sleep)
        if refused:
            return GateReport(False, 0, 0, time.monotonic() - started, [], refused)
    while True:
        reason = abort() if abort else None
        if reason:
            return GateReport(False, rounds, streak, time.monotonic() - started, last, reason)
        last = run_round(checks)
        rounds += 1
        streak = streak + 1 if all(r.ok for r in last) else 0
        elapsed = time.monotonic() - started
        if streak == 1 and first_pass is None:
            first_pass = elapsed
        if streak >= passes:
            return GateReport(True, rounds, streak, elapsed, last, first_pass=first_pass)
        if elapsed + interval > deadline:
            why = f"{TIMED_OUT} {deadline:g}s ({streak}/{passes} passes in a row)"
            return GateReport(False, rounds, streak, elapsed, last, why, first_pass)
        sleep(interval)


def _wait_ready(
    ready: Callable[[], bool],
    started: float,
    deadline: float,
    abort: Callable[[], str | None] | None,
    sleep: Callable[[float], None],
) -> str:
    """Poll until ``ready``; the reason to give up, or "" once ready."""
    while not ready():
        reason = abort() if abort else None
        if reason:
            return reason
        if time.monotonic() - started + READY_POLL > deadline:
            return f"{TIMED_OUT} {deadline:g}s (its ports never accepted a connection)"
        sleep(READY_POLL)
    return ""
