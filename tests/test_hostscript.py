"""The host helper's SQLite operations, in-process, against the SQLite traps in docs/architecture.md."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from slipway.state import hostscript as hs


def make_db(path: Path, rows: int = 100) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO schema_migrations VALUES (1), (2)")
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO items (body) VALUES (?)", [("x" * 200,)] * rows)
    conn.commit()
    conn.close()


def test_backup_is_consistent_while_a_writer_runs(tmp_path: Path):
    db = tmp_path / "live.db"
    make_db(db, rows=2000)
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        conn = sqlite3.connect(db, timeout=10)
        while not stop.is_set():
            conn.execute("INSERT INTO items (body) VALUES ('w')")
            conn.commit()
            written[0] += 1
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        info = hs.op_backup({"db": str(db), "dest": str(tmp_path / "b" / "backup.db")})
    finally:
        stop.set()
        thread.join()
    assert written[0] > 0, "the writer really ran during the backup"
    assert info["integrity"] == "ok"
    assert info["schema_version"] == 2
    assert info["tables"]["items"] >= 2000
    backup = sqlite3.connect(tmp_path / "b" / "backup.db")
    assert backup.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert backup.execute("SELECT COUNT(*) FROM items").fetchone()[0] == info["tables"]["items"]
    assert oct((tmp_path / "b" / "backup.db").stat().st_mode & 0o777) == "0o600"
    assert len(info["sha256"]) == 64


def test_backup_of_missing_database_says_so(tmp_path: Path):
    assert hs.op_backup({"db": str(tmp_path / "none.db"), "dest": str(tmp_path / "x.db")}) == {
        "exists": False
    }
    assert hs.op_describe({"db": str(tmp_path / "none.db")}) == {"exists": False}


def test_restore_ignores_a_stale_wal_and_checks_integrity(tmp_path: Path):
    db = tmp_path / "app.db"
    make_db(db, rows=10)
    hs.op_backup({"db": str(db), "dest": str(tmp_path / "good.db")})
    # More writes land in the WAL; a naive restore next to it would replay them.
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.executemany("INSERT INTO items (body) VALUES ('late')", [()] * 50)
    conn.commit()
    stale_wal = Path(str(db) + "-wal").read_bytes()
    assert stale_wal
    conn.close()  # closing checkpoints; put the WAL back as a crash would leave it
    Path(str(db) + "-wal").write_bytes(stale_wal)
    hs.op_restore({"db": str(db), "src": str(tmp_path / "good.db")})
    assert not Path(str(db) + "-wal").exists()
    check = sqlite3.connect(db)
    assert check.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 10
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_restore_refuses_a_corrupt_backup(tmp_path: Path):
    db = tmp_path / "app.db"
    make_db(db)
    before = db.read_bytes()
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
    with pytest.raises(sqlite3.DatabaseError):
        hs.op_restore({"db": str(db), "src": str(corrupt)})
    assert db.read_bytes() == before


def test_describe_lists_migrations(tmp_path: Path):
    db = tmp_path / "app.db"
    make_db(db)
    info = hs.op_describe({"db": str(db)})
    assert info["migrations"] == [1, 2]
    assert info["tables"] == {"schema_migrations": 2, "items": 100}


def test_port_free(tmp_path: Path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert hs.op_port_free({"port": port}) == {"free": False, "accepting": True}
    assert hs.op_port_free({"port": port}) == {"free": True, "accepting": False}


def test_nginx_workers_of_a_missing_master_are_none(tmp_path: Path) -> None:
    assert hs.op_nginx_workers({"pid_file": str(tmp_path / "nginx.pid")}) == {
        "master": None,
        "serving": [],
    }


def test_a_listener_with_a_full_accept_queue_is_not_free() -> None:
    """Connections to a listener that never accepts time out once its queue is full;
    such a port was once reported free and a release started on it."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        clients = []
        try:
            for _ in range(8):  # fill the queue (backlog 1) past what it takes
                client = socket.socket()
                client.setblocking(False)
                client.connect_ex(("127.0.0.1", port))
                clients.append(client)
            assert hs.op_port_free({"port": port}) == {"free": False, "accepting": False}
        finally:
            for client in clients:
                client.close()


def test_records_upsert_audit_append_only_and_query(tmp_path: Path):
    rec = str(tmp_path / ".slipway" / "records.db")
    row = {
        "id": "d1",
        "env": "s",
        "ref": "v1",
        "commit_sha": "abc",
        "release": "r1",
        "actor": "me",
        "started_at": 1.0,
        "status": "running",
    }
    event = {"at": 1.0, "actor": "me", "event": "deploy.started", "deployment_id": "d1"}
    hs.op_record({"records": rec, "deployment": row, "audit": [event]})
    done = {**event, "event": "deploy.succeeded"}
    hs.op_record({"records": rec, "deployment": {**row, "status": "succeeded"}, "audit": [done]})
    rows = hs.op_query({"records": rec, "table": "deployments"})["rows"]
    assert [(r["id"], r["status"]) for r in rows] == [("d1", "succeeded")]
    audit = hs.op_query({"records": rec, "table": "audit"})["rows"]
    assert [a["event"] for a in audit] == ["deploy.succeeded", "deploy.started"]
    conn = sqlite3.connect(rec)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit")
    conn.rollback()
    conn.close()
    with pytest.raises(ValueError, match="unknown deployment columns"):
        hs.op_record({"records": rec, "deployment": {**row, "evil; DROP": 1}})
    assert oct(Path(rec).stat().st_mode & 0o777) == "0o600"
    assert hs.op_query({"records": str(tmp_path / "none.db"), "table": "audit"}) == {"rows": []}


def test_main_speaks_json_and_reports_errors(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["-c"])  # python3 -c SCRIPT, the request on stdin
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"op": "port_free", "port": 1})))
    hs.main()
    assert json.loads(capsys.readouterr().out) == {"free": True, "accepting": False}
    monkeypatch.setattr(
        "sys.stdin", io.StringIO(json.dumps({"op": "restore", "db": "/x", "src": "/nope"}))
    )
    hs.main()
    assert "error" in json.loads(capsys.readouterr().out)


def test_backup_hashes_on_a_second_thread_and_reports_its_failure(tmp_path: Path, monkeypatch):
    db = tmp_path / "live.db"
    make_db(db)
    answer = hs.op_backup({"db": str(db), "dest": str(tmp_path / "b.db"), "check": "quick_check"})
    assert answer["check"] == "quick_check" and answer["integrity"] == "ok"
    assert answer["sha256"] == hs._sha256(str(tmp_path / "b.db"))
    assert answer["migrations"] == [1, 2]
    described = hs.op_describe({"db": str(db), "hash": False})
    assert "sha256" not in described and described["check"] == "integrity_check"

    def broken(path: str) -> str:
        raise OSError("disk gone")

    monkeypatch.setattr(hs, "_flush_and_hash", broken)
    with pytest.raises(OSError, match="disk gone"):
        hs.op_backup({"db": str(db), "dest": str(tmp_path / "c.db")})
    with pytest.raises(ValueError, match="unknown check"):
        hs.op_backup({"db": str(db), "dest": str(tmp_path / "d.db"), "check": "vacuum"})
    assert not (tmp_path / "d.db").exists() and not (tmp_path / "d.db.partial").exists()
