"""The restart strategy: stop the live processes, start the new release, gate, promote.

Simple and cheap (one set of ports, no router), with a gap while the processes restart.
Undoing it (a failed deploy, a recovered journal, ``slipway rollback``) stops the new
processes, restores the database only if the old code cannot live with it, and starts the previous
release from its own run spec; it must pass the same health gate as any deploy before
it counts as rolled back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slipway.deploy import hold
from slipway.deploy.database import (
    journal_aside,
    needs_restore,
    restore_database,
    restore_from_latest,
    schema_fits,
)
from slipway.deploy.strategy import Step
from slipway.errors import HealthCheckFailed
from slipway.health.gate import GateReport
from slipway.state.host import call

if TYPE_CHECKING:
    from slipway.config.model import EnvironmentConfig
    from slipway.deploy.context import HostContext
    from slipway.deploy.run import RunState


def start_release(d: HostContext, release: str) -> GateReport:
    """Stop this environment's apps, start ``release``'s, and gate on health."""
    d.start_processes(release)
    return d.gate_report()


def roll_back_after_failure(
    d: HostContext, previous: str | None, state: RunState, deployment_id: str
) -> tuple[bool, str]:
    """Undo a deploy that failed at or after the process swap. Returns (ok, note)."""
    with d.step("rollback"):
        d.pm.stop(d.app_names)
        notes = []
        if state.backup_path:
            after = call(d.transport, "describe", db=d.layout.database(d.env.database))
            if state.restored or needs_restore(state.db_before or {}, after):
                notes.append(restore_database(d, state.backup_path, deployment_id))
        if previous is None:
            return False, "; ".join([*notes, "no previous release to start: the site is down"])
        report = start_release(d, previous)
        if not report.ok:
            return False, f"previous release {previous} unhealthy: {report.summary()}"
        d.pm.save()
        notes.append(f"previous release {previous} serving and healthy")
        return True, "; ".join(notes)


def swap(d: HostContext, release: str, commit: str, state: RunState) -> None:
    """The ``start`` step: stop the live processes, check the ports are free, start."""
    d.app_specs(release, commit)  # a broken env file fails here, before anything stops
    state.swapped = True
    d.checkpoint("start", state)
    d.start_processes(release, commit=commit)


def gate(d: HostContext, state: RunState) -> None:
    state.gate = d.gate_report()
    if not state.gate.ok:
        raise d.failure_with_logs(f"health gate failed: {state.gate.summary()}")
    d.emit("health", "info", detail=state.gate.summary())


def rollback_to(
    d: HostContext, release: str, current: str | None, restore_db: bool, state: RunState
) -> tuple[list[str], str]:
    """``slipway rollback``: stop, (restore the database,) start ``release``, gate,
    promote. A failure is undone by the caller through :func:`roll_back_after_failure`."""
    notes: list[str] = []
    if not restore_db:
        fits, why = schema_fits(d, current, release)
        restore_db = not fits
        notes += [why] if why else []
    if restore_db and current:
        d.backups.before_deploy_of(current)  # a missing backup is refused before any stop
    with d.step("start"):
        state.swapped = True
        d.checkpoint("start", state)
        d.pm.stop(d.app_names)
        if restore_db and current:
            notes.append(restore_from_latest(d, current, on_aside=journal_aside(d, state)))
        report = start_release(d, release)
    if not report.ok:
        raise HealthCheckFailed(f"release {release} is not healthy: {report.summary()}")
    d.checkpoint("promote", state)
    with d.step("promote"):
        d.promote(release)
    return notes, report.summary()


class Restart:
    """The :class:`~slipway.deploy.strategy.Strategy` of ``strategy = "restart"``."""

    name = "restart"

    def plan(self, env: EnvironmentConfig) -> list[tuple[str, str]]:
        return [
            ("start", "PM2: stop {apps}; check ports free; start the new release"),
            ("health", "{passes} passes in a row within {deadline}s: {checks}"),
            ("promote", "point {root}/{env}/current at the release; pm2 save; prune to {keep}"),
        ]

    def plan_values(self, env: EnvironmentConfig) -> dict[str, str]:
        return {}

    def hold_text(self) -> str:
        return "breaking migrations: stop {apps} before the backup (nothing writes after it)"

    def on_failure(self) -> str:
        return (
            "on failure: stop the new processes, restore the database if its schema"
            " changed, start the previous release, gate it on health"
        )

    def build_color(self, ctx: HostContext) -> str | None:
        return None

    def refuse_up_front(self, ctx: HostContext, breaking: bool, rehearse: bool) -> None:
        return None  # runs any release

    def hold(self, ctx: HostContext, state: RunState) -> None:
        hold.stop_before_backup(ctx, state)

    def activate(
        self, ctx: HostContext, release: str, previous: str | None, commit: str, state: RunState
    ) -> list[Step]:
        return [
            ("start", lambda: swap(ctx, release, commit, state)),
            ("health", lambda: gate(ctx, state)),
            ("promote", lambda: ctx.promote(release)),
        ]

    def recover(
        self, ctx: HostContext, previous: str | None, state: RunState, deployment_id: str
    ) -> tuple[bool, str]:
        return roll_back_after_failure(ctx, previous, state, deployment_id)

    def roll_forward(
        self,
        ctx: HostContext,
        release: str,
        previous: str | None,
        state: RunState,
        color: str | None,
    ) -> GateReport:
        ctx.promote(release)
        return ctx.gate_report()

    def rollback_to(
        self, ctx: HostContext, release: str, current: str | None, restore_db: bool, state: RunState
    ) -> tuple[list[str], str]:
        return rollback_to(ctx, release, current, restore_db, state)

    def start_live(self, ctx: HostContext) -> bool:
        current = ctx.current_release()
        return current is None or start_release(ctx, current).ok

    def protected(self, ctx: HostContext) -> set[str]:
        return set()
