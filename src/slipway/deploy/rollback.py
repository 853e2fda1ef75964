"""``slipway rollback``: make an earlier release live again, by hand.

The target is resolved and validated before anything changes (:mod:`.targets`). The
rollback is journaled like a deploy of that release: if it fails or is killed part way,
the release that was live before it is brought back (:mod:`.recovery`), with a record,
an audit entry, an incident report and a notification.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from slipway.deploy import incident, recovery, split, strategies, targets
from slipway.deploy.run import Outcome, RunState
from slipway.errors import LockLost, SlipwayError, UsageError
from slipway.notify import message
from slipway.state import records
from slipway.state.colors import warm_standby

if TYPE_CHECKING:
    from slipway.deploy.context import HostContext


def pick_target(d: HostContext, current: str | None) -> str:
    """The newest kept release older than ``current`` that once deployed successfully."""
    releases = d.list_releases()
    good = {
        row["release"]
        for row in records.deployments(d.transport, d.layout, 200)
        if row["status"] == "succeeded"
    }
    older = [r for r in releases if r in good and (current is None or r < current)]
    if not older:
        raise UsageError(f"no earlier good release of {d.env_name} to roll back to")
    return older[-1]


def rolled_back_from(d: HostContext) -> str | None:
    """When the live release got there by an instant blue-green rollback that left the
    database as it was (the newest successful record): the release that rollback
    replaced. ``rollback --restore-db`` then restores the backup taken before that
    release was deployed, keeping the live release, instead of going back further."""
    if not d.blue_green:
        return None
    current = d.current_release()
    for row in records.deployments(d.transport, d.layout, 20):
        if row["status"] != "succeeded":
            continue
        if row["kind"] != "rollback" or row["release"] != current:
            return None
        restored = any(
            e["event"] == "database.restored" and e.get("deployment_id") == row["id"]
            for e in records.audit_log(d.transport, d.layout, 50)
        )
        previous = row.get("previous_release")
        return str(previous) if previous and not restored else None
    return None


def kept_releases(d: HostContext) -> list[targets.KeptRelease]:
    found = []
    for release in d.list_releases():
        meta = d.release_meta(release)
        ref, commit = meta.get("ref"), meta.get("commit")
        found.append(
            targets.KeptRelease(
                release,
                ref if isinstance(ref, str) else "",
                commit if isinstance(commit, str) else "",
            )
        )
    return found


def choose_target(d: HostContext, to: str | None, current: str | None) -> str:
    """The release a rollback makes live, validated before anything changes: ``to``
    resolved against the host's kept releases, or by default the warm standby's release
    (blue-green) or the previous good release."""
    if to is None:
        standby = warm_standby(d.read_colors()) if d.blue_green else None
        release = str(standby["release"]) if standby else pick_target(d, current)
    else:
        resolved = targets.resolve(to, kept_releases(d), d.env_name)
        if resolved.how != "release id":
            d.emit("rollback", "info", detail=resolved.describe(to))
        release = resolved.release
    if release == current:
        raise UsageError(f"{release} is already live in {d.env_name}")
    return release


def manual_rollback(
    d: HostContext, to: str | None = None, *, restore_db: bool = False, lock_wait: float = 0
) -> Outcome:
    """``slipway rollback``: make an earlier release live again, under the lock."""
    started = time.monotonic()
    lock = recovery.take_lock(d, ref=to or "previous", reason="rollback", wait=lock_wait)
    try:
        split.refuse_while_active(d, "rollback")
        current = d.current_release()
        target = choose_target(d, to, current)
        row = _begin(d, target, current)
        state = RunState()
        try:
            strategy = strategies.for_env(d.env)
            notes, summary = strategy.rollback_to(d, target, current, restore_db, state)
        except LockLost:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            # The rollback_failed notification below says it all: no second message.
            raise recovery.undo_failed(d, exc, "rollback", notify=False) from exc
        return _succeeded(d, row, current, notes, summary, started, state)
    except SlipwayError as exc:
        if not isinstance(exc, UsageError | LockLost):  # bad input touched nothing
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


def _begin(d: HostContext, target: str, current: str | None) -> dict[str, Any]:
    """The rollback's record (``running``) and journal: from here on, an interruption
    is recovered by bringing ``current`` back."""
    d.deployment_id = uuid.uuid4().hex[:12]
    commit = str(d.release_meta(target).get("commit", "unknown"))
    row = d.new_record(
        "rollback", ref=f"rollback:{target}", release=target, previous=current, commit=commit
    )
    d.begin_journal("rollback", row)  # first: a kill before the record is still ended
    d.record_event(row, "rollback.started", release=target, previous=current)
    return row


def _succeeded(
    d: HostContext,
    row: dict[str, Any],
    current: str | None,
    notes: list[str],
    summary: str,
    started: float,
    state: RunState,
) -> Outcome:
    target = str(row["release"])
    seconds = time.monotonic() - started
    row.update(
        status="succeeded",
        finished_at=time.time(),
        duration_s=round(seconds, 3),
        rolled_back_to=target,
        steps=json.dumps(d.steps),
    )
    d.record_event(row, "rollback.succeeded", release=target, previous=current, notes=notes)
    d.end_journal()
    housekeeping = d.finish_backup(state, keep=True)  # seals the set-aside database
    if housekeeping:
        notes.append(housekeeping)
    report = incident.Incident(
        env=d.env_name,
        kind="rollback",
        deployment_id=str(row["id"]),
        actor=d.actor,
        release=current or "-",
        previous=target,
        commit=str(d.release_meta(current).get("commit", "unknown")) if current else "-",
        previous_commit=str(row["commit_sha"]),
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
            seconds=seconds,
            notes="; ".join(notes or [summary]),
            url=d.public_url(),
        )
    )
    return Outcome(
        str(row["id"]), target, str(row["commit_sha"]), "succeeded", seconds, d.steps, summary
    )
