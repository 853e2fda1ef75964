"""GitHub integration: generated workflows (valid, and triggering exactly as the
design's Appendix B says), preflight, releases, gates, the PR comment, deployment
statuses, all against a local stand-in for the GitHub API."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from apprepo import git, make_repo, write_config, write_env_file
from fakegithub import TOKEN, FakeGitHub, fake_github
from ghtriggers import Event, load, started
from support import TOOLS_BIN, require_binary, run_cli, stop_pm2, workflow_problems

from slipway.config import load_config
from slipway.github import workflows

BIN = Path(sys.executable).parent
CI, STAGING, PRODUCTION = "CI Tests", "Deploy Staging", "Deploy Production"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("gh") / "repo")
    write_config(repo, repo.parent / "srv")
    code = subprocess.run(
        [str(BIN / "slipway"), "init", "--github", "--dir", str(repo)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert code.returncode == 0, code.stderr
    return repo / ".github" / "workflows"


def test_init_github_writes_the_three_workflows_once(generated: Path, capsys):
    assert sorted(p.name for p in generated.glob("*.yml")) == sorted(workflows.WORKFLOWS)
    code, _, err = run_cli(["init", "--github", "--dir", str(generated.parents[1])], capsys)
    assert code == 2 and "already has ci-tests.yml" in err and "--force" in err
    spec = "slipway @ git+https://github.com/acme/slipway@v0.1.0"
    code, out, _ = run_cli(
        ["init", "--github", "--force", "--slipway-spec", spec, "--dir", str(generated.parents[1])],
        capsys,
    )
    assert code == 0 and "deploy-production.yml" in out
    assert f'python -m pip install "{spec}"' in (generated / "deploy-staging.yml").read_text()


@pytest.mark.parametrize("name", workflows.WORKFLOWS)
def test_generated_workflows_pass_actionlint_and_the_schema(generated: Path, name: str):
    assert workflow_problems(generated / name) == []


def push(ref: str) -> list[Event]:
    return [Event("push", ref)]


APPENDIX_B = [
    ("push to feature branch", push("refs/heads/feature/login"), {CI}),
    ("push to staging branch", push("refs/heads/staging"), {CI, STAGING}),
    ("push to development branch", push("refs/heads/development"), {CI, STAGING}),
    ("push to main branch", push("refs/heads/main"), {CI}),
    (
        "pull request opened",
        [Event("pull_request", "refs/pull/7/merge", "opened", "main", "feature/x")],
        {CI},
    ),
    (
        "pull request merged to main",
        [
            Event("pull_request", "refs/pull/7/merge", "closed", "main", "feature/x"),
            *push("refs/heads/main"),
        ],
        {CI},
    ),
    (
        "manual workflow dispatch",
        [Event("workflow_dispatch", "refs/heads/main")],
        {CI, STAGING, PRODUCTION},
    ),
    ("tag pushed (v*.*.*)", push("refs/tags/v1.2.3"), {CI}),
]


@pytest.mark.parametrize("row, events, expected", APPENDIX_B, ids=[r[0] for r in APPENDIX_B])
def test_trigger_matrix_is_appendix_b(
    generated: Path, row: str, events: list[Event], expected: set[str]
):
    assert started(load(generated), events) == expected


def test_what_appendix_b_implies_beyond_its_rows(generated: Path):
    flows = load(generated)
    # A PR from the staging branch runs CI, but CI on a PR is not a staging deploy.
    pr = Event("pull_request", "refs/pull/8/merge", "opened", "main", "staging")
    assert started(flows, [pr]) == {CI}
    # Production can only be dispatched from main.
    assert started(flows, [Event("workflow_dispatch", "refs/heads/feature/x")]) == {CI, STAGING}


def test_the_evaluator_catches_a_workflow_that_triggers_wrongly(generated: Path, tmp_path: Path):
    for path in generated.glob("*.yml"):
        (tmp_path / path.name).write_text(path.read_text())
    wrong = tmp_path / "deploy-production.yml"
    data = yaml.safe_load(wrong.read_text())
    data[True]["push"] = {"branches": ["main"]}
    data["jobs"]["deploy"].pop("if")
    wrong.write_text(yaml.safe_dump(data))
    assert started(load(tmp_path), push("refs/heads/main")) == {CI, PRODUCTION}


def test_workflows_use_the_design_secrets_and_never_cancel_a_deploy(generated: Path):
    prod = (generated / "deploy-production.yml").read_text()
    staging = (generated / "deploy-staging.yml").read_text()
    for name in (
        "PRODUCTION_SSH_KEY",
        "PRODUCTION_HOST",
        "PRODUCTION_USER",
        "PRODUCTION_PROJECT_PATH",
    ):
        assert f"secrets.{name}" in prod
    for name in ("STAGING_SSH_KEY", "STAGING_HOST", "STAGING_USER", "STAGING_PROJECT_PATH"):
        assert f"secrets.{name}" in staging
    for text in (prod, staging):
        data = yaml.safe_load(text)
        assert data["concurrency"]["cancel-in-progress"] is False
        assert "chmod 600 ~/.ssh/slipway_deploy" in text and "known_hosts" in text
    assert yaml.safe_load(prod)["jobs"]["deploy"]["environment"]["name"] == "production"
    # Data loss is allowed only through an input the approver sees, never by default.
    inputs = yaml.safe_load(prod)[True]["workflow_dispatch"]["inputs"]
    assert inputs["allow_data_loss"]["default"] == "" and not inputs["allow_data_loss"]["required"]
    assert '--allow-data-loss "$ALLOW_DATA_LOSS"' in prod
    assert "--allow-data-loss" not in staging


# --- against the GitHub stand-in ------------------------------------------------------------


class App:
    """The example app's repo with version tags, deployed to a local environment."""

    def __init__(self, tmp: Path) -> None:
        self.repo = make_repo(tmp / "repo")
        self.root = tmp / "srv"
        git(self.repo, "tag", "v1.0.0", "v1")
        git(self.repo, "tag", "v1.1.0", "v2")
        git(self.repo, "tag", "v9.9.9", "broken/crash")  # not on main
        self.config = write_config(self.repo, self.root, extra_env='deployers = ["alice", "bob"]')
        write_env_file(self.root, "API_TOKEN=gh-secret-5150\n")
        self.loaded = load_config(self.config)

    def sha(self, ref: str) -> str:
        return git(self.repo, "rev-parse", f"{ref}^{{commit}}")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    require_binary("pm2", path=str(TOOLS_BIN))
    a = App(tmp_path_factory.mktemp("ghapp"))
    yield a
    stop_pm2(a.root / "pm2")


@pytest.fixture
def gh(app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    with fake_github(app.repo) as fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        yield fake


def green(gh: FakeGitHub, sha: str) -> None:
    gh.check_runs[sha] = [
        {"name": "Quality gates", "status": "completed", "conclusion": "success", "head_sha": sha},
        {"name": "docs", "status": "completed", "conclusion": "skipped", "head_sha": sha},
    ]


def cli(app: App, capsys, *args: str) -> tuple[int, str, str]:
    return run_cli(["--config", str(app.config), *args], capsys)


@pytest.mark.integration
def test_deploy_reports_a_github_deployment_and_keeps_the_incident(
    app: App, gh: FakeGitHub, capsys, tmp_path: Path
):
    code, _, err = cli(
        app,
        capsys,
        "deploy",
        "testing",
        "--ref",
        "v1.0.0",
        "--github-deployment",
        "--root",
        str(app.root),
        "--host",
        "local",
    )
    assert code == 0, err
    (deployment,) = gh.deployments
    assert deployment["ref"] == "v1.0.0" and deployment["environment"] == "testing"
    assert [s["state"] for s in gh.deployment_statuses] == ["in_progress", "success"]
    incidents = tmp_path / "incidents"
    code, _, err = cli(
        app,
        capsys,
        "deploy",
        "testing",
        "--ref",
        "broken/health500",
        "--github-deployment",
        "--incident-dir",
        str(incidents),
    )
    assert code == 1
    assert [s["state"] for s in gh.deployment_statuses][-1] == "failure"
    (report,) = incidents.glob("*.md")
    text = report.read_text()
    assert "failed deploy" in text and "health" in text and "gh-secret-5150" not in text
    assert report.stat().st_mode & 0o777 == 0o600
    # Nothing earlier than v1.0.0 to roll back to (a usage error, exit 2): reported too.
    code, _, err = cli(app, capsys, "rollback", "testing", "--github-deployment")
    assert code == 2, err
    assert gh.deployment_statuses[-1]["state"] == "failure"
    assert gh.deployment_statuses[-1]["description"].startswith("rollback failed:")
    # With a later release live, the rollback to v1.0.0 is reported as a success.
    code, _, err = cli(app, capsys, "deploy", "testing", "--ref", "v1.1.0")
    assert code == 0, err
    code, out, err = cli(app, capsys, "rollback", "testing", "--github-deployment")
    assert code == 0, err
    assert out.splitlines()[-1].startswith("rolled testing back to ")
    assert gh.deployment_statuses[-1]["state"] == "success"
    assert gh.deployment_statuses[-1]["description"].startswith("rolled back to ")
    assert gh.deployments[-1]["ref"] == app.sha("v1.0.0")


@pytest.mark.integration
def test_preflight_passes_a_good_tag(app: App, gh: FakeGitHub, capsys):
    green(gh, app.sha("v1.1.0"))
    code, out, _ = cli(app, capsys, "preflight", "testing", "--ref", "v1.1.0", "--actor", "alice")
    assert code == 0, out
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["ok", "tag"],
        ["ok", "main"],
        ["ok", "ci"],
        ["ok", "newer"],
        ["ok", "actor"],
        ["ok", "env"],
    ]
    assert "v1.1.0 is newer than the live v1.0.0" in out


@pytest.mark.integration
def test_preflight_refuses_each_problem_with_one_line(app: App, gh: FakeGitHub, capsys):
    def failures(*args: str) -> dict[str, str]:
        code, out, _ = cli(app, capsys, "preflight", "testing", "--json", *args)
        assert code in (0, 1)
        return {f["check"]: f["detail"] for f in json.loads(out) if not f["ok"]}

    green(gh, app.sha("v1.0.0"))
    assert failures("--ref", "v1.0.0", "--actor", "alice") == {
        "newer": "v1.0.0 is not newer than the live v1.0.0"
    }
    green(gh, app.sha("v9.9.9"))
    assert list(failures("--ref", "v9.9.9", "--actor", "alice")) == ["main"]
    sha = app.sha("v1.1.0")
    gh.check_runs[sha] = [{"name": "Quality gates", "status": "completed", "conclusion": "failure"}]
    gh.statuses[sha] = [{"context": "ci/legacy", "state": "pending", "description": ""}]
    assert failures("--ref", "v1.1.0", "--actor", "alice") == {
        "ci": "CI did not pass: Quality gates: failure; ci/legacy: pending"
    }
    gh.check_runs.pop(sha)
    gh.statuses.pop(sha)
    assert failures("--ref", "v1.1.0", "--actor", "alice")["ci"].startswith("no CI result for")
    green(gh, sha)
    assert failures("--ref", "v1.1.0", "--actor", "mallory") == {
        "actor": "mallory is not in testing's deployers (alice, bob)"
    }
    assert (
        failures("--ref", "main", "--actor", "alice")["tag"]
        == "'main' is not a version tag like v1.2.3"
    )
    write_env_file(app.root, "OTHER=1\n")
    try:
        assert failures("--ref", "v1.1.0", "--actor", "bob") == {
            "env file": "the env file lacks: API_TOKEN"
        }
    finally:
        write_env_file(app.root, "API_TOKEN=gh-secret-5150\n")


def test_github_errors_are_clear(tmp_path: Path, monkeypatch, capsys):
    repo = make_repo(tmp_path / "repo")
    config = write_config(repo, tmp_path / "srv")
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/x")
    code, _, err = run_cli(["--config", str(config), "release", "create", "v1.0.0"], capsys)
    assert code == 1 and "GITHUB_TOKEN not set" in err
    with fake_github(repo) as fake:
        monkeypatch.setenv("GITHUB_TOKEN", "wrong-token-value")
        monkeypatch.setenv("GITHUB_API_URL", fake.url)
        monkeypatch.setenv("GITHUB_REPOSITORY", fake.repository)
        git(repo, "tag", "v1.0.0", "v1")
        code, _, err = run_cli(["--config", str(config), "release", "create", "v1.0.0"], capsys)
    assert code == 1 and "401 Bad credentials" in err and "wrong-token-value" not in err


def test_release_notes_list_the_commits_since_the_previous_tag(tmp_path: Path, monkeypatch, capsys):
    repo = make_repo(tmp_path / "repo")
    config = write_config(repo, tmp_path / "srv")
    git(repo, "tag", "v1.0.0", "v1")
    git(repo, "tag", "v1.1.0", "v3")
    with fake_github(repo) as fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        code, out, _ = run_cli(["--config", str(config), "release", "create", "v1.1.0"], capsys)
        assert code == 0 and "releases/tag/v1.1.0" in out
        (release,) = fake.releases
        again, _, err = run_cli(["--config", str(config), "release", "create", "v1.1.0"], capsys)
    subjects = git(repo, "log", "--format=%s", "v1.0.0..v1.1.0").splitlines()
    assert release["tag_name"] == "v1.1.0" and release["body"].startswith("## Changes since v1.0.0")
    assert all(f"- {s} (" in release["body"] for s in subjects) and len(subjects) == 2
    assert again == 1 and "422 Validation Failed" in err
    assert TOKEN not in err


def write_gates_project(path: Path, base_tests: bool = True) -> Path:
    """A tiny Python project with slipway gates configured, in a git repo."""
    path.mkdir()
    (path / "pkg").mkdir()
    (path / "pkg" / "__init__.py").write_text("")
    (path / "pkg" / "core.py").write_text("def add(a, b):\n    return a + b\n")
    (path / "tests").mkdir()
    (path / "tests" / "test_core.py").write_text(
        "from pkg.core import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    )
    py = sys.executable
    (path / "slipway.toml").write_text(f"""
[project]
name = "tiny"
[processes.backend]
kind = "python"
start = ["{py}", "-m", "http.server", "{{port}}"]
port = "backend"
[environments.staging]
root = "/srv/tiny"
[gates]
frontend_build = false
coverage_min = 80
new_code_min = 90
critical = {{ "pkg/core.py" = 95 }}
[gates.commands]
lint = ["{py}", "-c", "print('ok')"]
tests = ["{py}", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--cov=pkg", "--cov-report=xml", "tests"]
""")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "base"]):
        git(path, *args)
    return path


def test_gates_judge_coverage_overall_critical_and_new_code(tmp_path: Path, capsys, monkeypatch):
    project = write_gates_project(tmp_path / "tiny")
    monkeypatch.chdir(project)
    code, out, _ = run_cli(["gates", "--output", "gates.json", "--base", "main"], capsys)
    assert code == 0, out
    assert "### Quality gates passed" in out and "| new code | ✅" in out
    git(project, "checkout", "-q", "-b", "feature")
    (project / "pkg" / "core.py").write_text(
        "def add(a, b):\n    return a + b\n\n\ndef untested(x):\n    if x:\n        return 1\n    return 2\n"
    )
    git(project, "commit", "-qam", "untested code")
    summary = tmp_path / "summary.md"
    code, out, _ = run_cli(
        [
            "gates",
            "--output",
            "gates.json",
            "--base",
            "main",
            "--summary",
            str(summary),
            "--annotations",
        ],
        capsys,
    )
    report = json.loads((project / "gates.json").read_text())
    assert code == 1 and report["ok"] is False
    assert report["new_lines"] == 4 and report["new_code"] == 25.0  # only the def line ran
    assert report["critical"] == {"pkg/core.py": 50.0}
    # Workflow-command data escapes % as %25 (GitHub turns it back).
    assert "::error title=gate new code failed::25.0%25 of 4 new lines (minimum 90%25)" in out
    assert "### Quality gates FAILED" in summary.read_text()


def test_pr_comment_is_created_once_then_updated_with_a_coverage_warning(
    tmp_path: Path, capsys, monkeypatch
):
    repo = make_repo(tmp_path / "repo")
    write_config(repo, tmp_path / "srv")
    gates_file = tmp_path / "gates.json"
    result = {
        "gates": [{"name": "tests", "ok": True, "seconds": 3.0, "detail": ""}],
        "coverage": 84.5,
        "critical": {},
        "new_code": 95.0,
        "new_lines": 20,
    }
    gates_file.write_text(json.dumps(result))
    base_sha = git(repo, "rev-parse", "main")
    with fake_github(repo) as fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(repo)
        base = {**result, "coverage": 86.0}
        (tmp_path / "base.json").write_text(json.dumps(base))
        code, _out, _ = run_cli(
            [
                "github",
                "coverage-status",
                "--gates",
                str(tmp_path / "base.json"),
                "--sha",
                base_sha,
            ],
            capsys,
        )
        assert code == 0
        args = [
            "github",
            "pr-comment",
            "--pr",
            "12",
            "--gates",
            str(gates_file),
            "--base-sha",
            base_sha,
        ]
        code, first, _ = run_cli(args, capsys)
        code2, second, _ = run_cli(args, capsys)
    assert code == code2 == 0
    assert first.startswith("created comment") and second.startswith("updated comment")
    (comment,) = fake.comments[12]
    assert comment["body"].startswith("<!-- slipway:gates -->")
    assert "Coverage 84.5% against 86.0% on the base branch (-1.50)" in comment["body"]
    assert "[!WARNING]" in comment["body"]
    assert fake.statuses[base_sha][0]["description"] == "coverage 86.0%"
    assert [m for m, p, _ in fake.requests if "comments" in p] == ["GET", "POST", "GET", "PATCH"]


def test_api_pages_through_long_lists_and_updates_the_marked_comment(tmp_path: Path):
    from slipway.gates import Gate, Report
    from slipway.github.api import GitHub
    from slipway.github.report import MARKER, upsert_comment
    from slipway.secrets import Secret

    repo = make_repo(tmp_path / "repo")
    with fake_github(repo) as fake:
        fake.comments[3] = [
            {"id": i, "body": f"chatter {i}", "user": {"login": "someone"}} for i in range(150)
        ]
        fake.comments[3].append({"id": 999, "body": f"{MARKER}\nold", "user": {"login": "bot"}})
        client = GitHub(fake.repository, Secret(TOKEN), fake.url)
        assert len(client.issue_comments(3)) == 151
        report = Report([Gate("tests", False, 1.0, "1 failed")], coverage=70.0)
        assert upsert_comment(client, 3, report, None) == ("updated", 999)
    assert "### Quality gates FAILED" in fake.comments[3][-1]["body"]
    pages = [p for m, p, _ in fake.requests if p.endswith("/issues/3/comments")]
    assert len(pages) == 4  # 100 + 51, twice (the test's own listing, then upsert's)


def test_api_refuses_a_bad_repository_name():
    from slipway.errors import SlipwayError
    from slipway.github.api import GitHub
    from slipway.secrets import Secret

    with pytest.raises(SlipwayError, match="owner/name"):
        GitHub("just-a-name", Secret("t"))


def test_host_root_and_key_overrides_are_validated(tmp_path: Path, capsys):
    repo = make_repo(tmp_path / "repo")
    config = write_config(repo, tmp_path / "srv")
    base = ["--config", str(config), "deploy", "testing"]
    code, _, err = run_cli([*base, "--host", "deploy@bad host"], capsys)
    assert code == 2
    assert "--host/--root/--ssh-key: hosts.0: must be 'local' or 'user@host:port'" in err
    code, _, err = run_cli([*base, "--root", "relative/path"], capsys)
    assert code == 2 and "root: must be an absolute path" in err
