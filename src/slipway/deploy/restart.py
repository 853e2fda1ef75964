"""The restart strategy's way back: stop the new processes, start the previous release.

Used when a restart-strategy deploy fails at or after the swap, and when a run of it
is recovered from its journal. The previous release starts from its own run spec and
must pass the same health gate as any deploy before it counts as rolled back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slipway.deploy.database import restore_database, schema_changed
from slipway.health.gate import GateReport
from slipway.state.host import call

if TYPE_CHECKING:
    from slipway.deploy.engine import Deployer
    from slipway.deploy.run import RunState


def start_release(d: Deployer, release: str) -> GateReport:
    """Stop this environment's apps, start ``release``'s, and gate on health."""
    d.pm.stop(d.app_names)
    meta = d.release_meta(release)
    specs = d.app_specs(release, str(meta.get("commit", "unknown")))
    d.pm.start(specs, f"{d.layout.release(release)}/.slipway-ecosystem.json")
    return d.gate_report()


def roll_back_after_failure(
    d: Deployer, previous: str | None, state: RunState, deployment_id: str
) -> tuple[bool, str]:
    """Undo a deploy that failed at or after the process swap. Returns (ok, note)."""
    with d.step("rollback"):
        d.pm.stop(d.app_names)
        notes = []
        if state.backup_path:
            after = call(d.transport, "describe", db=d.layout.database(d.env.database))
            if schema_changed(state.db_before or {}, after):
                notes.append(restore_database(d, state.backup_path, deployment_id))
        if previous is None:
            return False, "; ".join([*notes, "no previous release to start: the site is down"])
        report = start_release(d, previous)
        if not report.ok:
            return False, f"previous release {previous} unhealthy: {report.summary()}"
        d.pm.save()
        notes.append(f"previous release {previous} serving and healthy")
        return True, "; ".join(notes)
