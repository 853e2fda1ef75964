"""Configuration: the design's defaults, and exact errors for broken files."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from slipway.config import load_config, validate_config
from slipway.config.model import HealthLevel, Strategy, parse_host
from slipway.errors import ConfigError

# The example app's configuration (CodeFRAME-shaped, the design's defaults) as a base.
STARTER = (
    (Path(__file__).resolve().parents[1] / "examples" / "codeframe-mini" / "slipway.toml")
    .read_text()
    .replace('name = "codeframe-mini"', 'name = "codeframe"')
    .replace("codeframe_mini.server", "codeframe.ui.server")
)


def base() -> dict[str, Any]:
    return copy.deepcopy(tomllib.loads(STARTER))


def errors_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    return [issue.render() for issue in info.value.issues]


def test_starter_is_valid_and_carries_the_design_defaults():
    config = validate_config(base())
    dev, staging, prod = (config.environments[n] for n in ("development", "staging", "production"))
    assert (dev.ports.backend, dev.ports.frontend) == (8000, 3000)
    assert dev.database == ".codeframe/state.db"
    assert dev.deploy.value == "none"
    assert (staging.ports.backend, staging.ports.frontend) == (14200, 14100)
    assert staging.database == "staging/.codeframe/state.db"
    assert staging.branches == ["staging", "development"]
    assert staging.deploy.value == "automatic"
    assert staging.env_file == ".env.staging"
    assert staging.health is HealthLevel.BASIC
    assert staging.strategy is Strategy.RESTART
    assert (prod.ports.backend, prod.ports.frontend) == (8200, 8100)
    assert prod.database == "production/.codeframe/state.db"
    assert prod.branches == ["main"]
    assert prod.approval is True
    assert prod.health is HealthLevel.COMPREHENSIVE
    assert prod.strategy is Strategy.BLUE_GREEN
    assert prod.backups.enabled and prod.backups.retention_days == 30
    assert prod.env_file == ".env.production"


def test_blue_green_colour_ports_default_from_the_public_ones():
    prod = validate_config(base()).environments["production"]
    colors = prod.blue_green.color_ports(prod.ports)
    assert (colors["blue"].backend, colors["blue"].frontend) == (8201, 8101)
    assert (colors["green"].backend, colors["green"].frontend) == (8202, 8102)
    assert prod.blue_green.api(prod.ports) == 8209
    assert prod.blue_green.router.value == "traefik"


def test_user_values_override_defaults_key_by_key():
    raw = base()
    raw["environments"]["production"]["ports"] = {"backend": 9200}
    config = validate_config(raw)
    assert config.environments["production"].ports.backend == 9200
    assert config.environments["production"].ports.frontend == 8100


def mutate(path: str, value: Any) -> dict[str, Any]:
    """Set (or with value DELETE, remove) a dotted path in a fresh base config."""
    raw = base()
    *parents, last = path.split(".")
    node: Any = raw
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return raw


DELETE = object()

BROKEN: list[tuple[str, Any, str]] = [
    (
        "environments.production.ports.backend",
        "8200",
        "environments.production.ports.backend: must be an integer from 1 to 65535",
    ),
    (
        "environments.production.ports.backend",
        0,
        "environments.production.ports.backend: must be an integer from 1 to 65535",
    ),
    (
        "environments.production.ports.backend",
        70000,
        "environments.production.ports.backend: must be an integer from 1 to 65535",
    ),
    (
        "environments.staging.ports.frontend",
        True,
        "environments.staging.ports.frontend: must be an integer from 1 to 65535",
    ),
    (
        "environments.staging.ports.frontend",
        14200,
        "environments.staging.ports: backend and frontend must use different ports",
    ),
    (
        "environments.staging.prots",
        {"backend": 1},
        "environments.staging.prots: unknown key (did you mean 'ports'?)",
    ),
    ("project.nmae", "x", "project.nmae: unknown key (did you mean 'name'?)"),
    (
        "processes.backend.strat",
        ["x"],
        "processes.backend.strat: unknown key (did you mean 'start'?)",
    ),
    (
        "project.name",
        "Code Frame",
        "project.name: must be lowercase letters, digits and '-', starting with a letter (at most 40)",
    ),
    ("project.name", DELETE, "project.name: is required"),
    ("processes.backend.start", [], "processes.backend.start: must not be empty"),
    ("processes.backend.start", "python -m app", "processes.backend.start: must be a list"),
    ("processes.backend.kind", "ruby", "processes.backend.kind: must be 'python' or 'node'"),
    (
        "processes.backend.workdir",
        "../outside",
        "processes.backend.workdir: must be a relative path inside the project, without '..'",
    ),
    ("processes.frontend.port", "backend", "processes.frontend.port must be 'frontend'"),
    (
        "processes.backend.port_env",
        "backend-port",
        "processes.backend.port_env: must be an environment variable name like API_KEY (A-Z, 0-9, _)",
    ),
    (
        "environments.staging.hosts",
        ["deploy@host; rm -rf /"],
        "environments.staging.hosts[0]: must be 'local' or 'user@host:port' (e.g. deploy@10.0.0.5:22)",
    ),
    (
        "environments.staging.hosts",
        ["deploy@$(whoami):22"],
        "environments.staging.hosts[0]: must be 'local' or 'user@host:port' (e.g. deploy@10.0.0.5:22)",
    ),
    (
        "environments.staging.hosts",
        ["deploy@host:99999"],
        "environments.staging.hosts[0]: must be an integer from 1 to 65535",
    ),
    (
        "environments.staging.hosts",
        ["local", "local"],
        "environments.staging: hosts must not repeat",
    ),
    (
        "environments.staging.root",
        "srv/app",
        "environments.staging.root: must be an absolute path without '..' (for example /srv/codeframe)",
    ),
    (
        "environments.staging.root",
        "/srv/../etc",
        "environments.staging.root: must be an absolute path without '..' (for example /srv/codeframe)",
    ),
    (
        "environments.staging.root",
        DELETE,
        "environments.staging: 'root' is required for an environment that is deployed",
    ),
    (
        "environments.staging.branches",
        ["main branch"],
        "environments.staging.branches[0]: must be a git branch name or pattern (letters, digits,"
        " '.', '_', '-', '/', '*'; no '..', spaces or shell characters)",
    ),
    (
        "environments.staging.branches",
        ["x/../y"],
        "environments.staging.branches[0]: must be a git branch name or pattern (letters, digits,"
        " '.', '_', '-', '/', '*'; no '..', spaces or shell characters)",
    ),
    (
        "environments.staging.deploy",
        "sometimes",
        "environments.staging.deploy: must be 'none', 'automatic' or 'manual'",
    ),
    (
        "environments.staging.strategy",
        "rolling",
        "environments.staging.strategy: must be 'direct', 'restart', 'blue-green' or 'canary'",
    ),
    (
        "environments.production.blue_green.blue",
        {"backend": 8200, "frontend": 8101},
        "environments.production: blue_green.blue.backend and ports.backend are both port 8200",
    ),
    (
        "environments.production.blue_green.api_port",
        8202,
        "environments.production: blue_green.green.backend and blue_green.api_port are both"
        " port 8202",
    ),
    (
        "environments.production.blue_green.router",
        "haproxy",
        "environments.production.blue_green.router: must be 'traefik' or 'nginx'",
    ),
    (
        "environments.production.blue_green.bind",
        "0.0.0.0; rm -rf /",
        "environments.production.blue_green.bind: must be an IP address to listen on,"
        " e.g. 127.0.0.1 or 0.0.0.0",
    ),
    (
        "environments.production.blue_green.router_binary",
        "traefik --evil",
        "environments.production.blue_green.router_binary: must be a command name or an"
        " absolute path (letters, digits, ./_+-)",
    ),
    (
        "environments.production.blue_green.standby_seconds",
        -1,
        "environments.production.blue_green.standby_seconds: must be greater than or equal to 0",
    ),
    (
        "environments.staging.keep_releases",
        1,
        "environments.staging.keep_releases: must be greater than or equal to 2",
    ),
    (
        "environments.staging.required_env",
        ["API KEY"],
        "environments.staging.required_env[0]: must be an environment variable name like API_KEY"
        " (A-Z, 0-9, _)",
    ),
    (
        "environments.staging.env_file",
        "/etc/passwd",
        "environments.staging.env_file: must be a relative path inside the project, without '..'",
    ),
    (
        "environments.staging.database",
        "../../state.db",
        "environments.staging.database: must be a relative path inside the project, without '..'",
    ),
    (
        "environments.production.backups.retention_days",
        0,
        "environments.production.backups.retention_days: must be greater than or equal to 1",
    ),
    (
        "environments.production.ssh.verify_host_keys",
        "no",
        "environments.production.ssh.verify_host_keys: must be true or false",
    ),
    ("environments.production.ssh", "key.pem", "environments.production.ssh: must be a table"),
    ("health.passes", 0, "health.passes: must be greater than or equal to 1"),
    ("health.deadline_seconds", "soon", "health.deadline_seconds: must be a number"),
    (
        "health.basic.0.path",
        "health",
        "health.basic[0].path: must match the pattern '^/[A-Za-z0-9._~/?=&-]*$'",
    ),
    (
        "health.basic.0.expect_status",
        700,
        "health.basic[0].expect_status: must be less than or equal to 599",
    ),
    (
        "environments.qa",
        {"hosts": ["local"], "root": "/srv/x"},
        "environments.qa.database: is required",
    ),
    (
        "environments.Prod",
        {"database": "x.db"},
        "environments.Prod (name): must be lowercase letters, digits and '-', starting with a letter"
        " (at most 40)",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "expected"), BROKEN, ids=[b[0] + "=" + repr(b[1])[:20] for b in BROKEN]
)
def test_broken_configuration_reports_exact_location_and_message(path, value, expected):
    assert expected in errors_of(mutate(path, value))


def test_there_are_at_least_25_broken_cases():
    assert len(BROKEN) >= 25


def test_several_errors_are_reported_at_once():
    raw = mutate("environments.production.ports.backend", "x")
    raw["project"]["nmae"] = "y"
    raw["environments"]["staging"]["strategy"] = "rolling"
    issues = errors_of(raw)
    assert len(issues) == 3
    assert issues == sorted(issues, key=issues.index)  # stable order


def test_unknown_key_far_from_any_lists_known_keys():
    issues = errors_of(mutate("project.zzzzzz", 1))
    assert issues == ["project.zzzzzz: unknown key (known keys: name, repository)"]


def test_error_message_names_the_file(tmp_path: Path):
    path = tmp_path / "slipway.toml"
    path.write_text(STARTER.replace('kind = "python"', 'kind = "ruby"'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: 1 configuration error\n")
    assert "processes.backend.kind: must be 'python' or 'node'" in str(info.value)
    assert info.value.exit_code == 2


def test_invalid_toml_is_located(tmp_path: Path):
    path = tmp_path / "slipway.toml"
    path.write_text("[project\nname = 1\n")
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 1"):
        load_config(path)


def test_missing_file_and_search(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as info:
        load_config(cwd=tmp_path)
    assert info.value.hint == "run 'slipway init' to write a starter configuration"


def test_found_in_parent_directory_and_in_pyproject(tmp_path: Path):
    (tmp_path / "slipway.toml").write_text(STARTER)
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert load_config(cwd=sub).path == tmp_path / "slipway.toml"

    other = tmp_path / "other"
    other.mkdir()
    table = STARTER.replace("[project]", "[tool.slipway.project]")
    for section in ("processes.", "health", "environments."):
        table = table.replace(f"[{section}", f"[tool.slipway.{section}")
        table = table.replace(f"[[{section}", f"[[tool.slipway.{section}")
    (other / "pyproject.toml").write_text('[project]\nname = "x"\n\n' + table)
    loaded = load_config(cwd=other)
    assert loaded.path.name == "pyproject.toml"
    assert loaded.config.project.name == "codeframe"


def test_pyproject_without_table_is_an_error(tmp_path: Path):
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"tool\.slipway: table is missing"):
        load_config(path)


def test_unknown_environment_lists_known_ones():
    from slipway.errors import UsageError

    config = validate_config(base())
    with pytest.raises(UsageError) as info:
        config.environment("prod")
    assert info.value.hint == "environments in this configuration: development, production, staging"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("local", "local"),
        ("deploy@10.0.0.5", "deploy@10.0.0.5:22"),
        ("deploy@host.example.com:2222", "deploy@host.example.com:2222"),
        ("[::1]:22", "[::1]:22"),
        ("example.org", "example.org:22"),
    ],
)
def test_parse_host(text, expected):
    assert str(parse_host(text)) == expected


def test_repository_path_local_and_url(tmp_path: Path):
    (tmp_path / "slipway.toml").write_text(STARTER)
    loaded = load_config(tmp_path / "slipway.toml")
    assert loaded.repository_path() == tmp_path.resolve()
    raw = base()
    raw["project"]["repository"] = "https://example.org/app.git"
    from slipway.config.load import LoadedConfig

    assert LoadedConfig(validate_config(raw), tmp_path / "x").repository_path() is None


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("project.name", "app\n"),
        ("environments.staging.branches", ["main\n"]),
        ("environments.staging.hosts", ["deploy@host\n"]),
        ("environments.staging.required_env", ["KEY\n"]),
    ],
)
def test_trailing_newline_is_not_smuggled_past_patterns(path, value):
    assert errors_of(mutate(path, value))


def test_breaking_releases_match_refs_globs_and_commit_prefixes():
    raw = base()
    raw["migrations"] = {"breaking": ["v3.0.0", "v4.*", "abc1234"], "hold_seconds": 45}
    migrations = validate_config(raw).migrations
    assert migrations.hold_seconds == 45
    commit = "abc1234def" + "0" * 30
    assert migrations.is_breaking("v3.0.0", "f" * 40)
    assert migrations.is_breaking("v4.1.2", "f" * 40)
    assert migrations.is_breaking("main", commit)  # by commit prefix, whatever the ref
    assert not migrations.is_breaking("v3.0.1", "f" * 40)
    assert not migrations.is_breaking("v5", "f" * 40)
    # A short hex entry is a ref name, not a commit prefix (too many commits share it).
    raw["migrations"] = {"breaking": ["abc"]}
    assert not validate_config(raw).migrations.is_breaking("main", commit)
    assert not validate_config(base()).migrations.is_breaking("v1", commit)  # default: none


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"breaking": ["v3 .0"]}, "migrations.breaking[0]: must be a tag, ref, glob"),
        ({"breaking": "v3"}, "migrations.breaking: must be a list"),
        ({"hold_seconds": 0}, "migrations.hold_seconds: must be greater than 0"),
        ({"hold_seconds": 900}, "migrations.hold_seconds: must be less than or equal to 600"),
        ({"holdseconds": 5}, "migrations.holdseconds: unknown key"),
    ],
)
def test_broken_migrations_tables_are_named_exactly(value: dict[str, Any], expected: str) -> None:
    raw = base()
    raw["migrations"] = value
    assert any(expected in e for e in errors_of(raw)), errors_of(raw)


def test_a_control_character_in_a_command_is_a_located_error():
    raw = base()
    raw["processes"]["backend"]["start"] = ["{python}", "-m", "codeframe\x00.ui.server"]
    raw["processes"]["frontend"]["build"] = ["npm", ""]
    problems = errors_of(raw)
    assert any(
        p.startswith("processes.backend.start: item 2 contains a control character")
        for p in problems
    ), problems
    assert any(p.startswith("processes.frontend.build: item 1 is empty") for p in problems)


def _with_qa(**qa: Any) -> dict[str, Any]:
    raw = base()
    raw["environments"]["staging"].update(hosts=["local"], root="/srv/app")
    raw["environments"]["production"].update(hosts=["deploy@prod.example.com:22"], root="/srv/app")
    raw["environments"]["qa"] = {
        "hosts": ["local"],
        "root": "/srv/app",
        "database": "qa/state.db",
        "ports": {"backend": 14300, "frontend": 14301},
        **qa,
    }
    return raw


@pytest.mark.parametrize(
    ("qa", "expected"),
    [
        (
            {"ports": {"backend": 14200, "frontend": 14301}},
            "environments.qa.ports.backend and environments.staging.ports.backend are both"
            " port 14200 on host local",
        ),
        (
            {"database": "staging/.codeframe/state.db"},
            "environments.qa.database and environments.staging.database are both"
            " /srv/app/staging/.codeframe/state.db on host local",
        ),
        (
            {"database": "qa/.slipway/records.db"},
            "environments.qa.database (/srv/app/qa/.slipway/records.db) is inside"
            " environments.qa's own state (/srv/app/qa/.slipway) on host local",
        ),
        (
            {"database": "staging/backups/x.db"},
            "environments.qa.database (/srv/app/staging/backups/x.db) is inside"
            " environments.staging's own state (/srv/app/staging/backups) on host local",
        ),
        (
            {"hosts": ["deploy@PROD.example.com:2222"], "ports": {"backend": 8201, "frontend": 1}},
            "environments.production.blue_green.blue.backend and environments.qa.ports.backend"
            " are both port 8201 on host prod.example.com",
        ),
    ],
)
def test_environments_on_one_machine_collide_is_an_error_naming_both(
    qa: dict[str, Any], expected: str
) -> None:
    """`check` once accepted these; a restore of one environment rewound the other's
    audit log."""
    found = validate_config(_with_qa(**qa)).collisions()
    assert any(expected in e for e in found), found


def test_environments_on_different_machines_may_share_ports_and_paths() -> None:
    raw = _with_qa(hosts=["deploy@qa.example.com:22"], ports={"backend": 14200, "frontend": 14100})
    raw["environments"]["qa"]["database"] = "staging/.codeframe/state.db"
    config = validate_config(raw)
    assert config.environments["qa"].machines() == {"qa.example.com"}
    assert config.collisions() == []


def test_collisions_are_refused_by_check_and_deploy_with_the_hosts_they_run_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Judged with the hosts a run is given, never on load: a placeholder `local` for
    both environments (CI passes --host) must not block a rollback or a recovery."""
    from support import run_cli

    raw = _with_qa(ports={"backend": 14200, "frontend": 14301})
    for name in ("staging", "production", "qa"):
        raw["environments"][name]["root"] = str(tmp_path / "srv")
    path = tmp_path / "slipway.toml"
    path.write_text(_toml(raw))
    code, _, err = run_cli(["--config", str(path), "check"], capsys)
    assert code == 2 and "are both port 14200 on host local" in err
    code, _, err = run_cli(["--config", str(path), "status", "qa", "--json"], capsys)
    assert code == 0, err  # loading the configuration is not refused
    deploy = ["--config", str(path), "deploy", "qa", "--ref", "v1"]
    code, _, err = run_cli(deploy, capsys)
    assert code == 2 and "are both port 14200 on host local" in err
    assert not (tmp_path / "srv" / "qa").exists() and "Traceback" not in err


def _toml(raw: dict[str, Any]) -> str:
    from test_cli_fuzz import _toml as write

    return write(raw)


def test_supervisor_is_a_process_manager_for_either_strategy() -> None:
    raw = base()
    for name in ("staging", "production"):
        raw["environments"][name]["process_manager"] = "supervisor"
    config = validate_config(raw)
    assert {config.environments[n].process_manager.value for n in ("staging", "production")} == {
        "supervisor"
    }
    raw["environments"]["staging"]["process_manager"] = "systemd"
    assert errors_of(raw)[0].startswith("environments.staging.process_manager: ")


def test_a_host_override_changes_only_its_host_and_merges_host_env() -> None:
    raw = _with_qa()
    prod = raw["environments"]["production"]
    prod.update(
        hosts=["deploy@a.example.com", "deploy@b.example.com"],
        host_env={"SHARED": "1", "REGION": "eu"},
        host_path=["/opt/bin"],
        host_overrides={
            "deploy@b.example.com": {
                "root": "/data/app",
                "host_env": {"REGION": "us"},
                "host_path": ["/usr/local/node/bin"],
            }
        },
    )
    env = validate_config(raw).environments["production"]
    a, b = (env.on_host(str(h)) for h in env.parsed_hosts())
    assert (a.root, a.host_env, a.host_path) == (
        "/srv/app",
        {"SHARED": "1", "REGION": "eu"},
        ["/opt/bin"],
    )
    assert (b.root, b.host_env, b.host_path) == (
        "/data/app",
        {"SHARED": "1", "REGION": "us"},
        ["/usr/local/node/bin"],
    )
    config = validate_config(raw)
    assert (
        config.for_host("production", "deploy@b.example.com:22").environments["production"].root
        == "/data/app"
    )
    assert config.for_host("staging", "local") is config  # nothing to apply there


def test_a_host_override_for_a_host_not_listed_is_an_error_naming_it() -> None:
    raw = _with_qa()
    raw["environments"]["qa"]["host_overrides"] = {"deploy@gone.example.com": {"root": "/x"}}
    problems = errors_of(raw)
    assert any(
        "environments.qa" in p and "'deploy@gone.example.com', which is not in hosts" in p
        for p in problems
    ), problems


def test_collisions_use_each_hosts_own_root() -> None:
    """Two environments on one machine with one root collide (qa's database is inside
    staging's releases); a per-host root for qa there keeps them apart, and a per-host
    root that lands on staging's database collides again."""
    clash = {"database": "staging/.codeframe/state.db"}
    assert validate_config(_with_qa(**clash)).collisions()
    apart = _with_qa(**clash, host_overrides={"local": {"root": "/srv/qa"}})
    assert validate_config(apart).collisions() == []
    onto = _with_qa(
        database="state.db", host_overrides={"local": {"root": "/srv/app/staging/.codeframe"}}
    )
    found = validate_config(onto).collisions()
    assert any("/srv/app/staging/.codeframe/state.db" in f for f in found), found


def test_root_is_refused_when_a_host_has_its_own(tmp_path: Path) -> None:
    from slipway.cli.hosts import with_overrides
    from slipway.errors import UsageError

    raw = _with_qa(host_overrides={"local": {"root": "/srv/qa"}})
    path = tmp_path / "slipway.toml"
    path.write_text(_toml(raw))
    loaded = load_config(path)
    with pytest.raises(UsageError, match=r"--root: environments\.qa\.host_overrides gives local"):
        with_overrides(loaded, "qa", (), "/elsewhere", None)
    moved = with_overrides(loaded, "staging", (), "/elsewhere", None)
    assert moved.config.environments["staging"].root == "/elsewhere"
