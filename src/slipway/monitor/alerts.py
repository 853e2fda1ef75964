"""Thresholds and alert state: pure functions, so the fire-once / resolve-once rule is
tested without a clock or a network.

An alert whose figure is unknown in a sample (too few requests to judge an error rate,
no WebSocket probe) keeps its state: silence is not recovery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slipway.config.model import MonitorConfig
from slipway.monitor.sample import Sample

ALERTS = ("error_rate", "p95", "websocket_drops", "database", "disk")


@dataclass(frozen=True)
class Reading:
    name: str
    value: float | None  # None: not enough data in this sample to judge
    threshold: float
    firing: bool
    shown: str  # the value for people, e.g. "7.5% of 40 requests"
    limit: str  # the threshold for people, e.g. "> 5%"


@dataclass(frozen=True)
class Transition:
    name: str
    firing: bool  # True: fired now; False: resolved now
    reading: Reading
    since: float  # when the alert fired (for a resolve: how long it lasted)


def evaluate(sample: Sample, cfg: MonitorConfig) -> list[Reading]:
    """One reading per alert for ``sample`` under ``cfg``'s thresholds."""
    readings = []
    judged = sample.requests >= cfg.min_requests
    error = sample.error_percent() if judged else None
    readings.append(
        _above(
            "error_rate",
            error,
            cfg.error_rate_percent,
            f"{error:.1f}% of {sample.requests} requests" if error is not None else _few(sample),
            f"> {cfg.error_rate_percent:g}%",
        )
    )
    p95 = sample.p95_seconds if judged else None
    readings.append(
        _above(
            "p95",
            p95,
            cfg.p95_seconds,
            f"{p95:.3f}s" if p95 is not None else _few(sample),
            f"> {cfg.p95_seconds:g}s",
        )
    )
    drops = sample.ws_drop_percent()
    readings.append(
        _above(
            "websocket_drops",
            drops,
            cfg.websocket_drop_percent,
            (
                f"{sample.ws_drops} of {sample.ws_probes} probe connections dropped"
                if drops is not None
                else "no WebSocket probe"
            ),
            f"> {cfg.websocket_drop_percent:g}%",
        )
    )
    failures = float(sample.db_failures) if sample.db_probes else None
    readings.append(
        _above(
            "database",
            failures,
            float(cfg.database_failures),
            (
                f"{sample.db_failures} of {sample.db_probes} probes failed"
                + (f": {sample.db_errors[0]}" if sample.db_errors else "")
                if sample.db_probes
                else "no database probe"
            ),
            f"> {cfg.database_failures} failed probes",
        )
    )
    readings.append(_disk(sample, cfg))
    return readings


def _few(sample: Sample) -> str:
    return f"not judged ({sample.requests} requests)"


def _above(name: str, value: float | None, threshold: float, shown: str, limit: str) -> Reading:
    return Reading(name, value, threshold, value is not None and value > threshold, shown, limit)


def _disk(sample: Sample, cfg: MonitorConfig) -> Reading:
    if not sample.disks:
        return Reading("disk", None, cfg.disk_free_percent, False, "not measured", "")
    path, disk = min(sample.disks.items(), key=lambda item: float(item[1]["free_ratio"]))
    free = 100.0 * float(disk["free_ratio"])
    shown = f"{free:.1f}% free on {path}"
    limit = f"< {cfg.disk_free_percent:g}% free"
    return Reading("disk", free, cfg.disk_free_percent, free < cfg.disk_free_percent, shown, limit)


def transitions(
    state: dict[str, dict[str, Any]], readings: list[Reading], now: float
) -> tuple[dict[str, dict[str, Any]], list[Transition]]:
    """The new alert state and the alerts that fired or resolved in this sample."""
    new_state = {name: dict(value) for name, value in state.items()}
    changes = []
    for reading in readings:
        previous = state.get(reading.name, {"firing": False})
        was_firing = bool(previous.get("firing"))
        if reading.value is None or reading.firing == was_firing:
            continue  # unknown, or unchanged: nothing to say
        since = now if reading.firing else float(previous.get("since", now))
        new_state[reading.name] = {"firing": reading.firing, "since": now}
        changes.append(Transition(reading.name, reading.firing, reading, since))
    return new_state, changes
