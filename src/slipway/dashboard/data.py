"""What the dashboard shows, gathered from each environment's first host.

Read-only by construction: it only calls record queries, ``readlink``, ``find`` and the
health checks; nothing here changes a host.
"""

from __future__ import annotations

import time
from typing import Any

from slipway.config.load import LoadedConfig
from slipway.deploy.context import HostContext
from slipway.health.gate import run_round
from slipway.metrics.dora import DAY, compute
from slipway.secrets import Masker
from slipway.state import records
from slipway.state.lock import is_held, read_owner
from slipway.transports import connect

TREND_WEEKS = 8


def weekly_trend(rows: list[dict[str, Any]], env: str, now: float) -> list[dict[str, Any]]:
    """Oldest week first: successful deploys, failure rate and median duration per week."""
    trend = []
    for weeks_ago in range(TREND_WEEKS - 1, -1, -1):
        end = now - weeks_ago * 7 * DAY
        m = compute(rows, env=env, now=end, window_s=7 * DAY)
        trend.append(
            {
                "week_end": end,
                "deploys": m.successful,
                "failed": m.failed,
                "failure_rate": m.failure_rate,
                "duration_median_s": m.duration_median_s,
            }
        )
    return trend


def _backups(d: HostContext) -> list[dict[str, Any]]:
    """The newest backups, from their manifests."""
    return [
        {
            "name": m["file"],
            "size": m["size"],
            "time": m["created_at"],
            "reason": m["reason"],
            "encrypted": m["encrypted"],
        }
        for m in d.backups.list()[:10]
    ]


def _health(d: HostContext) -> dict[str, Any]:
    results = run_round(d.checks())
    return {
        "ok": all(r.ok for r in results) if results else None,
        "checks": [r.__dict__ for r in results],
    }


def environment_overview(d: HostContext, now: float, window_s: float) -> dict[str, Any]:
    rows = records.deployments(d.transport, d.layout, 100_000)
    held = is_held(d.transport, d.layout)
    owner = read_owner(d.transport, d.layout) if held else None
    return {
        "name": d.env_name,
        "host": d.transport.name,
        "current": d.current_release(),
        "strategy": d.env.strategy.value,
        "colour": None,  # blue-green colours arrive with the blue-green strategy
        "health": _health(d),
        "deploys": rows[:10],
        "metrics": compute(rows, env=d.env_name, now=now, window_s=window_s).as_dict(),
        "trend": weekly_trend(rows, d.env_name, now),
        "backups": _backups(d),
        "lock": {"held": held, "owner": owner.describe() if owner else None},
        "alerts": [],  # alerting arrives with `slipway monitor`
    }


def overview(loaded: LoadedConfig, window_s: float = 30 * DAY) -> dict[str, Any]:
    now = time.time()
    environments = []
    for name, env in loaded.config.environments.items():
        if env.root is None:
            continue
        with connect(env.parsed_hosts()[0], env.ssh, Masker()) as transport:
            d = HostContext(loaded, name, transport)
            environments.append(environment_overview(d, now, window_s))
    return {"generated_at": now, "window_days": window_s / DAY, "environments": environments}
