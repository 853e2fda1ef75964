"""A git repository of the example app with one commit per variant, and its config.

Tags ``v1``, ``v2``, ``v3``, ``v2-rebuild``, ``v2-lock`` are good releases; branches
``broken/<variant>`` hold the broken builds. The configuration deploys it under a temporary root with free ports, its
own PM2_HOME (so the test's PM2 daemon is its own) and short health deadlines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from support import EXAMPLE_APP, ROOT, TOOLS_BIN, free_port

IGNORE = shutil.ignore_patterns("node_modules", ".next", "tests", "__pycache__", "slipway.toml")
PASS_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "HTTPS_PROXY", "HTTP_PROXY")
VARIANTS_BROKEN = (
    "crash",
    "health500",
    "dbfail",
    "migration-error",
    "ws-refused",
    "slow",
    "late-fail",
    "destructive-crash",
    "fail-after",
    "sluggish",
    "ws-drop",
)


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def set_variant(repo: Path, variant: str) -> None:
    (repo / "codeframe_mini" / "VARIANT").write_text(variant + "\n")


def make_repo(path: Path) -> Path:
    shutil.copytree(EXAMPLE_APP, path, ignore=IGNORE)
    git(path, "init", "-q", "-b", "main")
    set_variant(path, "v1")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "v1")
    git(path, "tag", "v1")
    for good in ("v2", "v3"):
        set_variant(path, good)
        git(path, "commit", "-q", "-am", good)
        git(path, "tag", good)
    git(path, "checkout", "-q", "-b", "migrations/rebuild", "v2")
    set_variant(path, "v2-rebuild")
    git(path, "commit", "-q", "-am", "v2-rebuild")
    git(path, "tag", "v2-rebuild")
    # v2 with a different lock file (a comment added): its Python environment differs.
    git(path, "checkout", "-q", "-b", "lock/changed", "v2")
    with (path / "requirements.lock").open("a") as lock:
        lock.write("# lock changed\n")
    git(path, "commit", "-q", "-am", "v2 with a changed lock")
    git(path, "tag", "v2-lock")
    for broken in VARIANTS_BROKEN:
        git(path, "checkout", "-q", "-b", f"broken/{broken}", "v1")
        set_variant(path, broken)
        git(path, "commit", "-q", "-am", f"broken: {broken}")
    git(path, "checkout", "-q", "-b", "broken/frontend-build-fail", "v1")
    (path / "web-ui" / "FAIL_BUILD").write_text("on purpose\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "broken: frontend build")
    git(path, "checkout", "-q", "main")
    return path


def write_config(
    repo: Path,
    root: Path,
    *,
    frontend: bool = False,
    hosts: str = '["local"]',
    extra_env: str = "",
    health: str = "basic",
    ssh: str = "",
    name: str = "testing",
    strategy: str = "restart",
    blue_green: str = "",
    backups: str = "{ enabled = true, keep_last = 3 }",
) -> Path:
    """A slipway.toml for the fixture repo (backend only unless ``frontend``)."""
    text = (EXAMPLE_APP / "slipway.toml").read_text()
    text = text.replace('root = "/srv/codeframe-mini"', f'root = "{root}"')
    if not frontend:
        start = text.index("[processes.frontend]")
        end = text.index("# ----", start)
        text = text[:start] + text[end:]
    text = text.replace("deadline_seconds = 60", "deadline_seconds = 8")
    text = text.replace("interval_seconds = 1", "interval_seconds = 0.3")
    text = text.replace("passes = 3", "passes = 2")
    # Over SSH the host's commands do not inherit this process's CA bundle or proxy.
    passed = {k: v for k, v in os.environ.items() if k in PASS_ENV}
    host_env = "{ " + ", ".join(f'{k} = "{v}"' for k, v in passed.items()) + " }"
    host_path = f'["{TOOLS_BIN}", "{ROOT / ".venv" / "bin"}"]'
    text += f"""
[environments.{name}]
hosts = {hosts}
root = "{root}"
database = "{name}/.codeframe/state.db"
ports = {{ backend = {free_port()}, frontend = {free_port()} }}
env_file = ".env.{name}"
required_env = ["API_TOKEN"]
health = "{health}"
strategy = "{strategy}"
keep_releases = 3
backups = {backups}
host_path = {host_path}
pm2_home = "{root / "pm2"}"
host_env = {host_env}
{extra_env}
{ssh}
{blue_green}
"""
    config = repo / "slipway.toml"
    config.write_text(text)
    return config


def blue_green_table(name: str = "testing", **settings: object) -> str:
    """A ``[environments.<name>.blue_green]`` table with free ports for the router's API
    and both colours; ``settings`` adds keys (``standby_seconds=300``)."""
    lines = [
        f"[environments.{name}.blue_green]",
        f"api_port = {free_port()}",
        f"blue = {{ backend = {free_port()}, frontend = {free_port()} }}",
        f"green = {{ backend = {free_port()}, frontend = {free_port()} }}",
        *(f"{key} = {value}" for key, value in settings.items()),
    ]
    return "\n" + "\n".join(lines) + "\n"


def write_env_file(root: Path, text: str, name: str = "testing") -> Path:
    """The environment's env file on the (local) host, as an operator would create it.

    Written with the default mode on purpose: making it 0600 is the deploy's job, and
    a test checks that it does.
    """
    shared = root / name / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    path = shared / f".env.{name}"
    path.write_text(text)
    return path


def blue_green_config(
    repo: Path, base: Path, name: str, watch: float, standby: float = 600
) -> Path:
    """A blue-green (Traefik) configuration of its own under ``base/srv-<name>``, written
    as ``repo/slipway-<name>.toml`` with its env file: several environments of one
    fixture repository side by side (the benchmarks)."""
    root = base / f"srv-{name}"
    table = blue_green_table(router='"traefik"', standby_seconds=standby, watch_seconds=watch)
    written = write_config(
        repo, root, health="comprehensive", strategy="blue-green", blue_green=table
    )
    config = repo / f"slipway-{name}.toml"
    written.rename(config)
    write_env_file(root, "API_TOKEN=bench-token\n")
    return config
