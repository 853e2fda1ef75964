"""``slipway setup ENV``: make each host ready for a deploy, then check it as doctor does.

Kamal installs Docker on its hosts; slipway needs uv, the process manager, the router
and (for encrypted backups) age. What a host lacks is installed from the deployer's
own copies, so every host runs the versions the deployer was tested with and a host
needs no access to PyPI, npm or GitHub:

- uv, Traefik, age and (when missing) Node.js are single static binaries: copied when
  the host's system and architecture are the deployer's;
- PM2 and npm are JavaScript: the deployer's package with exactly its dependencies
  (npm only when a frontend installs with it).

Everything goes to ``<root>/.slipway/tools`` (never a system directory: no root
needed), which every command slipway runs on the host has on its PATH. Setup also makes
the environment's directories with their modes, writes the boot unit that starts the
process manager at boot (systemd; printed with the two commands that install it, since
that needs root), and runs doctor's checks. Running it again changes nothing that is
already there.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from slipway.cli import doctor
from slipway.cli.context import echo_json, loaded_config
from slipway.cli.hosts import host_options, host_session, with_overrides
from slipway.commands import host as cmd
from slipway.config.model import ProcessKind, ProcessManagerName
from slipway.deploy.engine import Deployer
from slipway.errors import SlipwayError


@dataclass(frozen=True)
class Action:
    """What setup did (or could not do) about one thing on one host."""

    what: str
    done: str  # installed | present | made | written | left
    detail: str


def deployer_binary(name: str) -> Path | None:
    """The deployer's own ``name``: beside this Python first (slipway's environment
    holds uv and traefik), then the PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    return Path(found) if found else None


def node_package(command: str) -> tuple[Path, Path] | None:
    """The deployer's Node package behind ``command`` (``.../node_modules/pm2``) and
    the script the command runs, or None."""
    found = shutil.which(command)
    if found is None:
        return None
    entry = Path(found).resolve()
    for package in entry.parents:
        if package.parent.name == "node_modules" and (package / "package.json").is_file():
            return package, entry
    return None


def dependency_closure(package: Path) -> list[Path]:
    """The top-level packages of ``package``'s node_modules that it needs: itself and
    every dependency, resolved as Node does (the package's own ``node_modules``, then
    each parent's), nested packages walked too (their dependencies may be hoisted); a
    nested package travels inside its parent's directory."""
    modules = package.parent
    top: set[Path] = set()
    seen: set[Path] = set()
    todo = [package]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if current.parent == modules or current.parent.parent == modules:
            top.add(current)  # ``name`` or ``@scope/name`` right under node_modules
        deps = json.loads((current / "package.json").read_text()).get("dependencies", {})
        for dep in deps:
            found = _resolve(dep, current, modules)
            if found is not None:
                todo.append(found)
    return sorted(top)


def _resolve(dep: str, start: Path, modules: Path) -> Path | None:
    """Where Node finds ``dep`` required from ``start``, inside ``modules``."""
    here = start
    while True:
        candidate = here / "node_modules" / dep
        if (candidate / "package.json").is_file():
            return candidate
        if here == modules.parent or here == here.parent:
            return None
        here = here.parent


# ELF, and Mach-O (32/64-bit, both byte orders, universal): what a copy can run.
BINARY_MAGIC = (
    b"\x7fELF",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
)


def is_binary(path: Path) -> bool:
    """A compiled executable, not a script or a version manager's shim (asdf, pyenv,
    volta), which would not run on another machine."""
    try:
        with path.open("rb") as f:
            return f.read(4) in BINARY_MAGIC
    except OSError:
        return False


def _without_owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Extracted as whoever runs tar on the host, never as this machine's uid."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def same_platform(d: Deployer) -> bool:
    """The host runs the deployer's system and architecture (a binary copied works)."""
    done = d.transport.run(["uname", "-s", "-m"], check=False)
    host = done.stdout.split() if done.ok else []
    return host == [platform.system(), platform.machine()]


def install_binary(d: Deployer, name: str, why: str) -> Action:
    if "/" in name:
        return Action(name, "present" if _runs(d, name) else "left", "a path: setup leaves it")
    present = doctor.on_path(d, name)
    if present:
        return Action(name, "present", present)
    local = deployer_binary(name)
    if local is None:
        return Action(name, "left", f"not on this machine either ({why}): install it on the host")
    local = local.resolve()
    if not is_binary(local):
        return Action(name, "left", f"this machine's {name} is a script or shim: install it")
    if not same_platform(d):
        return Action(name, "left", "the host is another system or architecture: install it")
    target = f"{d.layout.tools_bin}/{name}"
    d.transport.run(cmd.mkdir_p(d.layout.tools_bin))
    d.transport.put(local, f"{target}.new", mode=0o755)
    if not _runs(d, f"{target}.new"):  # a library it needs is missing there, say
        d.transport.run(cmd.remove_tree(f"{target}.new"), check=False)
        return Action(name, "left", f"this machine's {name} does not run there: install it")
    d.transport.run(cmd.rename_over(f"{target}.new", target))
    return Action(name, "installed", f"{target} (the deployer's {local.name})")


# How each tool says its version (and so that it runs); ``--version`` for the others.
VERSION_ARGS = {"traefik": ["version"]}


def _runs(d: Deployer, program: str) -> bool:
    args = VERSION_ARGS.get(program.rsplit("/", 1)[-1].removesuffix(".new"), ["--version"])
    return d.transport.run([program, *args], env=d.host_env, check=False).ok


def install_package(d: Deployer, name: str, fix: str) -> Action:
    """The deployer's ``name`` (a Node package: PM2, npm) with exactly the packages it
    needs, into ``<tools>/<name>``, its command linked into the tools' bin."""
    present = doctor.on_path(d, name)
    if present:
        return Action(name, "present", present)
    found = node_package(name)
    if found is None:
        return Action(name, "left", f"no {name} on this machine to copy: {fix}")
    package, entry = found
    tools = d.layout.tools_bin.rsplit("/", 1)[0]
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / f"{name}.tar"
        with tarfile.open(archive, "w", dereference=True) as tar:  # pnpm links: copies
            for each in dependency_closure(package):
                where = f"node_modules/{each.relative_to(package.parent)}"
                tar.add(each, arcname=where, filter=_without_owner)
        d.transport.run(cmd.mkdir_p(f"{tools}/{name}", d.layout.tools_bin))
        d.transport.put(archive, f"{tools}/{name}.tar", mode=0o600)
    d.transport.run(cmd.extract_tar(f"{tools}/{name}.tar", f"{tools}/{name}"))
    d.transport.run(cmd.remove_tree(f"{tools}/{name}.tar"))
    link = f"{d.layout.tools_bin}/{name}"
    target = f"../{name}/node_modules/{package.name}/{entry.relative_to(package)}"
    d.transport.run(["ln", "-sfn", target, link])
    version = json.loads((package / "package.json").read_text())["version"]
    return Action(name, "installed", f"{link} ({package.name} {version}, the deployer's)")


def make_layout(d: Deployer) -> Action:
    """The environment's directories; the state and backup ones only for this user."""
    layout = d.layout
    own = f"{layout.root}/.slipway"
    d.transport.run(
        cmd.mkdir_p(own, layout.releases, layout.shared, layout.state_dir, layout.backups)
    )
    for private in (layout.state_dir, layout.backups, own):
        d.transport.run(cmd.chmod("700", private))
    return Action("layout", "made", f"{layout.base} (state and backups 0700)")


def boot_unit(d: Deployer, user: str, home: str) -> str:
    """A systemd unit that starts the process manager at boot (what ``pm2 startup``
    writes), for this environment's PM2_HOME (or supervisor's home) and tools. Paths
    are absolute (systemd's ``%h`` is root's home in a system unit) and quoted."""
    path = d.host_env["PATH"]
    name = f"{d.config.project.name}-{d.env_name}"
    if d.env.process_manager is ProcessManagerName.SUPERVISOR:
        conf = f"{d.env.supervisor_home or f'{home}/.slipway-supervisor'}/supervisord.conf"
        start, stop = (
            f"supervisord -c {_quoted(conf)}",
            f"supervisorctl -c {_quoted(conf)} shutdown",
        )
        return _unit(name, user, path, start, stop, [])
    pm2_home = d.env.pm2_home or f"{home}/.pm2"
    extra = [
        f"Environment={_quoted(f'PM2_HOME={pm2_home}')}",
        f"PIDFile={_quoted(f'{pm2_home}/pm2.pid')}",
    ]
    return _unit(name, user, path, "pm2 resurrect", "pm2 kill", extra)


def _quoted(value: str) -> str:
    """A value as systemd reads it: double-quoted, ``%`` doubled (not a specifier)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def _unit(name: str, user: str, path: str, start: str, stop: str, extra: list[str]) -> str:
    lines = [
        "[Unit]",
        f"Description=slipway: the process manager of {name}",
        "After=network.target",
        "",
        "[Service]",
        "Type=forking",
        f"User={user}",
        f"Environment={_quoted(f'PATH={path}')}",
        *extra,
        f"ExecStart=/usr/bin/env {start}",
        f"ExecStop=/usr/bin/env {stop}",
        "Restart=on-failure",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def write_boot_unit(d: Deployer) -> Action:
    if d.env.process_manager is ProcessManagerName.NONE:
        return Action("boot", "left", "process_manager = none: nothing to start at boot")
    user = d.transport.run(["id", "-un"], check=False).stdout.strip()
    home = d.transport.run(["sh", "-c", 'printf %s "$HOME"'], check=False).stdout.strip()
    if not user or not home.startswith("/"):
        return Action("boot", "left", "the host did not say its user and home: no unit written")
    name = f"slipway-{d.config.project.name}-{d.env_name}.service"
    where = f"{d.layout.state_dir}/{name}"
    d.transport.put_text(boot_unit(d, user, home), where, mode=0o644)
    how = f"as root: cp {where} /etc/systemd/system/ && systemctl enable --now {name}"
    return Action("boot", "written", f"{where}; {how}")


def setup_host(d: Deployer) -> list[Action]:
    actions = [make_layout(d), install_binary(d, "uv", "it installs the backend")]
    pm2 = d.env.process_manager is ProcessManagerName.PM2
    if pm2 or any(p.kind is ProcessKind.NODE for p in d.config.processes.values()):
        actions.append(install_binary(d, "node", "PM2 or the frontend runs on it"))
    if pm2:
        actions.append(install_package(d, "pm2", "npm install -g pm2 there"))
    if "npm" in doctor.managers(d):
        actions.append(install_package(d, "npm", "install Node.js with npm there"))
    if d.env.strategy.coloured:
        router = d.env.blue_green.router_binary or d.env.blue_green.router.value
        actions.append(install_binary(d, router, "it switches traffic"))
    if d.env.backups.age_recipients:
        actions.append(install_binary(d, "age", "backups are encrypted"))
    actions.append(write_boot_unit(d))
    return actions


@click.command(name="setup")
@click.argument("environment")
@host_options
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@click.pass_context
def command(
    ctx: click.Context,
    environment: str,
    host: tuple[str, ...],
    root: str | None,
    ssh_key: str | None,
    as_json: bool,
) -> None:
    """Install what each host of ENVIRONMENT lacks, then check it as doctor does.

    \b
    Into <root>/.slipway/tools (no root needed, on the PATH slipway uses there): uv,
    Node.js when missing, PM2 (the deployer's, with its dependencies), the router
    (blue-green) and age (encrypted backups), copied from this machine when the host
    runs the same system and architecture. Also makes the environment's directories
    (state and backups 0700) and writes a systemd unit that starts the process manager
    at boot, with the commands that install it. Safe to run again: what is there is
    kept. Exit codes: 0 ready, 1 a problem is left, 2 bad usage.

    \b
    Example:
      slipway setup production && slipway deploy production --ref v1.4.0
    """
    loaded = with_overrides(loaded_config(ctx), environment, host, root, ssh_key)
    report, ready = [], True
    for d in host_session(loaded, environment):
        try:
            actions = setup_host(d)
        except SlipwayError as exc:
            raise SlipwayError(f"{d.transport.name}: {exc}", hint=exc.hint) from exc
        found = doctor.findings(d)
        # A tool left behind is a problem even where doctor would not look (node for PM2).
        left = [a for a in actions if a.done == "left" and a.what != "boot"]
        ready = ready and all(f.ok for f in found) and not left
        report.append(
            {
                "host": d.transport.name,
                "actions": [asdict(a) for a in actions],
                "findings": [asdict(f) for f in found],
            }
        )
        if not as_json:
            click.echo(f"{d.transport.name}:")
            for a in actions:
                click.echo(f"  {a.done:<9} {a.what:<8} {a.detail}")
            problems = [f for f in found if not f.ok]
            for f in problems:
                click.echo(f"  FAIL      {f.check:<8} {f.detail}  fix: {f.fix}")
            if not problems:
                click.echo("  ready: doctor finds nothing left to fix")
    if as_json:
        echo_json(report)
    if not ready:
        raise click.exceptions.Exit(1)
