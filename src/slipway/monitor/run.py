"""The monitor loop for one environment on one host: sample, judge, alert, expose.

Where each figure comes from:

- **API error rate and p95**: the router's JSON access log (real traffic through the
  public API port), read incrementally on the host from the offset the previous sample
  stopped at (a rotated log is read from its start). Environments without a router (the
  restart strategy) fall back to the synthetic HTTP probes, which are few: below
  ``min_requests`` the error rate and p95 are not judged.
- **WebSocket drops**: synthetic probe connections held open across samples.
- **Database failures**: a direct read-only query of the SQLite file on the host, plus
  the health checks named in ``monitor.database_checks`` (the app's DB endpoint).
- **Disk**: free space of the environment's directory and backup directory.

Alert state (and the log offset) is kept on the host in ``.slipway/monitor.json`` so
``--once`` from cron fires and resolves each alert exactly once across runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slipway.config.model import HealthLevel, RouterKind
from slipway.errors import SlipwayError
from slipway.health.checks import CheckResult
from slipway.health.gate import run_round
from slipway.health.host import disk_problem
from slipway.monitor.alerts import Reading, Transition, evaluate, transitions
from slipway.monitor.probes import WebSocketProbes
from slipway.monitor.prometheus import Totals, render
from slipway.monitor.sample import Sample
from slipway.notify import message
from slipway.state.host import call, read_text
from slipway.state.hostscript import percentile

if TYPE_CHECKING:
    from slipway.deploy.context import HostContext

DB_PROBE_QUERY = "SELECT count(*) FROM sqlite_master"


@dataclass
class Report:
    sample: Sample
    readings: list[Reading]
    changes: list[Transition] = field(default_factory=list)

    active: list[str] = field(default_factory=list)  # alerts firing after this sample

    @property
    def firing(self) -> list[str]:
        return self.active

    def as_dict(self) -> dict[str, Any]:
        return {
            "sample": self.sample.as_dict(),
            "alerts": [r.__dict__ for r in self.readings],
            "firing": self.active,
            "changes": [
                {"alert": t.name, "state": "fired" if t.firing else "resolved", "since": t.since}
                for t in self.changes
            ],
        }


class Monitor:
    def __init__(self, d: HostContext, *, notify: bool = True) -> None:
        self.d = d
        self.cfg = d.env.monitor
        self.notify_enabled = notify
        self.totals = Totals()
        self.last: Report | None = None
        self.state = self._load_state()
        ws = d.config.health.websocket
        self.ws: WebSocketProbes | None = None
        if ws is not None and self.cfg.websocket_probes and d.holds_database:
            self.ws = WebSocketProbes(
                lambda: f"ws://127.0.0.1:{d.local_port('backend')}{ws.path}",
                self.cfg.websocket_probes,
                ws.send,
                ws.expect_text,
                d.config.health.timeout_seconds,
            )

    # --- state on the host --------------------------------------------------------

    @property
    def state_path(self) -> str:
        return f"{self.d.layout.state_dir}/monitor.json"

    def _load_state(self) -> dict[str, Any]:
        text = read_text(self.d.transport, self.state_path)
        try:
            data = json.loads(text) if text is not None else {}
        except json.JSONDecodeError:
            data = {}
        return {
            "alerts": data.get("alerts", {}),
            "offset": data.get("offset"),
            "at": data.get("at"),
        }

    def _save_state(self) -> None:
        self.d.transport.run(["mkdir", "-p", "--", self.d.layout.state_dir])
        self.d.transport.put_text(json.dumps(self.state), self.state_path, mode=0o600)

    # --- one sample ---------------------------------------------------------------

    def sample(self) -> Sample:
        now = time.time()
        level = HealthLevel.COMPREHENSIVE if self.d.env.health is not HealthLevel.NONE else None
        # The disk check is judged from the sample's own disk reading (one host call).
        checks = run_round(self.d.checks(level, disk=False)) if level else []
        window = now - float(self.state["at"]) if self.state.get("at") else None
        sample = Sample(at=now, source="probes", window_seconds=window, checks=checks)
        if self.d.holds_database:  # a frontend-only host of a fleet has no database
            self._database(sample, checks)
        self._traffic(sample, checks)
        self._disks(sample, as_check=level is not None and self.d.config.health.disk)
        if self.ws is not None:
            sample.ws_probes, sample.ws_drops = self.ws.sample()
        return sample

    def _disks(self, sample: Sample, *, as_check: bool) -> None:
        started = time.perf_counter()
        try:
            sample.disks = self.d.disk_free()
            problem = disk_problem(sample.disks, self.cfg.disk_free_percent)
        except SlipwayError as exc:
            sample.disks, problem = {}, str(exc)
        if as_check:
            latency = round((time.perf_counter() - started) * 1000, 1)
            sample.checks.append(CheckResult("disk", problem is None, latency, problem))

    def _database(self, sample: Sample, checks: list[CheckResult]) -> None:
        db_checks = [c for c in checks if c.name in self.cfg.database_checks]
        sample.db_probes = 1 + len(db_checks)
        try:
            self.d.probe_db(DB_PROBE_QUERY)
        except SlipwayError as exc:
            sample.db_failures += 1
            sample.db_errors.append(f"direct read-only query: {exc}")
        for check in db_checks:
            if not check.ok:
                sample.db_failures += 1
                sample.db_errors.append(f"{check.name}: {check.error}")

    def _traffic(self, sample: Sample, checks: list[CheckResult]) -> None:
        if self.d.blue_green:
            bg = self.d.env.blue_green
            entry = "backend" if bg.router is RouterKind.TRAEFIK else str(self.d.port("backend"))
            answer = call(
                self.d.transport,
                "traffic",
                log=f"{self.d.layout.base}/router/logs/access.log",
                offset=self.state.get("offset"),
                entries=[entry],
            )
            self.state["offset"] = answer["offset"]
            sample.source = f"{bg.router.value} access log"
            sample.requests = int(answer["requests"])
            sample.errors = int(answer["errors"])
            sample.p95_seconds = answer.get("p95")
            sample.ws_sessions = int(answer.get("ws_sessions", 0))
            return
        http = [c for c in checks if c.name not in {"processes", "disk", "websocket"}]
        sample.requests = len(http)
        sample.errors = sum(not c.ok for c in http)
        latencies = sorted(c.latency_ms / 1000 for c in http)
        sample.p95_seconds = percentile(latencies, 0.95)

    # --- judging, alerting ----------------------------------------------------------

    def step(self) -> Report:
        sample = self.sample()
        readings = evaluate(sample, self.cfg)
        self.state["alerts"], changes = transitions(self.state["alerts"], readings, sample.at)
        self.state["at"] = sample.at
        self._save_state()
        for change in changes:
            self._announce(change)
        self.totals.add(sample)
        active = sorted(name for name, st in self.state["alerts"].items() if st.get("firing"))
        self.last = Report(sample, readings, changes, active)
        return self.last

    def _announce(self, change: Transition) -> None:
        event = "alert.fired" if change.firing else "alert.resolved"
        r = change.reading
        self.d.audit(event, alert=change.name, value=r.shown, threshold=r.limit)
        self.d.emit("monitor", "warning" if change.firing else "info", 0.0, f"{event}: {r.shown}")
        if self.notify_enabled:
            self.d.notify(
                message.alert(
                    project=self.d.config.project.name,
                    env=self.d.env_name,
                    name=change.name,
                    firing=change.firing,
                    value=r.shown,
                    threshold=r.limit,
                    since=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(change.since)),
                    url=self.d.public_url(),
                )
            )

    def metrics_text(self) -> str:
        if self.last is None:
            return "# no sample yet\n"
        return render(self.d.env_name, self.last.sample, set(self.last.active), self.totals)

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
