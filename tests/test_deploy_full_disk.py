"""A full disk on the host during a deploy: the deploy fails, the live release keeps
serving, the database is byte-identical, the lock is free, the record names the step.

The deploy root sits on a small tmpfs (needs root and mount; CI runs as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apprepo import git, make_repo, write_config, write_env_file
from support import TOOLS_BIN, require_binary, stop_pm2

from slipway.config import load_config
from slipway.deploy.engine import Deployer
from slipway.errors import DeployFailed
from slipway.state import records
from slipway.state.lock import is_held
from slipway.transports.local import LocalTransport

pytestmark = pytest.mark.integration


def fill(filler: Path) -> None:
    """Write to ``filler`` until its filesystem is full."""
    with open(filler, "ab") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        stop_pm2(mount_point / "srv" / "pm2")
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def with_big_release(repo: Path) -> str:
    """A tag whose release needs 1 MB more than v2's: more than the space the test
    leaves (releases of one lock share their virtualenv, so v2 alone now fits)."""
    git(repo, "checkout", "-q", "-b", "big", "v2")
    (repo / "assets.bin").write_bytes(os.urandom(1 << 20))
    git(repo, "add", "assets.bin")
    git(repo, "commit", "-q", "-m", "v2 with 1 MB of assets")
    git(repo, "tag", "v2-big")
    git(repo, "checkout", "-q", "main")
    return "v2-big"


def test_full_disk_fails_the_deploy_and_the_site_keeps_serving(tmp_path: Path, small_disk: Path):
    require_binary("pm2", path=str(TOOLS_BIN))
    repo = make_repo(tmp_path / "repo")
    big = with_big_release(repo)
    root = small_disk / "srv"
    config = write_config(repo, root)
    write_env_file(root, "API_TOKEN=disk-token-1\n")
    loaded = load_config(config)
    first = Deployer(loaded, "testing", LocalTransport()).deploy("v1")
    port = loaded.config.environment("testing").ports.backend
    db = root / "testing" / ".codeframe" / "state.db"
    httpx.post(f"http://127.0.0.1:{port}/api/projects", json={"name": "kept"}).raise_for_status()
    db_bytes = db.read_bytes()
    filler = small_disk / "filler"
    # Fill the disk, leaving a few KB: enough for the lock and records, not a release.
    subprocess.run(["fallocate", "-l", "1T", str(filler)], capture_output=True, check=False)
    fill(filler)
    # Completely full: not even the lock's label fits. A clear error, and no lock kept.
    from slipway.errors import TransportError

    with pytest.raises(TransportError, match="No space left on device"):
        Deployer(loaded, "testing", LocalTransport()).deploy("v2")
    assert not is_held(LocalTransport(), Deployer(loaded, "testing", LocalTransport()).layout)
    os.truncate(filler, filler.stat().st_size - (512 << 10))  # 512 KB: lock and records fit
    free = shutil.disk_usage(small_disk).free
    assert free < 2 << 20
    try:
        with pytest.raises(DeployFailed) as info:
            Deployer(loaded, "testing", LocalTransport()).deploy(big)
    finally:
        filler.unlink()
    assert info.value.step in ("upload", "install")
    assert info.value.rolled_back
    assert "the failed release was removed" in (info.value.hint or "")
    health = httpx.get(f"http://127.0.0.1:{port}/health").json()
    assert health["release"] == first.release
    assert db.read_bytes() == db_bytes
    d = Deployer(loaded, "testing", LocalTransport())
    assert not is_held(LocalTransport(), d.layout)
    row = records.deployments(LocalTransport(), d.layout)[0]
    assert row["status"] == "rolled_back" and row["failed_step"] == info.value.step
    # And with space back, the next deploy simply works.
    assert Deployer(loaded, "testing", LocalTransport()).deploy("v2").status == "succeeded"


def test_full_backup_disk_aborts_the_deploy_before_any_change(tmp_path: Path, small_disk: Path):
    """The backups live on their own (full) filesystem: the backup step fails, nothing
    live has changed, and the message names the full disk."""
    require_binary("pm2", path=str(TOOLS_BIN))
    repo = make_repo(tmp_path / "repo")
    root = tmp_path / "srv"
    config = write_config(
        repo, root, backups=f'{{ enabled = true, path = "{small_disk / "backups"}" }}'
    )
    write_env_file(root, "API_TOKEN=disk-token-2\n")
    loaded = load_config(config)
    try:
        first = Deployer(loaded, "testing", LocalTransport()).deploy("v1")
        port = loaded.config.environment("testing").ports.backend
        httpx.post(f"http://127.0.0.1:{port}/api/projects", json={"name": "k"}).raise_for_status()
        db = root / "testing" / ".codeframe" / "state.db"
        db_bytes = db.read_bytes()
        filler = small_disk / "filler"
        fill(filler)
        with pytest.raises(DeployFailed) as info:
            Deployer(loaded, "testing", LocalTransport()).deploy("v2")
        assert info.value.step == "backup" and info.value.rolled_back
        assert "database or disk is full" in str(info.value) or "No space" in str(info.value)
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert health["release"] == first.release
        assert db.read_bytes() == db_bytes
        assert not list((small_disk / "backups").glob("*.partial"))
    finally:
        stop_pm2(root / "pm2")
