"""The SQLite state database: WAL mode, a busy timeout, migrations applied at startup.

Like CodeFRAME, migrations run inside the server when it starts and are tracked in a
``schema_migrations`` table; there is no separate migrate command.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

BUSY_TIMEOUT_MS = 5000


def connect(path: str | Path) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _m1_projects(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
        " created_at TEXT NOT NULL DEFAULT (datetime('now')))"
    )


def _m2_description(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE projects ADD COLUMN description TEXT NOT NULL DEFAULT ''")


def _m99_broken(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE projects ADD COLUMN half_done TEXT")
    raise RuntimeError("migration 99 failed half way (variant migration-error)")


def _m3_recreate(conn: sqlite3.Connection) -> None:
    # The destructive pattern CodeFRAME once shipped: drop and recreate, data gone.
    conn.execute("DROP TABLE projects")
    conn.execute(
        "CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
        " description TEXT NOT NULL DEFAULT '', status TEXT NOT NULL DEFAULT 'active',"
        " created_at TEXT NOT NULL DEFAULT (datetime('now')))"
    )


def _m4_rebuild(conn: sqlite3.Connection) -> None:
    # The careful way to change a table SQLite cannot ALTER: build a new one, copy every
    # row, swap. No row is lost, but the new NOT NULL column (no default) breaks the
    # inserts of any older release still running: a breaking change.
    conn.execute(
        "CREATE TABLE projects_new (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
        " description TEXT NOT NULL DEFAULT '', status TEXT NOT NULL,"
        " created_at TEXT NOT NULL DEFAULT (datetime('now')))"
    )
    conn.execute(
        "INSERT INTO projects_new (id, name, description, status, created_at)"
        " SELECT id, name, description, 'active', created_at FROM projects"
    )
    conn.execute("DROP TABLE projects")
    conn.execute("ALTER TABLE projects_new RENAME TO projects")


Migration = Callable[[sqlite3.Connection], None]


def migrations_for(variant: str, level: int) -> list[tuple[int, str, Migration]]:
    steps: list[tuple[int, str, Migration]] = [(1, "create projects", _m1_projects)]
    if level >= 2:
        steps.append((2, "add projects.description", _m2_description))
    if variant == "v2-rebuild":
        steps.append((4, "rebuild projects with a NOT NULL status", _m4_rebuild))
    elif level >= 3:
        steps.append((3, "recreate projects with status", _m3_recreate))
    if variant == "migration-error":  # fails whatever release came before it
        steps.append((99, "broken migration", _m99_broken))
    return steps


def migrate(conn: sqlite3.Connection, variant: str, level: int) -> int:
    """Apply pending migrations, each in its own transaction; return the schema version."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT (datetime('now')))"
    )
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    for version, name, step in migrations_for(variant, level):
        if version in applied:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            step(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, name)
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return schema_version(conn)


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(row[0])
