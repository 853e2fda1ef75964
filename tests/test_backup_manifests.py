"""Backup manifests are data anyone with write access to the host can edit, so none is
trusted: each is checked against the manifest's shape, and the file it names must be a
plain name inside the backups directory. Once, a manifest naming ``../../victim.txt``
with an old date made prune (which runs after every deploy) delete a file outside the
directory, and a ``{}`` manifest raised ``KeyError: 'created_at'`` in `backup list` and
at the end of every deploy (exit 1 after a deploy recorded as succeeded).

The real local transport, host helper and files; the fake process manager.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeProcessManager, answer_gates, tiny_repo
from support import run_cli

from slipway.backups import manifest as mf
from slipway.config import load_config
from slipway.deploy.engine import Deployer
from slipway.errors import BackupError
from slipway.transports.local import LocalTransport

OLD = time.time() - 400 * 86400


def sound(backup_id: str, created_at: float = OLD) -> dict[str, Any]:
    return {
        "id": backup_id,
        "env": "testing",
        "reason": "manual",
        "release": None,
        "commit": None,
        "created_at": created_at,
        "file": f"{backup_id}.db",
        "encrypted": False,
        "size": 1,
        "sha256": "0" * 64,
        "tables": {},
        "schema_version": None,
        "integrity": "ok",
    }


@pytest.fixture
def deployer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Deployer:
    repo = tiny_repo(
        tmp_path,
        'kind = "node"\nstart = ["node", "server.js", "{port}"]',
        {"server.js": "// the fake process manager runs nothing\n"},
    )
    answer_gates(monkeypatch, True)
    return Deployer(
        load_config(repo / "slipway.toml"),
        "testing",
        LocalTransport(),
        process_manager=FakeProcessManager(),
    )


def plant(directory: Path, name: str, content: object) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps(content))


def test_a_manifest_naming_a_file_outside_is_listed_broken_and_never_pruned(
    deployer: Deployer, tmp_path: Path
):
    backups = Path(deployer.backups.directory)
    victim = tmp_path / "victim.txt"
    victim.write_text("not a backup")
    evil = {**sound("20200101T000000.000-manual"), "file": "../../../victim.txt"}
    plant(backups, "20200101T000000.000-manual.json", evil)
    plant(backups, "empty.json", {})
    plant(backups, "list.json", [1, 2])
    (backups / "garbage.json").write_text("{not json")
    good, broken = deployer.backups.scan()
    assert good == []
    by_name = {b["name"]: b["problems"] for b in broken}
    assert by_name["20200101T000000.000-manual.json"] == [
        "file '../../../victim.txt' is not a backup file name in this directory"
    ]
    assert "no 'created_at'" in by_name["empty.json"]
    assert by_name["list.json"] == ["not a JSON object but list"]
    assert by_name["garbage.json"] == ["not readable JSON"]
    plan = deployer.backups.prune()
    assert plan.delete == [] and victim.read_text() == "not a backup"
    assert len(list(backups.iterdir())) == 4  # nothing removed: a person looks first


def test_a_deploy_ends_well_beside_broken_manifests_and_prunes_only_sound_ones(
    deployer: Deployer, tmp_path: Path
):
    backups = Path(deployer.backups.directory)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    plant(backups, "empty.json", {})
    evil = {**sound("20190101T000000.000-manual"), "file": "../../../victim.txt"}
    plant(backups, "20190101T000000.000-manual.json", evil)
    # Two sound old backups: retention keeps the newest good ones, deletes the rest.
    for n in range(deployer.env.backups.keep_last + 1):
        backup_id = f"2020010{n + 1}T000000.000-manual"
        plant(backups, f"{backup_id}.json", sound(backup_id, OLD + n))
        (backups / f"{backup_id}.db").write_bytes(b"x")
    outcome = deployer.deploy("v1")
    assert outcome.status == "succeeded"
    assert victim.read_text() == "keep me"
    assert (backups / "empty.json").exists()
    assert json.loads((backups / "20190101T000000.000-manual.json").read_text()) == evil
    kept = {p.name for p in backups.glob("2020*.db")}
    assert len(kept) == deployer.env.backups.keep_last  # the oldest sound one was pruned
    assert "20200101T000000.000-manual.db" not in kept


def test_backup_list_shows_broken_manifests_on_stderr_with_no_traceback(
    deployer: Deployer, capsys: pytest.CaptureFixture[str]
):
    backups = Path(deployer.backups.directory)
    plant(backups, "empty.json", {})
    plant(backups, "20200101T000000.000-manual.json", sound("20200101T000000.000-manual"))
    config = str(Path(deployer.loaded.path))
    code, out, err = run_cli(["--config", config, "backup", "testing", "list"], capsys)
    assert code == 0, err
    assert out.startswith("20200101T000000.000-manual ")
    assert f"BROKEN {backups}/empty.json: no 'id'" in err and "Traceback" not in err
    code, out, err = run_cli(["--config", config, "backup", "testing", "list", "--json"], capsys)
    assert code == 0 and [m["id"] for m in json.loads(out)] == ["20200101T000000.000-manual"]
    assert "BROKEN" in err


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"id": "other"}, "id 'other' is not this file's name (x.json)"),
        ({"file": "/etc/passwd"}, "file '/etc/passwd' is not a backup file name"),
        ({"file": "x.db/../../y.db"}, "file 'x.db/../../y.db' is not a backup file name"),
        ({"file": ".x.db"}, "file '.x.db' is not a backup file name"),
        ({"file": "victim.txt"}, "file 'victim.txt' is not a backup file name"),
        ({"created_at": True}, "'created_at' is a boolean"),
        ({"created_at": float("inf")}, "created_at is not a finite time"),
        ({"created_at": "2020"}, "'created_at' is str"),
        ({"reason": "whim"}, "reason 'whim' is not one of pre-deploy, manual, pre-restore"),
        ({"encrypted": "no"}, "'encrypted' is str"),
    ],
)
def test_manifest_problems_name_the_field(change: dict[str, Any], problem: str):
    assert mf.problems(sound("x"), "x.json") == []
    found = mf.problems({**sound("x"), **change}, "x.json")
    assert any(p.startswith(problem) for p in found), found


def test_a_path_outside_the_directory_is_refused_even_from_a_manifest_in_memory(
    deployer: Deployer,
):
    with pytest.raises(BackupError, match="not a plain file name"):
        deployer.backups.remove({**sound("x"), "file": "../victim"})
