"""Release classes from real SQLite files: the example app's own migrations applied to a
copy, described by the host helper, compared by :func:`classify`; and the helper's row
diff that reports what a restore sets aside."""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from support import EXAMPLE_APP

from slipway.deploy.database import Classification, classify, needs_restore
from slipway.state import hostscript as hs

sys.path.insert(0, str(EXAMPLE_APP))
from codeframe_mini import db as app_db


def app_database(path: Path, variant: str, level: int, rows: int = 5) -> Path:
    conn = app_db.connect(path)
    app_db.migrate(conn, variant, level)
    for n in range(rows):
        conn.execute("INSERT INTO projects (name) VALUES (?)", (f"p{n}",))
    conn.close()
    return path


def describe(path: Path) -> dict[str, Any]:
    return hs.op_describe({"db": str(path)})


def migrated(tmp_path: Path, before: Path, variant: str, level: int) -> Classification:
    after = tmp_path / f"after-{variant}.db"
    shutil.copy(before, after)
    conn = app_db.connect(after)
    app_db.migrate(conn, variant, level)
    conn.close()
    return classify(describe(before), describe(after))


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    return app_database(tmp_path / "v1.db", "v1", 1)


def test_the_same_release_is_unchanged(tmp_path: Path, v1: Path) -> None:
    found = migrated(tmp_path, v1, "v1", 1)
    assert found.kind == "unchanged" and found.tables == ()
    assert not found.holds
    assert found.summary() == "unchanged: no table changed"


def test_a_column_with_a_default_is_additive(tmp_path: Path, v1: Path) -> None:
    found = migrated(tmp_path, v1, "v2", 2)
    assert found.kind == "additive", found.summary()
    (projects,) = [t for t in found.tables if t.table == "projects"]
    assert projects.changes == ("column description added",)
    assert (projects.rows_before, projects.rows_after) == (5, 5)
    assert not found.holds


def test_drop_and_recreate_is_destructive_and_names_the_rows(tmp_path: Path, v1: Path) -> None:
    found = migrated(tmp_path, v1, "v3", 3)
    assert found.kind == "destructive"
    (lost,) = found.lost()
    assert (lost.table, lost.rows_before, lost.rows_after) == ("projects", 5, 0)
    assert "5 rows lost" in lost.describe()
    assert found.holds
    assert found.to_json()["tables"][0] == {
        "table": "projects",
        "class": "destructive",
        "rows_before": 5,
        "rows_after": 0,
        "changes": ["column description added", "column status added", "5 rows lost"],
    }


def test_a_rebuild_that_copies_rows_is_breaking_not_destructive(tmp_path: Path) -> None:
    v2 = app_database(tmp_path / "v2.db", "v2", 2)
    found = migrated(tmp_path, v2, "v2-rebuild", 2)
    assert found.kind == "breaking", found.summary()
    assert not found.lost()
    (projects,) = [t for t in found.tables if t.table == "projects"]
    assert "column status added NOT NULL without a default" in projects.changes
    assert found.holds


def test_dropping_an_empty_table_is_breaking(tmp_path: Path) -> None:
    before = {"tables": {"a": 0, "b": 3}, "schema": {}}
    after = {"tables": {"b": 3}, "schema": {}}
    assert classify(before, after).kind == "breaking"
    assert classify(before, {"tables": {}, "schema": {}}).kind == "destructive"


def test_shape_changes_each_have_their_class() -> None:
    col = ["TEXT", False, None, 0]
    before = {
        "tables": {"t": 1},
        "schema": {"t": {"columns": {"a": col, "b": col}, "indexes": {"i": [False, ["a"]]}}},
    }

    def after(columns: dict[str, Any], indexes: dict[str, Any]) -> str:
        shape = {"t": {"columns": columns, "indexes": indexes}}
        return classify(before, {"tables": {"t": 1}, "schema": shape}).kind

    same_index = {"i": [False, ["a"]]}
    assert after({"a": col, "b": col}, same_index) == "unchanged"
    assert after({"a": col}, same_index) == "breaking"  # column removed
    assert after({"a": col, "b": ["INTEGER", False, None, 0]}, same_index) == "breaking"
    assert after({"a": col, "b": col, "c": ["TEXT", True, "''", 0]}, same_index) == "additive"
    assert after({"a": col, "b": col}, {}) == "breaking"  # index removed
    assert after({"a": col, "b": col}, {"i": [True, ["a"]]}) == "breaking"
    assert after({"a": col, "b": col}, {**same_index, "j": [False, ["b"]]}) == "additive"


def test_more_rows_after_is_not_a_loss() -> None:
    found = classify({"tables": {"t": 1}}, {"tables": {"t": 9}})
    assert found.kind == "unchanged"


def test_diff_counts_rows_only_in_the_set_aside_copy(tmp_path: Path, v1: Path) -> None:
    backup = tmp_path / "backup.db"
    shutil.copy(v1, backup)
    conn = sqlite3.connect(v1)
    conn.executemany("INSERT INTO projects (name) VALUES (?)", [("new1",), ("new2",)])
    conn.execute("CREATE TABLE extra (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
    conn.execute("INSERT INTO extra VALUES ('a', '1')")
    conn.execute("CREATE TABLE plain (v TEXT)")
    conn.execute("INSERT INTO plain VALUES ('x')")
    conn.commit()
    conn.close()
    conn = sqlite3.connect(backup)
    conn.execute("CREATE TABLE plain (v TEXT)")
    conn.commit()
    conn.close()
    answer = hs.op_diff({"db": str(v1), "other": str(backup)})
    assert answer["only"] == {"projects": 2, "extra": 1, "plain": 1}
    back = hs.op_diff({"db": str(backup), "other": str(v1)})
    assert back["only"] == {}


def test_diff_with_composite_keys_null_keys_and_names_that_need_quoting(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    for path in (a, b):
        with sqlite3.connect(path) as conn:
            conn.execute('CREATE TABLE "order-items" (o TEXT, n INTEGER, PRIMARY KEY (o, n))')
            conn.execute('CREATE TABLE "nk" (k TEXT PRIMARY KEY, v TEXT)')
    with sqlite3.connect(a) as conn:
        conn.executemany('INSERT INTO "order-items" VALUES (?, ?)', [("x", 1), ("x", 2), ("y", 1)])
        conn.executemany('INSERT INTO "nk" VALUES (?, ?)', [(None, "a"), ("k1", "b")])
    with sqlite3.connect(b) as conn:
        conn.execute("INSERT INTO \"order-items\" VALUES ('x', 1)")
        conn.execute("INSERT INTO \"nk\" VALUES (NULL, 'a')")  # a NULL key on both sides
    answer = hs.op_diff({"db": str(a), "other": str(b)})
    assert answer["only"] == {"order-items": 2, "nk": 1}


def test_a_rebuilt_key_falls_back_to_rowid(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    with sqlite3.connect(a) as conn:
        conn.execute("CREATE TABLE t (code TEXT PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t VALUES ('c1', 'x'), ('c2', 'y')")
    with sqlite3.connect(b) as conn:
        conn.execute("CREATE TABLE t (v TEXT)")  # no declared key: rowids compared
        conn.execute("INSERT INTO t VALUES ('x')")
    assert hs.op_diff({"db": str(a), "other": str(b)})["only"] == {"t": 1}


def test_a_new_table_is_additive_and_an_old_description_falls_back_to_any_change() -> None:
    """Descriptions saved before per-table shapes were recorded have no ``schema``: a
    restore is then needed whenever the tables, migrations or schema hash differ."""
    before = {"tables": {"a": 1}, "schema_hash": "h1"}
    grown = {"tables": {"a": 1, "b": 0}, "schema_hash": "h2"}
    assert classify(before, grown).kind == "additive"
    assert classify(before, grown).tables[0].describe().startswith("b")
    assert needs_restore(before, grown)
    assert not needs_restore(before, dict(before))
    assert needs_restore(before, {**before, "schema_hash": "h3"})
