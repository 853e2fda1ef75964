"""``slipway backup ENV restore ID``: put a backup back, losing nothing.

Order (docs/architecture.md, "SQLite facts"): the backup is verified first (a corrupt
or truncated file is refused before anything stops); every writer stops; the live database is itself
backed up (reason ``pre-restore``: a restore sets data aside, never destroys it); the
backup is restored to a temporary file, checked, stale ``-wal``/``-shm`` files are
removed and it is renamed into place (the host helper's ``restore``); the live release
starts again and must pass the health gate. The site is down while this runs: a
restore is maintenance, announced as such.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from slipway.deploy import bluegreen, recovery
from slipway.deploy.database import restore_database
from slipway.deploy.restart import start_release
from slipway.errors import BackupError, HealthCheckFailed
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
    d.deployment_id = f"restore-{uuid.uuid4().hex[:8]}"
    try:
        manifest = d.backups.get(backup_id)
        with d.backups.plaintext(manifest, d.identity) as path:
            with d.step("verify"):
                scratch = f"{d.backups.directory}/.verify-{uuid.uuid4().hex[:8]}.db"
                check = call(d.transport, "verify", path=path, manifest=manifest, scratch=scratch)
                if not check["ok"]:
                    raise BackupError(
                        f"backup {backup_id} failed verification: {'; '.join(check['problems'])}",
                        hint="nothing was stopped or changed",
                    )
            with d.step("restore"):
                stop_writers(d)
                note = restore_database(d, path, backup_id)
        with d.step("start"):
            gate = _start_live(d)
        if not gate:
            raise HealthCheckFailed(
                "the release did not come back healthy after the restore",
                hint=f"{note}; check the app's logs",
            )
        d.audit("backup.restored", backup=backup_id, note=note)
        return note
    finally:
        lock.release()


def _start_live(d: HostContext) -> bool:
    live = d.read_colors()["live"] if d.blue_green else None
    if live:
        report = bluegreen.start_on(d, live["release"], live["color"])
        if report.ok:
            d.router().switch(d.target(live["color"]))
        return report.ok
    current = d.current_release()
    return current is None or start_release(d, current).ok
