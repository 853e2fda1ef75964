"""The CLI's foundation commands: check, init, schema, help and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from apprepo import make_repo, write_config
from support import EXAMPLE_APP, run_cli

from slipway.config import load_config

EXAMPLE_CONFIG = EXAMPLE_APP / "slipway.toml"


def test_check_prints_a_summary_of_every_environment(capsys):
    code, out, _ = run_cli(["--config", str(EXAMPLE_CONFIG), "check"], capsys)
    assert code == 0
    assert out.startswith(f"{EXAMPLE_CONFIG}: valid\n")
    assert "ports:      backend 14200, frontend 14100" in out
    assert "ports:      backend 8200, frontend 8100" in out
    assert "deploy:     manual (approval required); branches main" in out
    assert "backups:    before each deploy, kept 30 days (at least the last 5)" in out


def test_check_one_environment_as_json(capsys):
    code, out, _ = run_cli(
        ["--config", str(EXAMPLE_CONFIG), "check", "production", "--json"], capsys
    )
    assert code == 0
    data = json.loads(out)
    assert list(data["environments"]) == ["production"]
    assert data["environments"]["production"]["ports"] == {"backend": 8200, "frontend": 8100}
    assert data["environments"]["production"]["strategy"] == "blue-green"


def test_unknown_environment_is_usage_error_with_hint(capsys):
    code, _, err = run_cli(["--config", str(EXAMPLE_CONFIG), "check", "prod"], capsys)
    assert code == 2
    assert err == (
        "error: unknown environment 'prod'\n"
        "hint: environments in this configuration: development, production, staging\n"
    )


def test_invalid_config_prints_every_issue_without_traceback(tmp_path: Path, capsys):
    bad = tmp_path / "slipway.toml"
    text = EXAMPLE_CONFIG.read_text().replace(
        'root = "/srv/codeframe-mini"', "root = 'relative'", 1
    )
    bad.write_text(text.replace('kind = "python"', 'kind = "ruby"'))
    code, out, err = run_cli(["--config", str(bad), "check"], capsys)
    assert code == 2
    assert out == ""
    assert "2 configuration errors" in err
    assert "processes.backend.kind: must be 'python' or 'node'" in err
    assert "environments.staging.root: must be an absolute path" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path: Path, capsys):
    code, _, err = run_cli(["--debug", "--config", str(tmp_path / "none.toml"), "check"], capsys)
    assert code == 2
    assert "Traceback" in err
    assert "file not found" in err


def test_init_reads_the_example_app(tmp_path: Path, capsys):
    app = tmp_path / "app"
    shutil.copytree(
        EXAMPLE_APP, app, ignore=shutil.ignore_patterns("node_modules", ".next", "slipway.toml")
    )
    code, out, _ = run_cli(["init", "--dir", str(app)], capsys)
    assert code == 0, out
    text = (app / "slipway.toml").read_text()
    config = load_config(app / "slipway.toml").config
    backend, frontend = config.processes["backend"], config.processes["frontend"]
    # The app object is made by create_app(): uvicorn calls the factory.
    assert backend.start[3:5] == ["codeframe_mini.server:create_app", "--factory"]
    assert "codeframe_mini/server.py" in text  # where the app object was found
    assert backend.database_env == "DATABASE_PATH"
    assert config.health.websocket is not None and config.health.websocket.path == "/ws"
    assert frontend.workdir == "web-ui"
    assert set(frontend.build_env) >= {"NEXT_PUBLIC_API_URL"}
    code, _, err = run_cli(["init", "--dir", str(app)], capsys)
    assert code == 2
    assert "already exists" in err and "--force" in err
    assert run_cli(["init", "--dir", str(app), "--force"], capsys)[0] == 0


def test_init_leaves_a_todo_where_it_finds_no_app_and_check_lists_it(tmp_path: Path, capsys):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "codeframe"\n')
    (tmp_path / "codeframe" / "ui").mkdir(parents=True)
    (tmp_path / "codeframe" / "ui" / "server.py").write_text("")
    code, out, _ = run_cli(["init", "--dir", str(tmp_path)], capsys)
    assert code == 0
    assert "todo: no FastAPI app found" in out
    text = (tmp_path / "slipway.toml").read_text()
    assert "TODO(slipway): no FastAPI app found" in text
    assert 'name = "codeframe"' in text
    code, out, _ = run_cli(["--config", str(tmp_path / "slipway.toml"), "check"], capsys)
    assert code == 0
    assert "todo: " in out and "no FastAPI app found" in out


def test_init_rejects_broken_pyproject(tmp_path: Path, capsys):
    (tmp_path / "pyproject.toml").write_text("[project\n")
    code, _, err = run_cli(["init", "--dir", str(tmp_path)], capsys)
    assert code == 2
    assert "not valid TOML" in err


def test_schema_is_json_schema_with_every_section(capsys):
    code, out, _ = run_cli(["schema"], capsys)
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["properties"]) == {
        "project",
        "processes",
        "environments",
        "health",
        "notify",
        "gates",
        "migrations",
    }
    assert schema["additionalProperties"] is False


def test_help_teaches_commands_and_exit_codes(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    for word in ("check", "init", "schema", "Exit codes:", "3    another deploy holds"):
        assert word in out


def test_unknown_command_is_exit_2(capsys):
    code, _, err = run_cli(["nope"], capsys)
    assert code == 2
    assert "No such command" in err


def test_console_script_runs_and_reports_version():
    exe = Path(sys.executable).with_name("slipway")
    result = subprocess.run(
        [str(exe), "--version"], capture_output=True, text=True, check=False, env=os.environ
    )
    assert result.returncode == 0
    assert result.stdout.strip() == "slipway, version 0.1.0"


def test_plan_of_blue_green_production(capsys):
    code, out, _ = run_cli(["--config", str(EXAMPLE_CONFIG), "plan", "production"], capsys)
    assert code == 0
    steps = [line.split()[1] for line in out.splitlines()[:12]]
    assert steps[7:] == ["start", "health", "switch", "watch", "promote"]
    assert "blue 8201/8101, green 8202/8102" in out
    assert "traefik on ports 8200/8100" in out
    assert "traffic switches back to the old colour" in out


def test_plan_of_a_breaking_release_adds_the_hold_before_the_backup(capsys, tmp_path):
    code, out, _ = run_cli(
        ["--config", str(EXAMPLE_CONFIG), "plan", "production", "--breaking"], capsys
    )
    assert code == 0
    steps = [line.split()[1] for line in out.splitlines()[:13]]
    assert steps[4:9] == ["build", "rehearse", "hold", "backup", "start"]
    assert "traefik -> a holding proxy" in out and "deadline 60s" in out
    # Listed in the configuration by glob: the restart strategy stops the writers instead.
    config = tmp_path / "slipway.toml"
    config.write_text(
        EXAMPLE_CONFIG.read_text() + '\n[migrations]\nbreaking = ["v3*"]\nhold_seconds = 30\n'
    )
    code, out, _ = run_cli(["--config", str(config), "plan", "staging", "--ref", "v3.1"], capsys)
    assert code == 0
    assert "hold     breaking migrations: stop codeframe-mini-staging-backend" in out
    code, out, _ = run_cli(["--config", str(config), "plan", "staging", "--ref", "v2"], capsys)
    assert "breaking migrations" not in out and code == 0


def test_plan_prints_steps_without_running(capsys):
    code, out, _ = run_cli(
        ["--config", str(EXAMPLE_CONFIG), "plan", "staging", "--ref", "v1"], capsys
    )
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[1] for line in lines[:10]] == [
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
    assert "git archive of v1 -> /srv/codeframe-mini/staging/releases/<release>/" in out
    assert "stop codeframe-mini-staging-backend, codeframe-mini-staging-frontend" in out


def test_standby_needs_a_blue_green_environment(capsys):
    code, _, err = run_cli(["--config", str(EXAMPLE_CONFIG), "standby", "staging"], capsys)
    assert code == 2
    assert "staging does not use the blue-green strategy" in err


def test_a_command_exit_code_reaches_the_caller(monkeypatch, capsys):
    import click

    from slipway.cli import main as main_module

    @click.command(name="fails")
    def fails() -> None:
        raise click.exceptions.Exit(1)

    monkeypatch.setitem(main_module.COMMANDS, "fails", ("tests_fake", "x"))
    monkeypatch.setattr(main_module.LazyGroup, "get_command", lambda self, ctx, name: fails)
    assert main_module.main(["fails"]) == 1


def test_an_actor_with_a_newline_is_refused_before_anything_changes(tmp_path: Path, capsys):
    """`--actor $'x\\n2026-11-30 09:00:00  alice  deploy.succeeded'` once forged a
    line of `slipway audit`."""
    repo = make_repo(tmp_path / "repo")
    root = tmp_path / "srv"
    config = write_config(repo, root)
    forged = "x\n2026-11-30 09:00:00  alice  deploy.succeeded"
    code, _, err = run_cli(
        ["--config", str(config), "deploy", "testing", "--ref", "v1", "--actor", forged], capsys
    )
    assert code == 2, err
    assert "invalid actor" in err and "one line" in err
    assert "Traceback" not in err
    assert not (root / "testing" / ".slipway").exists()  # no lock, no record
