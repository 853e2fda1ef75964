"""``slipway try``: the app deployed here, in a throwaway environment, before any server.

A new user's first five minutes: the current checkout (uncommitted changes to tracked
files included) is deployed by the same engine as a real deploy (upload, install,
build, start under PM2, health gate) to an environment called ``try`` with free ports,
a temporary root and its own PM2 daemon, with a copy of a given database or an empty
one. The checks run once more and are printed with the address. Ctrl-C, or ``slipway
try --stop`` after ``--detach``, stops the daemon and removes the root: nothing is left
behind. Why a real deploy rather than ``uvicorn --reload``: what passes here is what
will pass on the server (the lock installs, the build-time variables are set, the
health checks hit routes that exist).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from slipway.cli.context import SafePath, echo_json, loaded_config
from slipway.cli.output import Progress
from slipway.config import LoadedConfig, validate_config
from slipway.config.load import find_config
from slipway.config.model import HealthLevel
from slipway.config.starter import detect_project, render_starter
from slipway.deploy.engine import Deployer
from slipway.deploy.source import check_ref, working_tree_commit
from slipway.errors import ConfigError, SlipwayError, UsageError
from slipway.health.gate import run_round
from slipway.secrets import Masker
from slipway.state import heads
from slipway.transports.local import LocalTransport

ENV = "try"


@click.command(name="try")
@click.option("--ref", default=None, help="Deploy this ref (default: the working tree).")
@click.option(
    "--db",
    "database",
    type=SafePath(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Start on a copy of this SQLite file (default: an empty database).",
)
@click.option(
    "--env-file",
    type=SafePath(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Variables the app needs (copied, mode 0600).",
)
@click.option("--detach", is_flag=True, help="Leave it running; stop it with `slipway try --stop`.")
@click.option("--stop", is_flag=True, help="Stop a detached try and remove everything it made.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def command(
    ctx: click.Context,
    ref: str | None,
    database: Path | None,
    env_file: Path | None,
    detach: bool,
    stop: bool,
    as_json: bool,
) -> None:
    """Deploy this checkout here, on free ports, and run its checks.

    Uses slipway.toml (or, without one, what `slipway init` would write) with an
    environment of its own: a temporary root, free ports, its own PM2 daemon, the
    comprehensive checks. Prints the address and each check's result, then waits:
    Ctrl-C stops everything and removes it. With --detach it returns at once;
    `slipway try --stop` removes it later. Needs pm2 and uv on PATH (uv comes with
    slipway). Exit codes: 0 up and every check passed, 1 the deploy or a check
    failed (everything is removed), 2 bad usage.

    \b
    Examples:
      slipway try                       # the working tree, an empty database
      slipway try --db prod-copy.db --detach
      slipway try --stop
    """
    loaded = _config(ctx)
    name = loaded.config.project.name
    if stop:
        if not stop_try(name):
            raise UsageError(f"no try of {name} is running")
        click.echo(f"stopped the try of {name}; nothing is left behind")
        return
    if shutil.which("pm2") is None:
        raise UsageError(
            "pm2 is not on PATH", hint="npm install --prefix ~/.local pm2, then add its bin"
        )
    stop_try(name)  # a second `try` replaces the first
    revision, note = _revision(loaded, ref)
    progress = Progress(as_json=as_json, color=not ctx.obj["no_color"])
    session: TrySession | None = None
    with _hangup_as_interrupt():
        try:
            session = TrySession.create(loaded, database, env_file)
            session.save(os.getpid(), detached=False)  # `--stop` finds it even mid-deploy
            result = session.deploy(revision, progress)
            _report(result, note, as_json, detach)
            if result["ok"] and detach:
                session.save(os.getpid(), detached=True)
                return
            if result["ok"]:
                _wait_for_interrupt()
                click.echo("stopped; removed everything the try made", err=True)
        except BaseException:
            if session is not None:
                session.remove()
            raise
        session.remove()
    if not result["ok"]:
        raise click.exceptions.Exit(1)


def _config(ctx: click.Context) -> LoadedConfig:
    """slipway.toml, else what `slipway init` would write for this directory."""
    if not ctx.obj.get("config_path"):
        try:
            find_config(Path.cwd())
        except ConfigError:
            root = Path.cwd()
            config = validate_config(tomllib.loads(render_starter(detect_project(root))))
            return LoadedConfig(config, root / "slipway.toml")
    return loaded_config(ctx)


def _revision(loaded: LoadedConfig, ref: str | None) -> tuple[str, str]:
    """The commit to deploy: ``ref``, else the working tree's tracked files as a commit
    object (``git stash create`` writes one and changes nothing else)."""
    if ref is not None:
        return check_ref(ref), f"ref {ref}"
    repo = loaded.repository_path()
    if repo is None:
        raise UsageError("try reads a local repository; the configured one is a URL")
    made = working_tree_commit(repo)
    if made:
        return made, "the working tree (uncommitted changes included; untracked files are not)"
    return "HEAD", "HEAD (the working tree is clean)"


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: each socket stays bound until all are, since the
    kernel may hand the same ephemeral port to two binds in a row once the first closes."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def _state_file(name: str) -> Path:
    return heads.state_home() / "try" / f"{name}.json"


class TrySession:
    """One throwaway environment: its root, ports and PM2 daemon."""

    def __init__(self, loaded: LoadedConfig, root: Path) -> None:
        self.loaded = loaded
        self.root = root
        self.name = loaded.config.project.name

    @classmethod
    def create(cls, base: LoadedConfig, database: Path | None, env_file: Path | None) -> TrySession:
        root = Path(tempfile.mkdtemp(prefix=f"slipway-try-{base.config.project.name}-"))
        os.chmod(root, 0o700)
        raw: dict[str, Any] = {
            "deploy": "manual",
            "hosts": ["local"],
            "root": str(root),
            "database": "data/app.db",
            "ports": dict(zip(("backend", "frontend"), free_ports(2), strict=True)),
            "process_manager": "pm2",
            "pm2_home": str(root / "pm2"),
            "health": "comprehensive",
            "strategy": "restart",
            "keep_releases": 2,
            "host_path": [str(Path(sys.executable).parent)],
        }
        if env_file is not None:
            raw["env_file"] = ".env.try"
        environments = {ENV: raw}
        data = base.config.model_dump(mode="json", exclude={"environments"})
        config = validate_config({**data, "environments": environments})
        session = cls(LoadedConfig(config, base.path), root)
        session.place(database, env_file)
        return session

    @property
    def base(self) -> Path:
        return self.root / ENV

    def place(self, database: Path | None, env_file: Path | None) -> None:
        """The database copy and the env file, where the environment reads them."""
        env = self.loaded.config.environment(ENV)
        if env_file is not None:
            target = self.base / "shared" / ".env.try"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(env_file.read_bytes())
            target.chmod(0o600)
        target = self.root / env.database
        target.parent.mkdir(parents=True, exist_ok=True)
        if database is not None:
            copy_database(database, target)
        else:
            sqlite3.connect(target).close()  # an empty database, as a new server has
            target.chmod(0o600)

    def deploy(self, revision: str, progress: Progress) -> dict[str, Any]:
        with LocalTransport(masker=Masker()) as transport:
            deployer = Deployer(self.loaded, ENV, transport, emit=progress)
            try:
                outcome = deployer.deploy(revision, rehearse=False)
            except SlipwayError as exc:
                return {"ok": False, "error": exc.message, "checks": []}
            results = run_round(deployer.checks(HealthLevel.COMPREHENSIVE))
        env = self.loaded.config.environment(ENV)
        return {
            "ok": all(r.ok for r in results),
            "release": outcome.release,
            "commit": outcome.commit,
            "seconds": round(outcome.seconds, 1),
            "backend": f"http://127.0.0.1:{env.ports.backend}",
            "frontend": (
                f"http://127.0.0.1:{env.ports.frontend}"
                if "frontend" in self.loaded.config.processes
                else None
            ),
            "root": str(self.root),
            "checks": [r.__dict__ for r in results],
        }

    def save(self, pid: int, *, detached: bool) -> None:
        path = _state_file(self.name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        state = {"root": str(self.root), "pid": pid, "detached": detached, "at": time.time()}
        path.write_text(json.dumps(state))

    def remove(self) -> None:
        remove_root(self.root)
        _state_file(self.name).unlink(missing_ok=True)


def copy_database(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy even of a database in use."""
    try:
        with (
            sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True) as src,
            sqlite3.connect(target) as dest,
        ):
            src.backup(dest)
    except sqlite3.Error as exc:
        raise UsageError(f"--db {source}: not a SQLite database ({exc})") from None
    finally:
        if target.exists():
            target.chmod(0o600)


def remove_root(root: Path) -> None:
    """Stop the try's PM2 daemon (and so every app it runs), then remove its files."""
    pm2_home = root / "pm2"
    if pm2_home.exists() and shutil.which("pm2"):
        env = {**os.environ, "PM2_HOME": str(pm2_home)}
        subprocess.run(["pm2", "kill"], env=env, capture_output=True, check=False, timeout=60)
    heads.forget(heads.key("local", str(root / ENV)))
    shutil.rmtree(root, ignore_errors=True)


def stop_try(name: str) -> bool:
    """Stop the try of ``name`` if one is running (a waiting one is told to stop too)."""
    path = _state_file(name)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    pid = int(state.get("pid", 0))
    if not state.get("detached") and pid != os.getpid() and _is_slipway(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # it removes its own; wait for it briefly
        deadline = time.monotonic() + 30
        while path.exists() and time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
    remove_root(Path(state["root"]))
    path.unlink(missing_ok=True)
    return True


def _is_slipway(pid: int) -> bool:
    """Is ``pid`` still a slipway process (a pid from a stale file may be reused)?"""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return pid > 0 and b"slipway" in command


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def _hangup_as_interrupt() -> Iterator[None]:
    """SIGTERM (`slipway try --stop` from another terminal) and SIGHUP (the terminal
    closed) end a try as Ctrl-C does: a deploy under way rolls back, then everything
    is removed. Without this they would leave its PM2 daemon serving."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _wait_for_interrupt() -> None:
    """Until Ctrl-C, SIGTERM or SIGHUP."""
    stopped = threading.Event()
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass


def _report(result: dict[str, Any], note: str, as_json: bool, detach: bool) -> None:
    if as_json:
        echo_json({**result, "deployed": note})
        return
    if "error" in result:
        click.echo(f"the try failed: {result['error']}", err=True)
        return
    click.echo(f"deployed {note} ({result['commit'][:10]}) in {result['seconds']}s")
    for check in result["checks"]:
        mark = "ok  " if check["ok"] else "FAIL"
        line = f"  {mark} {check['name']:<12} {check['latency_ms']:7.1f} ms"
        click.echo(f"{line}  {check['error'] or ''}".rstrip())
    if result["frontend"]:
        click.echo(f"frontend: {result['frontend']}")
    click.echo(f"backend:  {result['backend']}")
    if not result["ok"]:
        click.echo("a check failed: removing everything the try made", err=True)
    elif detach:
        click.echo("running; `slipway try --stop` stops it and removes everything")
    else:
        click.echo("Ctrl-C stops it and removes everything")
