"""Host-side helper: the few operations that need Python *on the host*.

Sent verbatim to ``python3 -c`` (over SSH or locally), fed one JSON request on stdin,
answers one JSON object on stdout. It uses only the standard library, so a host needs
nothing but python3 (which a FastAPI app's host has). Keeping it one self-contained file
means the same code runs over both transports and is unit-testable in-process.

SQLite facts this relies on (DESIGN.md section 3): ``Connection.backup`` in ONE step is
consistent and does not block the app's writers; a stepwise backup never finishes under
writes; a file copy of a live database is corrupt; restoring next to a stale ``-wal``
replays it; a safe restore writes a temp file, checks it, deletes ``-wal``/``-shm`` and
renames it into place while the writers are stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import sys
import time
from typing import Any

RECORDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY, env TEXT NOT NULL, ref TEXT NOT NULL, commit_sha TEXT NOT NULL,
    release TEXT NOT NULL, actor TEXT NOT NULL, started_at REAL NOT NULL,
    finished_at REAL, duration_s REAL, status TEXT NOT NULL, failed_step TEXT,
    error TEXT, previous_release TEXT, rolled_back_to TEXT, kind TEXT NOT NULL DEFAULT 'deploy',
    steps TEXT NOT NULL DEFAULT '[]', committed_at REAL, message TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL,
    deployment_id TEXT, event TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER IF NOT EXISTS audit_append_only_u BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_d BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


DEPLOYMENT_COLUMNS = frozenset(
    [
        "id",
        "env",
        "ref",
        "commit_sha",
        "release",
        "actor",
        "started_at",
        "finished_at",
        "duration_s",
        "status",
        "failed_step",
        "error",
        "previous_release",
        "rolled_back_to",
        "kind",
        "steps",
        "committed_at",
        "message",
    ]
)


def _ident(name: str) -> str:
    """A quoted SQL identifier (table names come from sqlite_master, not from users)."""
    return '"' + name.replace('"', '""') + '"'


def _describe(conn: sqlite3.Connection) -> dict[str, Any]:
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    counts = {
        t: conn.execute(f"SELECT COUNT(*) FROM {_ident(t)}").fetchone()[0]  # noqa: S608
        for t in tables
    }
    version = None
    if "schema_migrations" in tables:
        version = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
    integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    # A fingerprint of every table's and index's definition: a migration that adds a
    # column without recording itself still changes the schema.
    ddl = "\n".join(
        row[0]
        for row in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
    )
    schema_hash = hashlib.sha256(ddl.encode()).hexdigest()[:16]
    return {
        "tables": counts,
        "schema_version": version,
        "schema_hash": schema_hash,
        "integrity": integrity,
    }


def _flush_and_hash(path: str, chunk: int = 8 << 20) -> str:
    """fsync in small pieces, hashing each piece on the way (one pass, from the page
    cache). One fsync of a freshly written 1 GB file holds the disk for a quarter of a
    second and the app's own commits (which fsync the WAL) wait behind it;
    ``sync_file_range`` chunk by chunk lets them through in between."""
    import ctypes

    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            sync_range = ctypes.CDLL(None, use_errno=True).sync_file_range
            sync_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        except (OSError, AttributeError):  # not Linux/glibc: one plain fsync at the end
            sync_range = None
        offset = 0
        while block := os.read(fd, chunk):
            digest.update(block)
            if sync_range is not None:
                sync_range(fd, offset, len(block), 1 | 2 | 4)  # WAIT_BEFORE|WRITE|WAIT_AFTER
            offset += len(block)
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest.hexdigest()


def op_backup(req: dict[str, Any]) -> dict[str, Any]:
    db, dest = req["db"], req["dest"]
    if not os.path.exists(db):
        return {"exists": False}
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + ".partial"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    started = time.monotonic()
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    out = sqlite3.connect(tmp)
    try:
        # The copy is a scratch file until renamed: no journal or syncs while it is
        # written; it is fsynced once, after the checks.
        out.execute("PRAGMA journal_mode=OFF")
        out.execute("PRAGMA synchronous=OFF")
        src.backup(out, pages=-1)  # one step: consistent, writers not blocked
        copied = time.monotonic()
        out.execute("PRAGMA journal_mode=DELETE")
        info = _describe(out)
    except sqlite3.Error as exc:  # e.g. a full disk: leave no partial file behind
        out.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise RuntimeError(f"backup of {db} to {dest} failed: {exc}") from exc
    finally:
        out.close()
        src.close()
    checked = time.monotonic()
    if info["integrity"] != "ok":
        os.unlink(tmp)
        raise RuntimeError(f"backup failed integrity_check: {info['integrity']}")
    os.chmod(tmp, 0o600)
    digest = _flush_and_hash(tmp)
    os.replace(tmp, dest)
    info.update(
        exists=True,
        path=dest,
        size=os.path.getsize(dest),
        sha256=digest,
        seconds=round(time.monotonic() - started, 4),
        copy_seconds=round(copied - started, 4),
        check_seconds=round(checked - copied, 4),
    )
    return info


def op_describe(req: dict[str, Any]) -> dict[str, Any]:
    db = req["db"]
    if not os.path.exists(db):
        return {"exists": False}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        info = _describe(conn)
        migrations = []
        if "schema_migrations" in info["tables"]:
            migrations = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    finally:
        conn.close()
    info.update(exists=True, migrations=sorted(migrations), sha256=_sha256(db))
    return info


def op_restore(req: dict[str, Any]) -> dict[str, Any]:
    """Replace ``db`` by ``src``. The caller has stopped every writer first."""
    db, src = req["db"], req["src"]
    tmp = db + ".restore-tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    out = sqlite3.connect(tmp)
    try:
        source.backup(out, pages=-1)
        integrity = out.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        out.close()
        source.close()
    if integrity != "ok":
        os.unlink(tmp)
        raise RuntimeError(f"backup {src} failed integrity_check: {integrity}")
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(db + suffix)
    os.chmod(tmp, 0o600)
    os.replace(tmp, db)
    return {"restored": True, "sha256": _sha256(db)}


def op_port_free(req: dict[str, Any]) -> dict[str, Any]:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        busy = sock.connect_ex(("127.0.0.1", int(req["port"]))) == 0
    return {"free": not busy}


def _records(path: str) -> sqlite3.Connection:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(RECORDS_SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(deployments)")}
    for column in ("committed_at REAL", "message TEXT"):  # added after 0.1.0's first records
        if column.split()[0] not in columns:
            conn.execute(f"ALTER TABLE deployments ADD COLUMN {column}")
    os.chmod(path, 0o600)
    return conn


def op_record(req: dict[str, Any]) -> dict[str, Any]:
    """Insert or update a deployment row, and append audit events, in one transaction."""
    conn = _records(req["records"])
    try:
        conn.execute("BEGIN IMMEDIATE")
        row = req.get("deployment")
        if row:
            unknown = set(row) - DEPLOYMENT_COLUMNS
            if unknown:
                raise ValueError(f"unknown deployment columns: {sorted(unknown)}")
            cols = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            updates = ", ".join(f"{c}=excluded.{c}" for c in row if c != "id")
            conn.execute(
                f"INSERT INTO deployments ({cols}) VALUES ({marks})"  # noqa: S608 - columns checked
                f" ON CONFLICT(id) DO UPDATE SET {updates}",
                list(row.values()),
            )
        for event in req.get("audit", []):
            conn.execute(
                "INSERT INTO audit (at, actor, deployment_id, event, detail) VALUES (?,?,?,?,?)",
                (
                    event["at"],
                    event["actor"],
                    event.get("deployment_id"),
                    event["event"],
                    json.dumps(event.get("detail", {}), sort_keys=True),
                ),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return {"ok": True}


def op_query(req: dict[str, Any]) -> dict[str, Any]:
    if not os.path.exists(req["records"]):
        return {"rows": []}
    conn = _records(req["records"])
    conn.row_factory = sqlite3.Row
    try:
        table = {"deployments": "deployments", "audit": "audit"}[req["table"]]
        order = "started_at" if table == "deployments" else "id"
        rows = conn.execute(
            f"SELECT * FROM {table} ORDER BY {order} DESC LIMIT ?",  # noqa: S608 - fixed names
            (int(req.get("limit", 50)),),
        ).fetchall()
    finally:
        conn.close()
    return {"rows": [dict(r) for r in rows]}


def op_manifests(req: dict[str, Any]) -> dict[str, Any]:
    """Every backup manifest (``*.json``) in a directory; unreadable ones are reported."""
    directory = req["dir"]
    found: list[dict[str, Any]] = []
    broken: list[str] = []
    if os.path.isdir(directory):
        for name in sorted(os.listdir(directory)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(directory, name)) as f:
                    found.append(json.load(f))
            except (OSError, ValueError):
                broken.append(name)
    return {"manifests": found, "broken": broken}


def op_verify(req: dict[str, Any]) -> dict[str, Any]:
    """Check a plaintext backup against its manifest: checksum, a restore into a scratch
    copy, ``integrity_check`` there, and the row count of every table."""
    path, manifest = req["path"], req["manifest"]
    problems: list[str] = []
    if not os.path.exists(path):
        return {"ok": False, "problems": [f"{path} does not exist"]}
    digest = _sha256(path)
    if digest != manifest["sha256"]:
        problems.append(
            f"checksum {digest[:12]} differs from the manifest's {manifest['sha256'][:12]}"
        )
    scratch = req["scratch"]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(scratch)
    try:
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        out = sqlite3.connect(scratch)
        try:
            source.backup(out, pages=-1)
            info = _describe(out)
        finally:
            out.close()
            source.close()
    except sqlite3.Error as exc:
        problems.append(f"not a readable SQLite database: {exc}")
        info = {}
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
    if info and info["integrity"] != "ok":
        problems.append(f"integrity_check: {info['integrity']}")
    for table, rows in manifest.get("tables", {}).items():
        got = info.get("tables", {}).get(table) if info else None
        if info and got != rows:
            problems.append(f"table {table}: {got} rows, the manifest says {rows}")
    return {"ok": not problems, "problems": problems, "tables": info.get("tables", {})}


def op_retire(req: dict[str, Any]) -> dict[str, Any]:
    """Stop a blue-green standby when its warm period ends (run detached on the host).

    Does nothing if a deploy or rollback holds the lock (it decides about the standby
    itself) or if ``colors.json`` no longer names this standby (its token changed).
    """
    import fcntl
    import subprocess

    time.sleep(float(req["delay"]))
    with open(req["lock"], "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return {"retired": False, "why": "a deploy holds the lock"}
        with open(req["colors"]) as f:
            colors = json.load(f)
        standby = colors.get("standby") or {}
        if standby.get("token") != req["token"]:
            return {"retired": False, "why": "the standby changed"}
        env = {**os.environ, **req["env"]}
        for name in req["names"]:
            subprocess.run(["pm2", "delete", name], env=env, capture_output=True, check=False)
        subprocess.run(["pm2", "save", "--force"], env=env, capture_output=True, check=False)
        colors["standby"] = None
        tmp = req["colors"] + ".tmp-retire"
        with open(tmp, "w") as f:
            json.dump(colors, f, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, req["colors"])
        event = {
            "at": time.time(),
            "actor": req["actor"],
            "event": "standby.retired",
            "detail": {"color": standby.get("color"), "release": standby.get("release")},
        }
        op_record({"records": req["records"], "audit": [event]})
    return {"retired": True}


OPS = {
    "backup": op_backup,
    "describe": op_describe,
    "restore": op_restore,
    "port_free": op_port_free,
    "record": op_record,
    "query": op_query,
    "retire": op_retire,
    "manifests": op_manifests,
    "verify": op_verify,
}


def main() -> None:
    # The request comes on stdin, or as the one argument of a detached job.
    detached = sys.argv[0] == "-c" and len(sys.argv) > 1  # python3 -c SCRIPT REQUEST
    request = json.loads(sys.argv[1] if detached else sys.stdin.read())
    try:
        answer = OPS[request["op"]](request)
    except Exception as exc:  # reported as JSON; the caller raises a SlipwayError
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    main()
