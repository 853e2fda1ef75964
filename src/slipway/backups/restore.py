"""``slipway backup ENV restore ID``: put a backup back, losing nothing.

Order (docs/architecture.md, "SQLite facts"): the backup is verified first (a corrupt
or truncated file is refused before anything stops); every writer stops; the live
database is itself backed up (reason ``pre-restore``: a restore sets data aside, never
destroys it); the backup is restored to a temporary file, checked, stale
``-wal``/``-shm`` files are removed and it is renamed into place (the host helper's
``restore``); the live release starts again and must pass the health gate. With
blue-green, requests are held at the holding proxy from before the writers stop until
the live release serves again (none fails; the longest wait is reported); with the
restart strategy the site is down while this runs (its gap). It is journaled (kind
``restore``): killed half way, the next command starts the live release again and
releases any held requests.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from slipway.deploy import hold, recovery, split, strategies
from slipway.deploy.database import restore_database
from slipway.deploy.run import RunState
from slipway.errors import BackupError, HealthCheckFailed, LockLost
from slipway.state.host import call

if TYPE_CHECKING:
    from slipway.deploy.context import HostContext


def stop_writers(d: HostContext) -> None:
    """Every process of the environment that may hold the database."""
    names = list(d.app_names)
    if d.blue_green:
        names += [n for color in ("blue", "green") for n in d.app_names_of(color)]
    d.pm.stop(names)


def restore_backup(d: HostContext, backup_id: str, *, lock_wait: float = 0) -> str:
    lock = recovery.take_lock(d, ref=backup_id, reason="restore", wait=lock_wait)
    try:
        split.refuse_while_active(d, "backup restore")
        manifest = d.backups.get(backup_id)
        with d.backups.plaintext(manifest, d.identity) as path:
            with d.step("verify"), d.backups.scratch() as scratch:
                copy = f"{scratch}/verify.db"
                check = call(d.transport, "verify", path=path, manifest=manifest, scratch=copy)
                if not check["ok"]:
                    raise BackupError(
                        f"backup {backup_id} failed verification: {'; '.join(check['problems'])}",
                        hint="nothing was stopped or changed",
                    )
            row = _begin(d, backup_id)
            try:
                note = _restore_and_start(d, path, backup_id)
            except LockLost:
                raise
            except (Exception, KeyboardInterrupt) as exc:
                raise recovery.undo_failed(d, exc, "restore", notify=True) from exc
        row.update(status="succeeded", finished_at=time.time(), steps=json.dumps(d.steps))
        d.record_event(row, "backup.restored", backup=backup_id, note=note)
        d.end_journal()
        return note
    finally:
        lock.release()


def _begin(d: HostContext, backup_id: str) -> dict[str, Any]:
    """The restore's record and journal: killed half way, the next command starts the
    live release again (the restore is maintenance: every writer stops)."""
    current = d.current_release()
    d.deployment_id = f"restore-{uuid.uuid4().hex[:8]}"
    commit = str(d.release_meta(current).get("commit", "unknown")) if current else "unknown"
    row = d.new_record(
        "restore",
        ref=f"restore:{backup_id}",
        release=current or "-",
        previous=current,
        commit=commit,
    )
    d.begin_journal("restore", row)  # first: a kill before the record is still ended
    d.record_event(row, "backup.restore_started", backup=backup_id)
    return row


def _restore_and_start(d: HostContext, path: str, backup_id: str) -> str:
    """Hold, stop every writer, restore, start the live release, release the held
    requests: with blue-green requests wait at the holding proxy meanwhile (none fails);
    with the restart strategy the site is down for the restore (its gap)."""
    state = RunState(swapped=True)
    strategy = strategies.for_env(d.env)
    with d.step("hold"):
        d.checkpoint("hold", state)
        strategy.hold(d, state)
    with d.step("restore"):
        d.checkpoint("restore", state)
        stop_writers(d)
        note = restore_database(d, path, backup_id)
    with d.step("start"):
        ok = strategy.start_live(d)
    # To the live colour once it serves, else 503. (On a failure the recovery does it,
    # after it started the live release again.)
    held = hold.settle(d, state)
    if held:
        note += f"; {held}"
    if not ok:
        raise HealthCheckFailed(
            "the release did not come back healthy after the restore",
            hint=f"{note}; check the app's logs",
        )
    return note
