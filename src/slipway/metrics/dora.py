"""DORA metrics from deployment records: pure functions, exact answers.

Definitions (Four Keys where they overlap; see the README):

- deployment frequency: successful deploys in the window, per day and per week.
- deployment duration: median and p95 of finished deploys' durations, and the median
  of each step.
- failure rate: deploys that failed (rolled back or not) / all finished deploys.
- change failure rate: successful deploys that caused a failure / successful deploys.
  A successful deploy caused a failure when a later rollback moved away from its
  release (rule "rolled back"). Only when asked (a fix-forward window, `metrics
  --fix-window 60m`): also when a deploy whose commit message starts with "fix",
  "hotfix" or "revert" followed it within the window (rule "fixed forward"): a "fix:"
  subject alone says nothing about the release before it (it once made a healthy
  release count as failed), so it is never counted by default. Each change failure
  names its rule and evidence (`metrics --explain`). A deploy aborted in its canary
  step (rule "canary aborted") served real requests: it counts as a change failure,
  and as a change, restored after its canary step and the undo.
- time to restore: median time from a failure to restored service. For a deploy that
  rolled itself back: the rollback step's duration (detection to previous release
  healthy). For a failed deploy that could not roll back: until the next successful
  deploy or rollback finished. For a change failure: from its release going live to
  the rollback or fix-forward that replaced it.
- lead time for changes: median time from commit to the deploy that made it live.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

DAY = 86400.0
FAILED = ("failed", "rolled_back", "interrupted")  # an interrupted deploy failed too
FIX_FORWARD = re.compile(r"(fix|hotfix|revert)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Metrics:
    env: str
    window_days: float
    deploys: int
    successful: int
    failed: int
    rollbacks: int
    deploys_per_day: float
    deploys_per_week: float
    duration_median_s: float | None
    duration_p95_s: float | None
    step_median_s: dict[str, float] = field(default_factory=dict)
    failure_rate: float | None = None
    change_failures: int = 0
    change_failure_rate: float | None = None
    # Each change failure: release, deployment id, rule and the run that showed it.
    change_failure_list: list[dict[str, Any]] = field(default_factory=list)
    time_to_restore_median_s: float | None = None
    restores: int = 0
    lead_time_median_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): always one of the values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _steps(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A row's steps: decoded by the records reader, or still JSON text (CSV, tests)."""
    steps = row.get("steps") or []
    if isinstance(steps, str):
        try:
            steps = json.loads(steps)
        except json.JSONDecodeError:
            return []
    return [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []


def compute(
    rows: Iterable[Mapping[str, Any]],
    *,
    env: str,
    now: float,
    window_s: float,
    fix_window_s: float = 0.0,
) -> Metrics:
    """Metrics of ``env`` over ``(now - window_s, now]`` from deployment rows."""
    start = now - window_s
    finished = sorted(
        (r for r in rows if r.get("env") == env and r.get("finished_at") is not None),
        key=lambda r: float(r["finished_at"]),
    )
    in_window = [r for r in finished if start < float(r["finished_at"]) <= now]
    deploys = [r for r in in_window if r.get("kind", "deploy") == "deploy"]
    rollbacks = [r for r in in_window if r.get("kind") == "rollback" and r["status"] == "succeeded"]
    good = [r for r in deploys if r["status"] == "succeeded"]
    bad = [r for r in deploys if r["status"] in FAILED]
    days = window_s / DAY
    durations = [float(r["duration_s"]) for r in deploys if r.get("duration_s") is not None]
    per_step: dict[str, list[float]] = {}
    for row in deploys:
        for step in _steps(row):
            per_step.setdefault(str(step.get("step")), []).append(float(step.get("seconds", 0)))

    canaries = _aborted_canaries(bad)
    change_list = _change_failures(good, finished, fix_window_s) + canaries
    change_failures = len(change_list)
    changes = len(good) + len(canaries)  # an aborted canary served production traffic
    restore_times = [float(c["restored_after_s"]) for c in change_list]
    restore_times += _restore_times_of_failed(
        [r for r in bad if r.get("failed_step") != "canary"], finished
    )
    leads = [
        float(r["finished_at"]) - float(r["committed_at"])
        for r in good
        if r.get("committed_at") is not None
    ]
    return Metrics(
        env=env,
        window_days=round(days, 4),
        deploys=len(deploys),
        successful=len(good),
        failed=len(bad),
        rollbacks=len(rollbacks),
        deploys_per_day=round(len(good) / days, 4) if days else 0.0,
        deploys_per_week=round(len(good) / days * 7, 4) if days else 0.0,
        duration_median_s=_median(durations),
        duration_p95_s=percentile(durations, 95),
        step_median_s={k: float(statistics.median(v)) for k, v in per_step.items()},
        failure_rate=round(len(bad) / len(deploys), 4) if deploys else None,
        change_failures=change_failures,
        change_failure_rate=round(change_failures / changes, 4) if changes else None,
        change_failure_list=change_list,
        time_to_restore_median_s=_median(restore_times),
        restores=len(restore_times),
        lead_time_median_s=_median(leads),
    )


def _change_failures(
    good: Sequence[Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]],
    fix_window_s: float,
) -> list[dict[str, Any]]:
    """Successful deploys later rolled back (or, with a window, fixed forward), each
    with the rule that counted it, the run that showed it and the time to restore (the
    earliest of overlapping signals)."""
    found: list[dict[str, Any]] = []
    for row in good:
        live_at = float(row["finished_at"])
        later = [
            r for r in history if float(r["finished_at"]) > live_at and r["status"] == "succeeded"
        ]
        signals = [
            ("rolled back", r)
            for r in later
            if r.get("kind") == "rollback" and r.get("previous_release") == row["release"]
        ]
        if fix_window_s > 0:
            signals += [
                ("fixed forward", r)
                for r in later
                if r.get("kind", "deploy") == "deploy"
                and float(r["finished_at"]) - live_at <= fix_window_s
                and FIX_FORWARD.match(str(r.get("message") or ""))
            ]
        if signals:
            rule, ender = min(signals, key=lambda s: float(s[1]["finished_at"]))
            found.append(_change_failure(row, rule, ender, live_at))
    return found


def _aborted_canaries(bad: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Deploys aborted in their canary step: the release answered real requests, so
    it is a failed change; restored when every request was back on the stable colour
    (the canary step's end) plus the undo that drained it."""
    found = []
    for row in bad:
        if row.get("failed_step") != "canary":
            continue
        seconds = sum(
            float(s.get("seconds", 0))
            for s in _steps(row)
            if s.get("step") in ("canary", "rollback")
        )
        found.append(
            {
                "release": row.get("release"),
                "deployment_id": row.get("id"),
                "rule": "canary aborted",
                "evidence": f"deploy {row.get('id')} aborted in its canary step",
                "restored_after_s": seconds,
            }
        )
    return found


def _change_failure(
    row: Mapping[str, Any], rule: str, ender: Mapping[str, Any], live_at: float
) -> dict[str, Any]:
    evidence = (
        f"rollback {ender.get('id')} to {ender.get('release')}"
        if rule == "rolled back"
        else f"deploy {ender.get('id')} of {ender.get('release')}: {ender.get('message')!s:.80}"
    )
    return {
        "release": row.get("release"),
        "deployment_id": row.get("id"),
        "rule": rule,
        "evidence": evidence,
        "restored_after_s": float(ender["finished_at"]) - live_at,
    }


def _restore_times_of_failed(
    bad: Sequence[Mapping[str, Any]], history: Sequence[Mapping[str, Any]]
) -> list[float]:
    times: list[float] = []
    for row in bad:
        if row["status"] == "rolled_back":
            rollback = [s for s in _steps(row) if s.get("step") == "rollback"]
            if rollback:
                times.append(float(rollback[0].get("seconds", 0)))
            continue
        failed_at = float(row["finished_at"])
        restored = next(
            (
                r
                for r in history
                if float(r["finished_at"]) > failed_at and r["status"] == "succeeded"
            ),
            None,
        )
        if restored is not None:
            times.append(float(restored["finished_at"]) - failed_at)
    return times


def parse_since(text: str) -> float:
    """``30d``, ``12h``, ``2w``, ``90m`` to seconds."""
    units = {"m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) <= 0:
        from slipway.errors import UsageError

        raise UsageError(
            f"invalid duration {text!r}", hint="use a whole number and m, h, d or w (e.g. 30d)"
        )
    return int(number) * units[unit]
