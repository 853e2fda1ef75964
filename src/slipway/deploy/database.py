"""The database side of a deploy: did a release change the schema, and putting a backup back.

Order matters: every writer is stopped before the database is touched (the caller's
job); the live database is itself backed up before a restore overwrites it (a restore
sets data aside, never destroys it). The database is restored only when a failed
release changed its schema: otherwise the writes made in between are kept.

SQLite facts this relies on: a file copy of a live database is not a backup (the host
helper copies with ``Connection.backup`` in one step); restoring next to a stale
``-wal`` file replays it (the helper deletes ``-wal``/``-shm`` and renames a checked
temporary file into place).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slipway.state.host import call

# Told the set-aside copy's manifest and the live database's description, before a
# restore replaces the live file.
OnAside = Callable[[dict[str, Any], dict[str, Any]], None]

if TYPE_CHECKING:
    from slipway.deploy.context import HostContext
    from slipway.deploy.run import RunState


def schema_changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return bool(
        after.get("migrations") != before.get("migrations")
        or after.get("schema_version") != before.get("schema_version")
        or after.get("schema_hash") != before.get("schema_hash")
        or set(after.get("tables", {})) != set(before.get("tables", {}))
    )


def restore_database(
    d: HostContext,
    backup: str,
    label: str,
    on_aside: OnAside | None = None,
) -> str:
    """Set the live database aside (a ``pre-restore`` backup), restore ``backup``, and
    say how many rows the replaced database had beyond the backup. The caller has
    stopped every writer. ``on_aside`` learns the set-aside copy's manifest (and the
    live database's description) before the live file is replaced: a journal keeps
    them, so an interrupted rollback can put the database back; the copy then stays
    plaintext until the run ends (``finish_backup`` seals it)."""
    db = d.layout.database(d.env.database)
    before = call(d.transport, "describe", db=db)
    aside = d.backups.create(db, reason="pre-restore", release=d.current_release(), commit=None)
    if aside is not None and on_aside is not None:
        on_aside(aside, before)
    restored = call(d.transport, "describe", db=backup)
    call(d.transport, "restore", db=db, src=backup)
    if aside is None:
        return f"database restored from {backup} (there was no live database to set aside)"
    if on_aside is None:
        d.backups.seal(aside)
    newer = sum(aside["tables"].values()) - sum(restored.get("tables", {}).values())
    return (
        f"database restored from {backup}; the replaced database ({newer:+d} rows against"
        f" the backup) is kept as backup {aside['id']}"
    )


def restore_from_latest(
    d: HostContext,
    release: str,
    on_aside: OnAside | None = None,
) -> str:
    """Restore the pre-deploy backup taken when ``release`` was deployed (writers
    stopped by the caller; an encrypted backup needs ``d.identity``)."""
    manifest = d.backups.latest(release=release, reason="pre-deploy")
    with d.backups.plaintext(manifest, d.identity) as path:
        return restore_database(d, path, manifest["id"], on_aside)


def journal_aside(d: HostContext, state: RunState) -> OnAside:
    """Journal the live database's set-aside copy before a restore replaces it: an
    interrupted rollback then always puts that copy back on its way back."""

    def note(aside: dict[str, Any], before: dict[str, Any]) -> None:
        state.backup, state.backup_path = aside, d.backups.path_of(aside)
        state.db_before = before
        d.checkpoint("restore", state, restored=True)

    return note
