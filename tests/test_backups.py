"""Backups: manifests, age encryption, verify, retention, restore. Real SQLite files, a
real writer process, the real ``age`` binary, and a real deploy for the restore."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apprepo import make_repo, write_config, write_env_file
from support import TOOLS_BIN, require_binary, run_cli

from slipway.backups import manifest as mf
from slipway.backups.restore import restore_backup
from slipway.backups.store import BackupStore
from slipway.config import load_config
from slipway.config.model import BackupConfig
from slipway.deploy.engine import Deployer
from slipway.errors import BackupError, UsageError
from slipway.state.host import Layout
from slipway.transports.local import LocalTransport

# A writer that keeps a counter in the same transaction as each insert: a consistent
# copy has exactly as many rows as its counter says.
WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, body TEXT)")
conn.execute("CREATE TABLE IF NOT EXISTS counter (n INTEGER)")
if conn.execute("SELECT COUNT(*) FROM counter").fetchone()[0] == 0:
    conn.execute("INSERT INTO counter VALUES (0)")
print("ready", flush=True)
while True:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO items (body) VALUES (?)", ("x" * 300,))
    conn.execute("UPDATE counter SET n = n + 1")
    conn.execute("COMMIT")
"""


def keypair(directory: Path, name: str) -> tuple[Path, str]:
    require_binary("age-keygen")
    key = directory / f"{name}.txt"
    result = subprocess.run(
        ["age-keygen", "-o", str(key)], capture_output=True, text=True, check=True
    )
    public = result.stderr.strip().split("Public key: ")[1]
    return key, public


def make_store(tmp_path: Path, recipients: list[str] | None = None, **config: int) -> BackupStore:
    layout = Layout(str(tmp_path / "srv"), "testing")
    backup_config = BackupConfig(age_recipients=recipients or [], **config)
    return BackupStore(LocalTransport(), layout, "testing", backup_config)


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Path]:
    db = tmp_path / "live.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    yield db
    proc.kill()
    proc.wait()


def test_backups_under_a_continuous_writer_are_consistent(tmp_path: Path, writer: Path):
    store = make_store(tmp_path)
    for _ in range(5):
        m = store.create(str(writer), reason="manual", release="r1", commit="c" * 40)
        assert m is not None and m["integrity"] == "ok"
        copy = sqlite3.connect(store.path_of(m))
        items = copy.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        counter = copy.execute("SELECT n FROM counter").fetchone()[0]
        copy.close()
        assert items == counter == m["tables"]["items"] > 0
    # The writer kept committing meanwhile: the live database moved on.
    live = sqlite3.connect(writer).execute("SELECT n FROM counter").fetchone()[0]
    assert live > m["tables"]["items"]


def test_manifest_describes_the_backup(tmp_path: Path, writer: Path):
    store = make_store(tmp_path)
    m = store.create(str(writer), reason="pre-deploy", release="20261127-abc", commit="c1")
    assert m is not None
    assert m["id"].endswith("-pre-deploy-20261127-abc")
    assert (m["env"], m["reason"], m["release"], m["commit"]) == (
        "testing",
        "pre-deploy",
        "20261127-abc",
        "c1",
    )
    path = Path(store.path_of(m))
    assert m["size"] == path.stat().st_size
    assert m["sha256"] == subprocess.check_output(["sha256sum", str(path)], text=True)[:64]
    assert set(m["tables"]) == {"items", "counter"}
    assert m["encrypted"] is False and m["integrity"] == "ok"
    manifest_file = path.with_name(f"{m['id']}.json")
    assert json.loads(manifest_file.read_text()) == m
    for f in (path, manifest_file):
        assert oct(f.stat().st_mode & 0o777) == "0o600"
    assert store.list()[0] == m
    assert store.latest(release="20261127-abc", reason="pre-deploy") == m
    with pytest.raises(UsageError, match="no backup 'nope'"):
        store.get("nope")
    with pytest.raises(UsageError, match="no pre-deploy of other backup"):
        store.latest(release="other", reason="pre-deploy")


def test_missing_database_gives_no_backup(tmp_path: Path):
    assert (
        make_store(tmp_path).create(
            str(tmp_path / "none.db"), reason="manual", release=None, commit=None
        )
        is None
    )


def test_encrypted_backups_need_the_right_key(tmp_path: Path, writer: Path):
    require_binary("age")
    key, public = keypair(tmp_path, "right")
    wrong, _ = keypair(tmp_path, "wrong")
    store = make_store(tmp_path, [public])
    m = store.seal(store.create(str(writer), reason="manual", release=None, commit=None) or {})
    assert m["encrypted"] and m["file"].endswith(".db.age")
    sealed = Path(store.path_of(m))
    assert oct(sealed.stat().st_mode & 0o777) == "0o600"
    assert not sealed.with_suffix("").exists(), "the plaintext is gone once sealed"
    assert b"SQLite format 3" not in sealed.read_bytes()[:64]
    assert store.seal(m) == m  # sealing twice changes nothing

    assert store.verify(m, key)["ok"]
    with pytest.raises(BackupError, match="cannot decrypt"):
        store.verify(m, wrong)
    with pytest.raises(BackupError, match="is encrypted"):
        store.verify(m, None)
    leftovers = [p.name for p in sealed.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [".scratch"], leftovers
    assert list((sealed.parent / ".scratch").iterdir()) == [], "no identity or copy is left"
    with store.plaintext(m, key) as plain:  # private while it exists
        scratch = Path(plain).parent
        modes = {p.name: oct(p.stat().st_mode & 0o777) for p in scratch.iterdir()}
        assert modes == {"identity": "0o600", "decrypted.db": "0o600"}  # no agent: no .lock
        assert oct(scratch.stat().st_mode & 0o777) == "0o700"
        assert oct(scratch.parent.stat().st_mode & 0o777) == "0o700"
    assert not scratch.exists()

    sealed.write_bytes(sealed.read_bytes()[:-100])  # truncated on disk
    result = store.verify(m, key)
    assert not result["ok"] and "checksum" in result["problems"][0]


def test_corrupt_and_truncated_backups_are_refused(tmp_path: Path, writer: Path):
    store = make_store(tmp_path)
    truncated = store.create(str(writer), reason="manual", release=None, commit=None)
    flipped = store.create(str(writer), reason="manual", release=None, commit=None)
    assert truncated and flipped
    assert store.verify(truncated, None) == {
        "ok": True,
        "problems": [],
        "tables": truncated["tables"],
    }

    path = Path(store.path_of(truncated))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    problems = store.verify(truncated, None)["problems"]
    assert any("checksum" in p for p in problems)
    assert any("not a readable SQLite database" in p or "integrity_check" in p for p in problems)

    path = Path(store.path_of(flipped))
    data = bytearray(path.read_bytes())
    data[4096 + 200 : 4096 + 260] = b"\xff" * 60  # garbage inside a table page
    path.write_bytes(bytes(data))
    result = store.verify(flipped, None)
    assert not result["ok"] and "checksum" in result["problems"][0]

    Path(store.path_of(flipped)).unlink()
    assert store.verify(flipped, None)["problems"][0].endswith("does not exist")


def test_retention_keeps_recent_and_the_newest_good_ones():
    day = 86400.0
    now = 100 * day

    def m(name: str, age_days: float, integrity: str = "ok") -> dict:
        return {"id": name, "created_at": now - age_days * day, "integrity": integrity}

    manifests = [m("new", 1), m("month", 29), m("old", 40), m("older", 50), m("bad", 60, "x")]
    plan = mf.retention(manifests, now=now, days=30, keep_last=1)
    assert plan.keep == ["new", "month"] and plan.delete == ["old", "older", "bad"]
    # Everything is old: the newest good ones are kept anyway, never a corrupt one.
    plan = mf.retention(manifests[2:], now=now, days=30, keep_last=1)
    assert plan.keep == ["old"] and plan.delete == ["older", "bad"]
    assert plan.reasons["old"] == "one of the newest 1 good backups"
    assert mf.retention([], now=now, days=30, keep_last=5).keep == []
    with pytest.raises(ValueError, match="unknown backup reason"):
        mf.build(
            {"size": 1, "sha256": "x"},
            env="e",
            reason="why",
            release=None,
            commit=None,
            at=0,
            file="f",
        )


# --- through the CLI, on a deployed app --------------------------------------------------


class App:
    def __init__(self, tmp: Path) -> None:
        self.repo = make_repo(tmp / "repo")
        self.root = tmp / "srv"
        self.key, public = keypair(tmp, "ops")
        self.config = write_config(
            self.repo,
            self.root,
            backups=f'{{ enabled = true, keep_last = 2, age_recipients = ["{public}"] }}',
        )
        write_env_file(self.root, "API_TOKEN=backup-test-token\n")
        self.loaded = load_config(self.config)
        self.port = self.loaded.config.environment("testing").ports.backend

    def deployer(self) -> Deployer:
        return Deployer(self.loaded, "testing", LocalTransport(), actor="tester")

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        return run_cli(["--config", str(self.config), "backup", "testing", *args], capsys)

    def projects(self) -> list[str]:
        response = httpx.get(f"http://127.0.0.1:{self.port}/api/projects", timeout=5)
        return [p["name"] for p in response.json()]

    def add(self, name: str) -> None:
        httpx.post(
            f"http://127.0.0.1:{self.port}/api/projects", json={"name": name}, timeout=5
        ).raise_for_status()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    require_binary("pm2", path=str(TOOLS_BIN))
    require_binary("age")
    a = App(tmp_path_factory.mktemp("backups"))
    a.deployer().deploy("v1")
    yield a
    subprocess.run(
        [str(TOOLS_BIN / "pm2"), "kill"],
        env={"PM2_HOME": str(a.root / "pm2"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=False,
    )


def test_cli_create_list_verify(app: App, capsys: pytest.CaptureFixture[str]):
    app.add("before-backup")
    code, out, err = app.cli(capsys, "create", "--json")
    assert code == 0, err
    created = json.loads(out)
    assert created["encrypted"] and created["reason"] == "manual"
    code, out, _ = app.cli(capsys, "list", "--json")
    assert json.loads(out)[0]["id"] == created["id"]
    code, out, _ = app.cli(capsys, "list")
    assert created["id"] in out and "(age)" in out
    code, out, _ = app.cli(capsys, "verify", "--identity", str(app.key))
    assert code == 0 and out.startswith(f"{created['id']}: ok")
    code, out, err = app.cli(capsys, "verify", created["id"])
    assert code == 1 and "is encrypted" in err and "--identity" in err


def test_verify_start_app_runs_the_backend_on_a_copy(app: App, capsys: pytest.CaptureFixture[str]):
    live_db = app.root / "testing" / ".codeframe" / "state.db"
    before = live_db.stat().st_mtime_ns
    code, out, err = app.cli(capsys, "verify", "--identity", str(app.key), "--start-app", "--json")
    assert code == 0, out + err
    trial = json.loads(out)[0]["app"] if out.lstrip().startswith("[") else json.loads(out)["app"]
    assert trial["ok"] is True
    checks = {c["name"]: c for c in trial["checks"]}
    assert set(checks) == {"api", "database"} and all(c["ok"] for c in checks.values())
    assert trial["port"] != app.port
    # The backend is gone, its copy removed, and the live database untouched.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{trial['port']}/health", timeout=2)
    assert not list((app.root / "testing" / "backups" / ".scratch").iterdir())
    assert live_db.stat().st_mtime_ns == before
    code, out, _ = app.cli(capsys, "verify", "--identity", str(app.key), "--start-app")
    assert code == 0 and "on the copy: healthy" in out


def _released(lock: Path, deadline: float = 30.0) -> bool:
    """Whether the flock on ``lock`` can be taken (its holder, an agent, has exited)."""
    import fcntl

    end = time.monotonic() + deadline
    with open(lock) as f:
        while time.monotonic() < end:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                time.sleep(0.1)
                continue
            fcntl.flock(f, fcntl.LOCK_UN)
            return True
    return False


def test_a_verify_killed_with_its_plaintext_out_leaves_it_private_and_the_next_removes_it(
    app: App, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    """SIGKILL while the age identity and the (pre-made, 0600) decrypted copy are on the
    host: they are 0600 in 0700 directories, and the next command removes them."""
    scratch = app.root / "testing" / "backups" / ".scratch"
    # age that takes its time, so the kill lands while the identity is on the host.
    slow = tmp_path / "slow-age"
    slow.mkdir()
    (slow / "age").write_text(f"#!/bin/sh\nsleep 3\nexec {shutil.which('age')} \"$@\"\n")
    (slow / "age").chmod(0o755)
    cli = [sys.executable, "-m", "slipway.cli.main", "--config", str(app.config)]
    args = ["backup", "testing", "verify", "--identity", str(app.key)]
    env = {**os.environ, "PATH": f"{slow}:{os.environ['PATH']}"}
    proc = subprocess.Popen([*cli, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(scratch.glob("*/decrypted.db")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    left = sorted(p.relative_to(scratch).as_posix() for p in scratch.rglob("*"))
    assert any(name.endswith("/identity") for name in left), left
    assert any(name.endswith("/decrypted.db") for name in left), left
    for path in scratch.rglob("*"):
        expected = "0o700" if path.is_dir() else "0o600"
        assert oct(path.stat().st_mode & 0o777) == expected or path.suffix in (".db-wal", ".db-shm")
    for lock in scratch.glob("*/.lock"):
        assert _released(lock), "the killed command's agent still holds its scratch"
    code, out, err = app.cli(capsys, "verify", "--identity", str(app.key))
    assert code == 0, out + err
    assert list(scratch.iterdir()) == [], "the next command removed what the killed one left"


def test_restore_sets_the_live_data_aside_and_brings_the_backup_back(
    app: App, capsys: pytest.CaptureFixture[str]
):
    code, out, _ = app.cli(capsys, "create", "--json")
    backup = json.loads(out)
    app.add("after-backup")
    assert "after-backup" in app.projects()
    code, out, err = app.cli(capsys, "restore", backup["id"], "--identity", str(app.key))
    assert code == 0, err
    assert "database restored from" in out and "kept as backup" in out
    names = app.projects()  # the app is serving again, with the backup's data
    assert "before-backup" in names and "after-backup" not in names
    aside = next(m for m in app.deployer().backups.list() if m["reason"] == "pre-restore")
    assert aside["tables"]["projects"] == backup["tables"]["projects"] + 1
    assert aside["encrypted"]


def test_restore_refuses_a_damaged_backup_before_stopping_anything(
    app: App, capsys: pytest.CaptureFixture[str]
):
    _, out, _ = app.cli(capsys, "create", "--json")
    backup = json.loads(out)
    path = Path(app.deployer().backups.path_of(backup))
    path.write_bytes(path.read_bytes()[:-500])
    # started_at in /health shows whether the process was restarted.
    health_before = httpx.get(f"http://127.0.0.1:{app.port}/health", timeout=5).json()
    with pytest.raises(BackupError, match=r"checksum|decrypt"):
        d = app.deployer()
        d.identity = app.key
        restore_backup(d, backup["id"])
    assert httpx.get(f"http://127.0.0.1:{app.port}/health", timeout=5).json() == health_before


def test_prune_dry_run_then_for_real(app: App, capsys: pytest.CaptureFixture[str]):
    store = app.deployer().backups
    manifests = store.list()
    assert len(manifests) >= 3
    old = manifests[-1]
    manifest_path = Path(store.directory) / f"{old['id']}.json"
    manifest_path.write_text(json.dumps({**old, "created_at": time.time() - 40 * 86400}))
    code, out, _ = app.cli(capsys, "prune", "--dry-run")
    assert code == 0 and f"would delete {old['id']} (older than 30 days)" in out
    assert manifest_path.exists()
    code, out, _ = app.cli(capsys, "prune", "--json")
    assert json.loads(out)["delete"] == [old["id"]]
    assert not manifest_path.exists() and not Path(store.path_of(old)).exists()
