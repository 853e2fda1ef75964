"""The database side of a deploy: what a release's migrations do to the data (its class),
did a release change the schema, and putting a backup back.

A release's class comes from comparing the database before and after its migrations ran
on a copy (:mod:`slipway.deploy.rehearsal`), table by table:

- **unchanged**: same tables, columns and indexes; no table has fewer rows;
- **additive**: only new tables, new columns old code can ignore (nullable, or with a
  default), new indexes; no table has fewer rows: old and new code share the database;
- **breaking**: any other schema change (a column removed, changed, or added NOT NULL
  without a default; an index or an empty table dropped): old code must not write to
  the new schema, so the deploy holds requests from the backup to the switch;
- **destructive**: a table lost rows or disappeared with rows in it: refused unless the
  table is named in ``--allow-data-loss``.

Order matters: every writer is stopped before the database is touched (the caller's
job); the live database is itself backed up before a restore overwrites it (a restore
sets data aside, never destroys it). After a failed release the database is restored
only when the old code cannot live with it (breaking) or rows were lost
(:func:`needs_restore`): otherwise the writes made in between are kept.

SQLite facts this relies on: a file copy of a live database is not a backup (the host
helper copies with ``Connection.backup`` in one step); restoring next to a stale
``-wal`` file replays it (the helper deletes ``-wal``/``-shm`` and renames a checked
temporary file into place).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slipway.errors import SlipwayError, UsageError
from slipway.state.host import call

# Told the set-aside copy's manifest and the live database's description, before a
# restore replaces the live file.
OnAside = Callable[[dict[str, Any], dict[str, Any]], None]

if TYPE_CHECKING:
    from slipway.deploy.context import HostContext
    from slipway.deploy.run import RunState


CLASSES = ("unchanged", "additive", "breaking", "destructive")  # mildest first


@dataclass(frozen=True)
class TableChange:
    """What a release's migrations did to one table."""

    table: str
    kind: str  # one of CLASSES
    rows_before: int | None  # None: the table is new
    rows_after: int | None  # None: the table is gone
    changes: tuple[str, ...]

    def describe(self) -> str:
        rows = f"rows {_count(self.rows_before)} -> {_count(self.rows_after)}"
        return f"{self.table}: {', '.join(self.changes)} ({rows})"

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "class": self.kind,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "changes": list(self.changes),
        }


def _count(rows: int | None) -> str:
    return "-" if rows is None else str(rows)


@dataclass(frozen=True)
class Classification:
    """A release's class and the tables that made it so (unchanged tables left out)."""

    kind: str
    tables: tuple[TableChange, ...]

    @property
    def holds(self) -> bool:
        """Old code must not run against the new schema: the deploy holds requests."""
        return self.kind in ("breaking", "destructive")

    def lost(self) -> list[TableChange]:
        return [t for t in self.tables if t.kind == "destructive"]

    def summary(self) -> str:
        if not self.tables:
            return f"{self.kind}: no table changed"
        return f"{self.kind}: " + "; ".join(t.describe() for t in self.tables)

    def to_json(self) -> dict[str, Any]:
        return {"class": self.kind, "tables": [t.to_json() for t in self.tables]}


def classify(before: dict[str, Any], after: dict[str, Any], *, rows: bool = True) -> Classification:
    """Compare two descriptions of a database (the host helper's ``describe``: row counts
    and per-table shape) and say what kind of change separates them. ``rows=False``
    judges the schema only (a dropped table is then breaking)."""
    rows_before, rows_after = before.get("tables", {}), after.get("tables", {})
    shape_before, shape_after = before.get("schema", {}), after.get("schema", {})
    changed: list[TableChange] = []
    for table in sorted(set(rows_before) | set(rows_after)):
        n_before, n_after = rows_before.get(table), rows_after.get(table)
        if n_before is None:
            change = TableChange(table, "additive", None, n_after, ("new table",))
        elif n_after is None:
            kind = "destructive" if n_before and rows else "breaking"
            change = TableChange(table, kind, n_before, None, ("dropped",))
        else:
            found = _shape_changes(shape_before.get(table, {}), shape_after.get(table, {}))
            kind = _worst(k for k, _ in found)
            notes = [note for _, note in found]
            if rows and n_after < n_before:
                kind = "destructive"
                notes.append(f"{n_before - n_after} rows lost")
            if kind == "unchanged":
                continue
            change = TableChange(table, kind, n_before, n_after, tuple(notes))
        changed.append(change)
    return Classification(_worst(t.kind for t in changed), tuple(changed))


def _worst(kinds: Iterable[str]) -> str:
    return max(kinds, key=CLASSES.index, default="unchanged")


def _shape_changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str]]:
    """(class, note) for each difference in one table's columns and indexes."""
    found: list[tuple[str, str]] = []
    cols_before, cols_after = before.get("columns", {}), after.get("columns", {})
    for name in sorted(set(cols_before) - set(cols_after)):
        found.append(("breaking", f"column {name} removed"))
    for name in sorted(set(cols_before) & set(cols_after)):
        if list(cols_before[name]) != list(cols_after[name]):
            found.append(("breaking", f"column {name} changed"))
    for name in sorted(set(cols_after) - set(cols_before)):
        _type, not_null, default, _pk = cols_after[name]
        if not_null and default is None:
            found.append(("breaking", f"column {name} added NOT NULL without a default"))
        else:
            found.append(("additive", f"column {name} added"))
    idx_before, idx_after = before.get("indexes", {}), after.get("indexes", {})
    for name in sorted(set(idx_before) - set(idx_after)):
        found.append(("breaking", f"index {name} removed"))
    for name in sorted(set(idx_before) & set(idx_after)):
        if list(idx_before[name]) != list(idx_after[name]):
            found.append(("breaking", f"index {name} changed"))
    for name in sorted(set(idx_after) - set(idx_before)):
        found.append(("additive", f"index {name} added"))
    return found


def needs_restore(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """After a failed release: must the pre-deploy backup come back? Only when the old
    code cannot live with what the release did (breaking), or rows were lost
    (destructive). An unchanged or additive database is kept, and with it every write
    made since the backup. (A description from before schemas were recorded falls back
    to "did the schema change at all".)"""
    if "schema" not in before:
        return schema_changed(before, after)
    return classify(before, after).kind in ("breaking", "destructive")


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
    call(d.transport, "restore", db=db, src=backup, group=d.env.database_group)
    if aside is None:
        return f"database restored from {backup} (there was no live database to set aside)"
    only = _compare_set_aside(d, d.backups.path_of(aside), backup)
    if on_aside is None:
        d.backups.seal(aside)
    d.audit("database.restored", backup=label, set_aside=aside["id"], rows_set_aside=only)
    return (
        f"database restored from {backup}; the replaced database is kept as backup"
        f" {aside['id']}; {describe_set_aside(only)}"
    )


def set_aside_rows(d: HostContext, aside: str, restored: str) -> dict[str, int]:
    """Per table, the rows of the set-aside database that the restored one does not
    have (by primary key, else rowid): writes a restore takes off the live site."""
    only: dict[str, int] = call(d.transport, "diff", db=aside, other=restored)["only"]
    return only


def _compare_set_aside(d: HostContext, aside: str, restored: str) -> dict[str, int] | str:
    """:func:`set_aside_rows`, or why the copies could not be compared: the restore has
    happened, and a report that fails must not undo it."""
    try:
        return set_aside_rows(d, aside, restored)
    except SlipwayError as exc:
        return f"the set-aside copy could not be compared with the restored database: {exc}"


def describe_set_aside(only: dict[str, int] | str) -> str:
    if isinstance(only, str):
        return only
    if not only:
        return "no row of the replaced database is missing from the restored one"
    tables = ", ".join(f"{table} {count}" for table, count in sorted(only.items()))
    return f"rows only in the set-aside copy (not in the restored database): {tables}"


def live_schema(d: HostContext) -> dict[str, Any]:
    """The live database's tables, columns and indexes (cheap: no row counts)."""
    db = d.layout.database(d.env.database)
    schema: dict[str, Any] = call(d.transport, "schema", db=db)["schema"]
    return schema


def schema_fits(d: HostContext, current: str | None, target: str) -> tuple[bool, str]:
    """Can ``target``'s code run on the live database as it is now? Its schema when it
    was last live (kept in its release metadata; for releases older than that, the
    backup taken before ``current`` was deployed, when ``target`` was live then) against
    the live one: unchanged or additive fits. (True, "") when there is nothing to
    compare with."""
    ran_on = d.release_meta(target).get("schema")
    label = f"{target}'s last live schema"
    if not isinstance(ran_on, dict):
        manifest = _backup_of(d, current, target)
        if manifest is None:
            return True, ""
        ran_on, label = manifest["schema"], f"backup {manifest['id']}"
    now = live_schema(d)
    found = classify(_shape_only(ran_on), _shape_only(now), rows=False)
    if found.kind in ("unchanged", "additive"):
        return True, ""
    return False, (
        f"the schema changed since {target} ran ({found.summary()}, against {label}):"
        " the database is restored from the backup taken before the live release"
    )


def _shape_only(schema: dict[str, Any]) -> dict[str, Any]:
    return {"tables": dict.fromkeys(schema, 0), "schema": schema}


def _backup_of(d: HostContext, current: str | None, target: str) -> dict[str, Any] | None:
    """The backup taken before ``current`` was deployed, if it holds ``target``'s data."""
    if current is None:
        return None
    try:
        manifest = d.backups.before_deploy_of(current)
    except UsageError:
        return None
    if manifest.get("release") != target or "schema" not in manifest:
        return None
    return manifest


def restore_from_latest(
    d: HostContext,
    release: str,
    on_aside: OnAside | None = None,
) -> str:
    """Restore the pre-deploy backup taken when ``release`` was deployed (writers
    stopped by the caller; an encrypted backup needs ``d.identity``)."""
    manifest = d.backups.before_deploy_of(release)
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
