"""The health gate: every check must pass ``passes`` times in a row before a deadline.

One lucky 200 is not health (kamal-proxy accepts one): a backend that answers once and
then crash-loops must fail the gate. Checks of one round run in parallel; a round's
failures reset the streak. ``abort`` lets the caller stop early when waiting is
pointless (e.g. PM2 reports the process errored).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from slipway.health.checks import Check, CheckResult


@dataclass
class GateReport:
    ok: bool
    rounds: int
    streak: int
    seconds: float
    last: list[CheckResult] = field(default_factory=list)
    reason: str = ""

    def failures(self) -> list[CheckResult]:
        return [r for r in self.last if not r.ok]

    def summary(self) -> str:
        if self.ok:
            return f"healthy: {self.streak} passes in a row after {self.seconds:.1f}s"
        problems = "; ".join(f"{r.name}: {r.error}" for r in self.failures())
        return f"{self.reason}; {problems}" if problems else self.reason


def run_round(checks: Sequence[Check]) -> list[CheckResult]:
    if not checks:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(checks))) as pool:
        return list(pool.map(lambda check: check(), checks))


def wait_healthy(
    checks: Sequence[Check],
    *,
    passes: int,
    interval: float,
    deadline: float,
    abort: Callable[[], str | None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> GateReport:
    started = time.monotonic()
    streak = rounds = 0
    last: list[CheckResult] = []
    while True:
        reason = abort() if abort else None
        if reason:
            return GateReport(False, rounds, streak, time.monotonic() - started, last, reason)
        last = run_round(checks)
        rounds += 1
        streak = streak + 1 if all(r.ok for r in last) else 0
        elapsed = time.monotonic() - started
        if streak >= passes:
            return GateReport(True, rounds, streak, elapsed, last)
        if elapsed + interval > deadline:
            why = f"not healthy within {deadline:g}s ({streak}/{passes} passes in a row)"
            return GateReport(False, rounds, streak, elapsed, last, why)
        sleep(interval)
