"""Going back: automatically after a failed deploy, or by hand (``slipway rollback``).

Order matters (DESIGN.md section 3): the new processes are stopped before the database
is touched (no writer may hold it), the live database is itself backed up before a
restore overwrites it (a restore sets data aside, never destroys it), and the previous
release must pass the same health gate as any deploy before it counts as rolled back.
The database is restored only when the failed release changed its schema: otherwise the
writes made in between are kept.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from slipway.deploy import bluegreen, incident
from slipway.errors import HealthCheckFailed, SlipwayError, UsageError
from slipway.health.gate import GateReport
from slipway.notify import message
from slipway.state import records
from slipway.state.host import call
from slipway.state.lock import DeployLock

if TYPE_CHECKING:
    from slipway.deploy.engine import Deployer, Outcome, RunState


def schema_changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return bool(
        after.get("migrations") != before.get("migrations")
        or after.get("schema_version") != before.get("schema_version")
        or after.get("schema_hash") != before.get("schema_hash")
        or set(after.get("tables", {})) != set(before.get("tables", {}))
    )


def restore_database(d: Deployer, backup: str, label: str) -> str:
    """Set the live database aside (a ``pre-restore`` backup), restore ``backup``, and
    say how many rows the replaced database had beyond the backup. The caller has
    stopped every writer."""
    db = d.layout.database(d.env.database)
    aside = d.backups.create(db, reason="pre-restore", release=d.current_release(), commit=None)
    restored = call(d.transport, "describe", db=backup)
    call(d.transport, "restore", db=db, src=backup)
    if aside is None:
        return f"database restored from {backup} (there was no live database to set aside)"
    d.backups.seal(aside)
    newer = sum(aside["tables"].values()) - sum(restored.get("tables", {}).values())
    return (
        f"database restored from {backup}; the replaced database ({newer:+d} rows against"
        f" the backup) is kept as backup {aside['id']}"
    )


def restore_from_latest(d: Deployer, release: str) -> str:
    """Restore the pre-deploy backup taken when ``release`` was deployed (writers
    stopped by the caller; an encrypted backup needs ``d.identity``)."""
    manifest = d.backups.latest(release=release, reason="pre-deploy")
    with d.backups.plaintext(manifest, d.identity) as path:
        return restore_database(d, path, manifest["id"])


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


def pick_target(d: Deployer, current: str | None, to: str | None) -> str:
    releases = d.list_releases()
    if to is not None:
        if to not in releases:
            raise UsageError(
                f"no release {to!r} in {d.env_name}",
                hint="releases kept: " + (", ".join(releases) or "none"),
            )
        return to
    good = {
        row["release"]
        for row in records.deployments(d.transport, d.layout, 200)
        if row["status"] == "succeeded"
    }
    older = [r for r in releases if r in good and (current is None or r < current)]
    if not older:
        raise UsageError(f"no earlier good release of {d.env_name} to roll back to")
    return older[-1]


def manual_rollback(
    d: Deployer, to: str | None = None, *, restore_db: bool = False, lock_wait: float = 0
) -> Outcome:
    """``slipway rollback``: make an earlier release live again, under the lock."""
    from slipway.deploy.engine import Outcome

    started = time.monotonic()
    lock = DeployLock(d.transport, d.layout)
    with d.step("lock"):
        lock.acquire(actor=d.actor, ref=to or "previous", reason="rollback", wait=lock_wait)
    try:
        current = d.current_release()
        deployment_id = uuid.uuid4().hex[:12]
        d.deployment_id = deployment_id
        if d.blue_green:
            with d.step("switch"):
                target, notes = bluegreen.rollback_locked(d, to, restore_db)
            summary = "; ".join(notes)
        else:
            target, notes, summary = _restart_rollback(d, current, to, restore_db, deployment_id)
        meta = d.release_meta(target)
        commit = str(meta.get("commit", "unknown"))
        row: dict[str, Any] = {
            "id": deployment_id,
            "env": d.env_name,
            "ref": f"rollback:{target}",
            "commit_sha": commit,
            "release": target,
            "actor": d.actor,
            "started_at": time.time() - (time.monotonic() - started),
            "finished_at": time.time(),
            "duration_s": round(time.monotonic() - started, 3),
            "status": "succeeded",
            "previous_release": current,
            "rolled_back_to": target,
            "kind": "rollback",
        }
        d.record_event(row, "rollback.succeeded", release=target, previous=current, notes=notes)
        report = incident.Incident(
            env=d.env_name,
            kind="rollback",
            deployment_id=deployment_id,
            actor=d.actor,
            release=current or "-",
            previous=target,
            commit=commit,
            failed_step=None,
            error="rolled back by hand (slipway rollback)",
            outcome=f"{target} live again: " + "; ".join(notes or [summary]),
            rolled_back=True,
            backup=None,
            steps=list(d.steps),
        )
        incident.write(d, report)
        d.notify(
            message.rolled_back(
                project=d.config.project.name,
                env=d.env_name,
                release=target,
                previous=current,
                actor=d.actor,
                seconds=time.monotonic() - started,
                notes="; ".join(notes or [summary]),
                url=d.public_url(),
            )
        )
        return Outcome(
            deployment_id,
            target,
            commit,
            "succeeded",
            time.monotonic() - started,
            d.steps,
            summary,
        )
    except SlipwayError as exc:
        if not isinstance(exc, UsageError):  # bad input touched nothing: no alarm
            d.notify(
                message.rollback_failed(
                    project=d.config.project.name,
                    env=d.env_name,
                    target=to or "the previous release",
                    actor=d.actor,
                    error=d.masker(str(exc)),
                    url=d.public_url(),
                )
            )
        raise
    finally:
        lock.release()


def _restart_rollback(
    d: Deployer, current: str | None, to: str | None, restore_db: bool, deployment_id: str
) -> tuple[str, list[str], str]:
    target = pick_target(d, current, to)
    notes: list[str] = []
    with d.step("start"):
        d.pm.stop(d.app_names)
        if restore_db and current:
            notes.append(restore_from_latest(d, current))
        report = start_release(d, target)
    if not report.ok:
        if current:
            start_release(d, current)
        raise HealthCheckFailed(
            f"release {target} is not healthy: {report.summary()}",
            hint=f"{current} was started again" if current else None,
        )
    with d.step("promote"):
        d.promote(target)
    return target, notes, report.summary()
