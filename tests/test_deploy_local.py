"""End-to-end deploys on this machine: real PM2, real app processes, real SQLite.

The environment is backend-only here (fast); the frontend is deployed in
test_deploy_frontend.py. Tests in this module share one environment and run in order:
each leaves a healthy release live, as a real environment would be.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apprepo import make_repo, write_config, write_env_file
from support import TOOLS_BIN, require_binary, run_cli

from slipway.config import load_config
from slipway.deploy.engine import Deployer, StepEvent
from slipway.errors import DeployFailed, LockHeld
from slipway.state import records
from slipway.state.lock import DeployLock
from slipway.transports.local import LocalTransport

pytestmark = pytest.mark.integration

SECRET = "tok-SUPER-secret-4242"


class Env:
    def __init__(self, tmp: Path) -> None:
        self.repo = make_repo(tmp / "repo")
        self.root = tmp / "srv"
        self.config_path = write_config(self.repo, self.root)
        self.loaded = load_config(self.config_path)
        self.env = self.loaded.config.environment("testing")
        write_env_file(self.root, f"API_TOKEN={SECRET}\nCORS_ALLOWED_ORIGINS=\n")
        self.events: list[StepEvent] = []

    def deployer(self) -> Deployer:
        return Deployer(
            self.loaded, "testing", LocalTransport(), emit=self.events.append, actor="tester"
        )

    def url(self, path: str = "/health") -> str:
        return f"http://127.0.0.1:{self.env.ports.backend}{path}"

    def health(self) -> dict:
        return httpx.get(self.url(), timeout=5).json()

    @property
    def db(self) -> Path:
        return self.root / "testing" / ".codeframe" / "state.db"

    def pm2(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PM2_HOME": str(self.root / "pm2")}
        return subprocess.run(
            [str(TOOLS_BIN / "pm2"), *args], env=env, capture_output=True, text=True, check=False
        )

    def rows(self) -> list[dict]:
        return records.deployments(LocalTransport(), self.deployer().layout)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_binary("pm2", path=str(TOOLS_BIN))
    require_binary("flock")
    e = Env(tmp_path_factory.mktemp("deploy"))
    yield e
    e.pm2("kill")


def test_first_deploy_serves_v1(env: Env):
    outcome = env.deployer().deploy("v1")
    assert outcome.status == "succeeded"
    body = env.health()
    assert body["version"] == "1.0.0"
    assert body["release"] == outcome.release
    assert body["commit"] == outcome.commit
    current = os.readlink(env.root / "testing" / "current")
    assert current.endswith(outcome.release)
    assert [s["step"] for s in outcome.steps] == [
        "lock",
        "upload",
        "link",
        "install",
        "build",
        "rehearse",
        "backup",
        "start",
        "health",
        "promote",
    ]
    row = env.rows()[0]
    assert row["status"] == "succeeded" and row["actor"] == "tester"
    assert oct((env.root / "testing" / "shared" / ".env.testing").stat().st_mode & 0o777) == "0o600"


def test_unrelated_pm2_app_survives_everything(env: Env):
    env.pm2("start", "sleep", "--name", "neighbour", "--", "600")
    try:
        with pytest.raises(DeployFailed):
            env.deployer().deploy("broken/crash")
        env.deployer().deploy("v1")
        listed = json.loads(env.pm2("jlist").stdout)
        neighbour = [p for p in listed if p["name"] == "neighbour"]
        assert neighbour and neighbour[0]["pm2_env"]["status"] == "online"
    finally:
        env.pm2("delete", "neighbour")


def test_v2_migration_keeps_data(env: Env):
    httpx.post(env.url("/api/projects"), json={"name": "precious"}, timeout=5).raise_for_status()
    outcome = env.deployer().deploy("v2")
    assert outcome.status == "succeeded"
    assert env.health()["version"] == "2.0.0"
    names = [p["name"] for p in httpx.get(env.url("/api/projects")).json()]
    assert "precious" in names
    backups = list((env.root / "testing" / "backups").glob("*-pre-deploy-*.db"))
    assert backups, "a backup is taken before the swap"


@pytest.mark.parametrize(
    ("ref", "step"),
    [
        ("broken/crash", "rehearse"),  # exits on the copy: nothing live changes
        ("broken/health500", "health"),
        ("broken/migration-error", "rehearse"),
        ("does-not-exist", None),
    ],
)
def test_failure_rolls_back_to_a_healthy_previous_release(env: Env, ref: str, step: str | None):
    before = env.health()
    db_before = env.db.read_bytes() if step is None else None
    if step is None:
        from slipway.errors import UsageError

        with pytest.raises(UsageError):
            env.deployer().deploy(ref)
        assert env.db.read_bytes() == db_before
        return
    with pytest.raises(DeployFailed) as info:
        env.deployer().deploy(ref)
    assert info.value.step == step
    assert info.value.rolled_back
    after = env.health()
    assert after["release"] == before["release"]
    row = env.rows()[0]
    assert row["status"] == "rolled_back"
    assert row["failed_step"] == step
    assert not DeployLock(LocalTransport(), env.deployer().layout)._handle
    from slipway.state.lock import is_held

    assert not is_held(LocalTransport(), env.deployer().layout)


def test_destructive_migration_that_fails_health_restores_database(
    env: Env, monkeypatch: pytest.MonkeyPatch
):
    """v3 drops the projects table (allowed here); if that release then fails its gate,
    data comes back."""
    count = len(httpx.get(env.url("/api/projects")).json())
    assert count >= 1
    from slipway.deploy import restart

    original = restart.gate

    def failing_gate(d, state):  # the release runs its migrations, then is judged unhealthy
        original(d, state)
        raise RuntimeError("injected: post-start check failed")

    monkeypatch.setattr(restart, "gate", failing_gate)
    with pytest.raises(DeployFailed) as info:
        env.deployer().deploy("v3", allow_data_loss=["projects"])
    assert info.value.rolled_back
    assert "database restored" in (info.value.hint or "")
    projects = httpx.get(env.url("/api/projects")).json()
    assert len(projects) == count
    conn = sqlite3.connect(env.db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == 2
    kept = list((env.root / "testing" / "backups").glob("*-pre-restore-*.db"))
    assert kept, "the failed release's database is set aside, not destroyed"


def test_missing_required_env_key_fails_before_changing_anything(env: Env):
    env_file = env.root / "testing" / "shared" / ".env.testing"
    original = env_file.read_text()
    before = env.health()
    env_file.write_text("OTHER=1\n")
    db_bytes = env.db.read_bytes()
    try:
        with pytest.raises(DeployFailed) as info:
            env.deployer().deploy("v2")
        assert info.value.step == "link"
        assert "API_TOKEN" in str(info.value)
        assert env.health()["started_at"] == before["started_at"]  # never restarted
        assert env.db.read_bytes() == db_bytes
    finally:
        env_file.write_text(original)


def test_concurrent_deploy_is_refused_with_owner(env: Env):
    layout = env.deployer().layout
    holder = DeployLock(LocalTransport(), layout)
    holder.acquire(actor="alice", ref="v9", reason="deploy")
    try:
        with pytest.raises(LockHeld) as info:
            env.deployer().deploy("v2")
        assert "alice" in str(info.value)
        assert info.value.exit_code == 3
    finally:
        holder.release()


def test_secret_never_appears_in_records_events_or_errors(env: Env):
    with pytest.raises(DeployFailed) as info:
        env.deployer().deploy("broken/health500")
    texts = [str(info.value), json.dumps(env.rows()), *(e.detail for e in env.events)]
    texts.append(json.dumps(records.audit_log(LocalTransport(), env.deployer().layout)))
    for text in texts:
        assert SECRET not in text
    eco = next((env.root / "testing" / "releases").glob("*/.slipway-ecosystem.json"))
    assert oct(eco.stat().st_mode & 0o777) == "0o600"


def test_common_env_values_change_no_behaviour(env: Env):
    """Env values such as false, null, exists, 1, ok, the project name or an app name once
    broke records, the pre-deploy backup and the rollback: they were masked in what
    slipway parses. Now they change nothing, and the real secret is still masked."""
    env_file = env.root / "testing" / "shared" / ".env.testing"
    original = env_file.read_text()
    values = {
        "DEBUG": "false",
        "FLAG": "true",
        "NOTHING": "null",
        "WORD": "exists",
        "ONE": "1",
        "OK": "ok",
        "APP_NAME": "codeframe-mini",
        "PROC": "codeframe-mini-testing-backend",
        "KEY": "tables",
    }
    env_file.write_text(original + "".join(f"{k}={v}\n" for k, v in values.items()))
    try:
        env.events.clear()
        outcome = env.deployer().deploy("v2")
        assert outcome.status == "succeeded"
        backup = [e.detail for e in env.events if e.step == "backup" and e.status == "info"]
        assert backup and "no database yet" not in backup[0], backup
        assert env.rows()[0]["status"] == "succeeded"
        from slipway.deploy.rollback import manual_rollback

        rolled = manual_rollback(env.deployer())
        assert rolled.status == "succeeded"
        assert env.health()["release"] == rolled.release
        texts = [json.dumps(env.rows()), *(e.detail for e in env.events)]
        texts.append(json.dumps(records.audit_log(LocalTransport(), env.deployer().layout)))
        assert all(SECRET not in text for text in texts)
    finally:
        env_file.write_text(original)
    assert env.deployer().deploy("v2").status == "succeeded"


def test_old_releases_are_pruned_but_current_and_previous_kept(env: Env):
    releases = sorted(p.name for p in (env.root / "testing" / "releases").iterdir())
    assert len(releases) <= env.env.keep_releases
    current = os.readlink(env.root / "testing" / "current").rsplit("/", 1)[-1]
    assert current in releases


def slipway_cmd(env: Env, *args: str) -> list[str]:
    exe = str(Path(sys.executable).with_name("slipway"))
    return [exe, "--config", str(env.config_path), *args]


@pytest.mark.parametrize("kill_at", ["upload", "install", "backup"])
def test_deployer_killed_with_sigkill_leaves_site_serving(env: Env, kill_at: str):
    before = env.health()
    proc = subprocess.Popen(
        slipway_cmd(env, "deploy", "testing", "--ref", "v2", "--json"),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("step") == kill_at and event.get("status") == "start":
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert env.health()["release"] == before["release"]
    # The next deploy needs no manual cleanup: the lock died with the deployer.
    outcome = env.deployer().deploy("v2", lock_wait=10)
    assert outcome.status == "succeeded"


def test_two_deploys_at_once_exactly_one_runs(env: Env):
    procs = [
        subprocess.Popen(
            slipway_cmd(env, "deploy", "testing", "--ref", "v2", "--actor", f"dev{i}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 3], results
    loser = next(err for code, _, err in results if code == 3)
    assert "is locked by dev" in loser


def test_cli_status_and_audit(env: Env):
    out = subprocess.run(
        slipway_cmd(env, "status", "testing", "--json"), capture_output=True, text=True, check=True
    ).stdout
    report = json.loads(out)
    assert report[0]["current"] == os.readlink(env.root / "testing" / "current").rsplit("/", 1)[-1]
    assert report[0]["deployments"][0]["status"] == "succeeded"
    text = subprocess.run(
        slipway_cmd(env, "status", "testing"), capture_output=True, text=True, check=True
    ).stdout
    assert text.startswith("testing on local: live release ")
    audit = subprocess.run(
        slipway_cmd(env, "audit", "testing", "--json"), capture_output=True, text=True, check=True
    ).stdout
    events = [row["event"] for row in json.loads(audit)]
    assert "deploy.succeeded" in events and "deploy.failed" in events
    assert SECRET not in out + text + audit
    # Every row real deploys, failures, notifications and drains wrote is in the chain.
    verified = subprocess.run(
        slipway_cmd(env, "audit", "testing", "--verify"), capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("testing on local: audit log verified (")


def test_cli_deploy_failure_exit_code_and_message(env: Env):
    result = subprocess.run(
        slipway_cmd(env, "deploy", "testing", "--ref", "broken/health500"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "error: deploy failed at step 'health' (rolled back)" in result.stderr
    assert "hint: previous release" in result.stderr
    assert "✗ health" in result.stdout


def cli(env: Env, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in-process, with this module's configuration."""
    return run_cli(["--config", str(env.config_path), *args], capsys)


def test_manual_rollback_and_forward_again(env: Env, capsys: pytest.CaptureFixture[str]):
    live = env.health()["release"]
    code, out, err = cli(env, capsys, "rollback", "testing", "--json")
    assert code == 0, err
    result_event = json.loads(out.strip().splitlines()[-1])
    body = env.health()
    assert body["release"] != live
    assert os.readlink(env.root / "testing" / "current").endswith(body["release"])
    assert result_event["release"] == body["release"]
    row = env.rows()[0]
    assert row["kind"] == "rollback" and row["rolled_back_to"] == body["release"]
    code, out, err = cli(env, capsys, "rollback", "testing", "--to", live)
    assert code == 0, err
    assert out.strip().endswith(")") and f"back to {live}" in out
    assert env.health()["release"] == live
    code, _, err = cli(env, capsys, "rollback", "testing", "--to", "nope")
    assert code == 2
    assert "no release of testing matches --to 'nope'" in err and "releases kept:" in err


def test_rollback_with_restore_db_sets_live_data_aside(
    env: Env, capsys: pytest.CaptureFixture[str]
):
    live = env.health()["release"]
    code, _, err = cli(env, capsys, "rollback", "testing", "--restore-db")
    assert code == 0, err
    newest = records.audit_log(LocalTransport(), env.deployer().layout, 3)
    assert [a["event"] for a in newest][:2] == ["incident.written", "rollback.succeeded"]
    assert "database.restored" in [a["event"] for a in newest]
    assert "database restored from" in newest[1]["detail"]
    incident = json.loads(newest[0]["detail"])
    report = Path(incident["path"]).read_text()
    assert report.startswith("# Incident: rollback in testing (previous release serving)")
    assert "database restored from" in report
    assert list((env.root / "testing" / "backups").glob("*-pre-restore-*.db"))
    assert cli(env, capsys, "rollback", "testing", "--to", live)[0] == 0


def test_rollback_to_an_unhealthy_release_restarts_the_current_one(env: Env):
    live = env.health()["release"]
    failed = next(
        r["release"]
        for r in env.rows()
        if r["status"] == "rolled_back"
        and (env.root / "testing" / "releases" / r["release"]).exists()
    )
    from slipway.deploy.rollback import manual_rollback
    from slipway.errors import SlipwayError

    with pytest.raises(SlipwayError, match="is not healthy") as info:
        manual_rollback(env.deployer(), failed)
    assert info.value.hint == f"previous release {live} serving and healthy"
    assert env.health()["release"] == live
    # Recovered like a failed deploy: a final record, an audit entry, an incident.
    row = env.rows()[0]
    assert (row["kind"], row["status"], row["release"]) == ("rollback", "failed", failed)
    assert row["rolled_back_to"] == live
    events = [a["event"] for a in records.audit_log(LocalTransport(), env.deployer().layout, 5)]
    assert events[:2] == ["incident.written", "rollback.failed"]
    incidents = env.root / "testing" / ".slipway" / "incidents"
    report = next(incidents.glob(f"*{row['id']}.md")).read_text()
    assert report.startswith("# Incident: failed rollback in testing (previous release serving)")


def test_pre_deploy_hook_failure_aborts_and_post_deploy_hook_runs(env: Env, tmp_path: Path):
    from slipway.config.load import LoadedConfig
    from slipway.config.model import HooksConfig
    from slipway.errors import SlipwayError

    def with_hooks(**hooks: list[list[str]]) -> Deployer:
        testing = env.env.model_copy(update={"hooks": HooksConfig(**hooks)})
        environments = {**env.loaded.config.environments, "testing": testing}
        config = env.loaded.config.model_copy(update={"environments": environments})
        return Deployer(LoadedConfig(config, env.config_path), "testing", LocalTransport())

    before = env.health()
    with pytest.raises(SlipwayError, match="pre_deploy hook failed \\(exit 3\\)") as info:
        with_hooks(pre_deploy=[["sh", "-c", f"echo {SECRET}; exit 3"]]).deploy("v2")
    assert info.value.hint == "nothing was changed"
    assert SECRET not in str(info.value)
    assert env.health()["started_at"] == before["started_at"]
    marker = tmp_path / "post"
    hook = ["sh", "-c", f'echo "$SLIPWAY_HOOK $SLIPWAY_REF $SLIPWAY_RELEASE" > {marker}']
    outcome = with_hooks(post_deploy=[hook]).deploy("v2")
    assert marker.read_text().split() == ["post_deploy", "v2", outcome.release]


def test_cli_releases_marks_the_live_one(env: Env, capsys: pytest.CaptureFixture[str]):
    code, out, err = cli(env, capsys, "releases", "testing", "--json")
    assert code == 0, err
    listed = json.loads(out)
    live = [r for r in listed if r["current"]]
    assert len(live) == 1 and live[0]["release"] == env.health()["release"]
    assert all(len(r["commit"]) == 40 for r in listed)
    assert {r["status"] for r in listed} <= {"succeeded", "rolled_back", "failed", "unknown"}
    code, out, _ = cli(env, capsys, "releases", "testing")
    assert any(line.startswith("* ") for line in out.splitlines())


def test_cli_lock_shows_free_and_held(env: Env):
    free = subprocess.run(
        slipway_cmd(env, "lock", "testing"), capture_output=True, text=True, check=True
    )
    assert free.stdout.strip() == "testing: free"
    holder = DeployLock(LocalTransport(), env.deployer().layout)
    holder.acquire(actor="carol", ref="v2", reason="deploy")
    try:
        held = subprocess.run(
            slipway_cmd(env, "lock", "testing", "--json"),
            capture_output=True,
            text=True,
            check=True,
        )
        report = json.loads(held.stdout)
        assert report[0]["held"] is True and report[0]["owner"]["owner"] == "carol"
        refused = subprocess.run(
            slipway_cmd(env, "lock", "testing", "--release"), capture_output=True, text=True
        )
        assert refused.returncode == 2 and "--force" in refused.stderr
        forced = subprocess.run(
            slipway_cmd(env, "lock", "testing", "--release", "--force"),
            capture_output=True,
            text=True,
            check=True,
        )
        assert "released lock of carol@" in forced.stdout
        from slipway.state.lock import is_held

        assert not is_held(LocalTransport(), env.deployer().layout)
    finally:
        holder.release()


def test_cli_metrics_from_real_records(env: Env, capsys: pytest.CaptureFixture[str]):
    code, out, err = cli(env, capsys, "metrics", "testing", "--json")
    assert code == 0, err
    [m] = json.loads(out)
    all_rows = records.deployments(LocalTransport(), env.deployer().layout, 1000)
    rows = [r for r in all_rows if r["kind"] == "deploy" and r["finished_at"]]
    assert m["deploys"] == len(rows)
    assert m["successful"] == sum(r["status"] == "succeeded" for r in rows)
    failed = ("failed", "rolled_back", "interrupted")
    assert m["failed"] == sum(r["status"] in failed for r in rows)
    assert m["lead_time_median_s"] is not None and m["lead_time_median_s"] > 0
    assert m["time_to_restore_median_s"] is not None
    code, out, _ = cli(env, capsys, "metrics", "testing", "--format", "prometheus")
    assert 'slipway_deploys{env="testing"} ' + str(m["deploys"]) in out
    code, out, _ = cli(env, capsys, "metrics", "testing", "--format", "csv")
    assert out.splitlines()[1].startswith("testing,30.0,")
    code, out, _ = cli(env, capsys, "metrics")
    assert "\ntesting (last 30 days):" in out  # every deployed environment
    assert out.startswith("staging (last 30 days): 0 successful of 0 deploys")
    code, _, err = cli(env, capsys, "metrics", "testing", "--since", "soon")
    assert code == 2 and "invalid duration 'soon'" in err


def test_dashboard_overview_of_a_real_environment(env: Env):
    from slipway.dashboard.data import overview

    data = overview(env.loaded)
    testing = next(e for e in data["environments"] if e["name"] == "testing")
    assert testing["current"] == env.health()["release"]
    assert testing["health"]["ok"] is True
    assert {c["name"] for c in testing["health"]["checks"]} == {"api"}
    all_rows = records.deployments(LocalTransport(), env.deployer().layout, 1000)
    deploys = [r for r in all_rows if r["kind"] == "deploy" and r["finished_at"]]
    assert testing["metrics"]["deploys"] == len(deploys)
    assert testing["backups"] and testing["backups"][0]["name"].endswith(".db")
    assert SECRET not in json.dumps(data, default=str)


def test_cli_health_report_and_exit_codes(env: Env, capsys: pytest.CaptureFixture[str]):
    code, out, err = cli(env, capsys, "health", "testing", "--json")
    assert code == 0, err
    [report] = json.loads(out)
    assert report["level"] == "basic" and report["ok"] is True
    assert [c["name"] for c in report["checks"]] == ["api"]
    assert report["checks"][0]["latency_ms"] > 0
    code, out, _ = cli(env, capsys, "health", "testing", "--level", "comprehensive")
    # The backend-only test app has no frontend: the comprehensive level runs api,
    # database, agents, websocket, the process manager and disk space; all pass on v2.
    assert code == 0, out
    assert [line.split()[1] for line in out.splitlines()] == [
        "api",
        "database",
        "agents",
        "websocket",
        "processes",
        "disk",
    ]
    code, out, _ = cli(env, capsys, "health", "staging")  # nothing runs there
    assert code == 1 and out.startswith("FAIL api")


def test_a_config_typo_in_a_new_release_cannot_break_the_way_back(env: Env, tmp_path: Path):
    """The new release's start command names a module that does not exist: it crashes,
    and the automatic rollback starts the previous release from its own run spec."""
    live = env.health()["release"]
    typo = env.config_path.read_text().replace(
        '"codeframe_mini.server"', '"codeframe_mini.serverr"'
    )
    assert typo != env.config_path.read_text()
    typo_path = env.config_path.with_name("slipway-typo.toml")
    typo_path.write_text(typo)
    try:
        d = Deployer(load_config(typo_path), "testing", LocalTransport(), actor="tester")
        with pytest.raises(DeployFailed) as info:
            d.deploy("v2")
    finally:
        typo_path.unlink()
    assert info.value.rolled_back, info.value
    assert env.health()["release"] == live
    spec = json.loads((env.root / "testing" / "releases" / live / ".slipway-run.json").read_text())
    assert spec["processes"]["backend"]["start"][2] == "codeframe_mini.server"
    assert "API_TOKEN" in spec["env_keys"] and SECRET not in json.dumps(spec)
