"""What the dashboard shows, gathered from every host of each environment.

Read-only by construction: it only calls record queries, ``readlink``, ``find`` and the
health checks; nothing here changes a host.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from typing import Any

from slipway.config.load import LoadedConfig
from slipway.config.model import Strategy
from slipway.deploy.context import HostContext
from slipway.health.gate import run_round
from slipway.metrics.dora import DAY, compute
from slipway.secrets import Masker
from slipway.state import records
from slipway.state.host import read_text
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


def _health(d: HostContext, deployed: bool, run_checks: bool) -> dict[str, Any]:
    """One round of the environment's checks: ``state`` says what the badge says. An
    environment nothing was ever deployed to is "not deployed", never "unhealthy"."""
    if not deployed:
        return {"ok": None, "state": "not deployed", "checks": []}
    if not run_checks:
        return {"ok": None, "state": "checking", "checks": []}
    results = run_round(d.checks())
    if not results:
        return {"ok": None, "state": "no checks", "checks": []}
    ok = all(r.ok for r in results)
    return {
        "ok": ok,
        "state": "healthy" if ok else "unhealthy",
        "checks": [r.__dict__ for r in results],
    }


def _colours(d: HostContext) -> dict[str, Any]:
    """Blue-green: the live colour and the warm (or draining) standby."""
    if not d.blue_green:
        return {"colour": None, "standby": None}
    colors = d.read_colors()
    live = colors.get("live") or {}
    standby = colors.get("standby")
    return {
        "colour": live.get("color"),
        "standby": (
            {
                "colour": standby.get("color"),
                "release": standby.get("release"),
                "until": standby.get("until"),
                "draining": bool(standby.get("draining")),
            }
            if standby
            else None
        ),
    }


def _alerts(d: HostContext) -> list[str]:
    """The alerts `slipway monitor` last left firing (its state on the host)."""
    text = read_text(d.transport, f"{d.layout.state_dir}/monitor.json")
    try:
        alerts = json.loads(text or "{}").get("alerts", {})
    except (ValueError, AttributeError):
        return []
    return sorted(name for name, state in alerts.items() if (state or {}).get("firing"))


def host_overview(d: HostContext, run_checks: bool) -> dict[str, Any]:
    """What one host of an environment says: its release, colours, health, lock,
    unfinished run and alerts (each host of a fleet has its own)."""
    held = is_held(d.transport, d.layout)
    owner = read_owner(d.transport, d.layout) if held else None
    current = d.current_release()
    return {
        "host": d.transport.name,
        "current": current,
        "deployed": current is not None,
        **_colours(d),
        "unfinished": d.unfinished_run(),
        "health": _health(d, current is not None, run_checks),
        "lock": {"held": held, "owner": owner.describe() if owner else None},
        "alerts": _alerts(d),
        "canary": d.canary_status() if d.env.strategy is Strategy.CANARY else None,
    }


def _fleet_health(hosts: list[dict[str, Any]]) -> dict[str, Any]:
    """The environment's badge: unhealthy when any host is, healthy when every host is,
    else the first host's state; the checks are the first host's."""
    states = [h["health"]["state"] for h in hosts]
    if len(hosts) == 1 or states.count(states[0]) == len(states):
        return dict(hosts[0]["health"])
    state = "unhealthy" if "unhealthy" in states else states[0]
    return {**hosts[0]["health"], "ok": False if state == "unhealthy" else None, "state": state}


def environment_overview(
    contexts: list[HostContext], now: float, window_s: float, *, run_checks: bool = True
) -> dict[str, Any]:
    """The environment as its first host records it (deploys, metrics, backups: a fleet
    deploy is recorded on every host), with every host's own state under ``hosts``."""
    d = contexts[0]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(contexts), 10)) as pool:
        hosts = list(pool.map(lambda c: host_overview(c, run_checks), contexts))
    rows = records.deployments(d.transport, d.layout, 100_000)
    several = len(hosts) > 1
    held = [h for h in hosts if h["lock"]["held"]]
    return {
        **hosts[0],
        "name": d.env_name,
        "strategy": d.env.strategy.value,
        "unfinished": next((h["unfinished"] for h in hosts if h["unfinished"]), None),
        "health": _fleet_health(hosts),
        "lock": held[0]["lock"] if held else hosts[0]["lock"],
        "alerts": [f"{h['host']}: {a}" if several else a for h in hosts for a in h["alerts"]],
        "deploys": rows[:10],
        "metrics": compute(rows, env=d.env_name, now=now, window_s=window_s).as_dict(),
        "trend": weekly_trend(rows, d.env_name, now),
        "backups": _backups(d),
        "hosts": hosts,
    }


class Sessions:
    """Host contexts kept open between the dashboard's computations. Opening one
    (connecting, starting the host agent) took about 90 ms an environment here: most of
    the first view's time. An environment one of whose hosts failed is dropped and
    opened again on the next request."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self._open: dict[str, list[HostContext]] = {}
        self._lock = threading.Lock()

    def contexts(self, name: str) -> list[HostContext]:
        """A context on every host of environment ``name``."""
        with self._lock:
            found = self._open.get(name)
            if found is None:
                env = self.loaded.config.environments[name]
                found = []
                try:
                    for host in env.parsed_hosts():
                        transport = connect(host, env.ssh, Masker())
                        found.append(HostContext(self.loaded, name, transport))
                except BaseException:
                    for d in found:
                        d.transport.close()
                    raise
                self._open[name] = found
            return found

    def drop(self, name: str) -> None:
        with self._lock:
            found = self._open.pop(name, [])
        for d in found:
            d.transport.close()

    def close(self) -> None:
        for name in list(self._open):
            self.drop(name)


def overview(
    loaded: LoadedConfig,
    window_s: float = 30 * DAY,
    *,
    run_checks: bool = True,
    sessions: Sessions | None = None,
) -> dict[str, Any]:
    """Every deployed environment; ``run_checks=False`` leaves the health checks out
    (the page's first view: records only, in milliseconds; the checks follow).
    ``sessions``: contexts kept open between calls (the server's), else opened and
    closed here."""
    now = time.time()
    kept = sessions or Sessions(loaded)
    environments = []
    try:
        for name, env in loaded.config.environments.items():
            if env.root is None:
                continue
            try:
                contexts = kept.contexts(name)
                environments.append(
                    environment_overview(contexts, now, window_s, run_checks=run_checks)
                )
            except BaseException:
                kept.drop(name)
                raise
    finally:
        if sessions is None:
            kept.close()
    return {"generated_at": now, "window_days": window_s / DAY, "environments": environments}
