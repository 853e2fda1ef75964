"""Metrics in Prometheus text exposition format and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from slipway.metrics.dora import Metrics

GAUGES = [
    ("deploys_per_day", "slipway_deploys_per_day", "Successful deploys per day in the window"),
    ("duration_median_s", "slipway_deploy_duration_median_seconds", "Median deploy duration"),
    ("duration_p95_s", "slipway_deploy_duration_p95_seconds", "p95 deploy duration"),
    ("failure_rate", "slipway_deploy_failure_rate", "Failed deploys / all deploys"),
    (
        "change_failure_rate",
        "slipway_change_failure_rate",
        "Deploys causing a failure / successful",
    ),
    (
        "time_to_restore_median_s",
        "slipway_time_to_restore_median_seconds",
        "Median time to restore",
    ),
    ("lead_time_median_s", "slipway_lead_time_median_seconds", "Median commit-to-live time"),
    ("deploys", "slipway_deploys", "Finished deploys in the window"),
]
CSV_FIELDS = [
    "env",
    "window_days",
    "deploys",
    "successful",
    "failed",
    "rollbacks",
    "deploys_per_day",
    "deploys_per_week",
    "duration_median_s",
    "duration_p95_s",
    "failure_rate",
    "change_failures",
    "change_failure_rate",
    "time_to_restore_median_s",
    "restores",
    "lead_time_median_s",
]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus(metrics: Sequence[Metrics]) -> str:
    """One gauge family per figure; a figure with no data (None) is left out."""
    lines: list[str] = []
    for attr, name, help_text in GAUGES:
        samples = [(m.env, getattr(m, attr)) for m in metrics if getattr(m, attr) is not None]
        if not samples:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f'{name}{{env="{_label(env)}"}} {float(value):g}' for env, value in samples]
    return "\n".join(lines) + "\n"


def to_csv(metrics: Sequence[Metrics]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for m in metrics:
        data = m.as_dict()
        writer.writerow({k: "" if data[k] is None else data[k] for k in CSV_FIELDS})
    return out.getvalue()
