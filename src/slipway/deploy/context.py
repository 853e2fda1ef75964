"""HostContext: one environment on one host, and the tools every deploy flow uses.

Config, transport, layout, process manager, router, backup store, names and ports, the
env file, release metadata and run specs, health checks and the gate, records, audit,
notifications, the colours file, and the journal hooks (``checkpoint``) a flow calls
before it changes live state. No flow lives here: :mod:`slipway.deploy.engine` (deploy),
:mod:`slipway.deploy.rollback` (rollback), :mod:`slipway.deploy.recovery` and the
strategies drive it. Read-only commands (status, health, monitor, dashboard, preflight)
use a context and nothing above it.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slipway.backups.store import BackupStore
from slipway.commands import build as build_cmd
from slipway.commands import host as cmd
from slipway.config.load import LoadedConfig
from slipway.config.model import (
    COLORS,
    EnvironmentConfig,
    HealthLevel,
    ProcessConfig,
    ProcessKind,
    ProcessManagerName,
)
from slipway.deploy import journal as journal_mod
from slipway.deploy import runspec
from slipway.deploy.journal import Journal
from slipway.deploy.run import Emit, Recovery, RunState, StepEvent
from slipway.errors import HealthCheckFailed, LockLost, SlipwayError, UsageError
from slipway.health import build_checks, wait_healthy
from slipway.health import host as host_health
from slipway.health.checks import Check
from slipway.health.gate import GateReport
from slipway.notify import Delivery, Notification, Notifier
from slipway.processes import ProcessManager, make_process_manager
from slipway.processes.base import AppSpec
from slipway.routers import Router, RouterSetup, Target, make_router
from slipway.secrets import Masker
from slipway.state import colors, heads, records
from slipway.state.host import (
    Layout,
    attach_agent,
    call,
    read_json_object,
    read_link,
    read_text,
)
from slipway.state.lock import DeployLock, is_held
from slipway.transports.base import Transport

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BIND_HOST = "127.0.0.1"
RELEASE_META = ".slipway-release.json"
PUBLIC_BUILD = "public"  # a release's built_for: built for the public address, any colour
LOG_TAIL_LINES = 30  # a failed release's log lines kept in its error and incident
CRASH_LOOP_RESTARTS = 2  # a new release restarted twice while being gated is not healthy


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` and quotes allowed); comments and blanks ignored."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def check_actor(actor: str) -> str:
    """Who acts, as records, the audit log and notifications show it: one line of
    printable text. A newline in ``--actor`` once forged a whole line of `slipway
    audit`; control characters are refused before anything changes."""
    bad = [c for c in actor if unicodedata.category(c) == "Cc"]
    if bad or not actor.strip() or len(actor) > 200:
        raise UsageError(
            f"invalid actor {actor!r}: it must be 1-200 printable characters on one line",
            hint="pass --actor NAME without newlines or control characters",
        )
    return actor


class HostContext:
    """One environment of one app on one host, reached through ``transport``."""

    # Set by a fleet: raises when another host failed, so this one stops at its next
    # step (or its canary's next look).
    stop_requested: Callable[[], None] | None = None

    def __init__(
        self,
        loaded: LoadedConfig,
        env_name: str,
        transport: Transport,
        *,
        emit: Emit | None = None,
        actor: str | None = None,
        masker: Masker | None = None,
        notifier: Notifier | None = None,
        process_manager: ProcessManager | None = None,
        router: Router | None = None,
    ) -> None:
        self.loaded = loaded
        # This host's share of the app: its roles' processes (every process by default).
        self.config = loaded.config.for_host(env_name, transport.name)
        self.env_name = env_name
        self.env: EnvironmentConfig = self.config.environment(env_name)
        if self.env.root is None:
            raise UsageError(f"environment {env_name!r} is not deployed (no root)")
        self.transport = transport
        self.masker = masker or transport.masker
        self.emit_fn = emit or (lambda event: None)
        self.actor = check_actor(actor or getpass.getuser())
        self.layout = Layout(self.env.root, env_name)
        attach_agent(transport, self.env.root)
        # Locally the deployer's PATH is the host's; over SSH a login shell is not run,
        # so the standard directories are used, after any configured host_path and the
        # tools `slipway setup` installed.
        base_path = (
            os.environ.get("PATH", DEFAULT_PATH) if transport.name == "local" else DEFAULT_PATH
        )
        path = [*self.env.host_path, self.layout.tools_bin, base_path]
        self.host_env = {**self.env.host_env, "PATH": ":".join(path)}
        if self.env.pm2_home:
            self.host_env["PM2_HOME"] = self.env.pm2_home
        if self.env.supervisor_home:
            self.host_env["SUPERVISOR_HOME"] = self.env.supervisor_home
        self.pm: ProcessManager = process_manager or make_process_manager(
            self.env.process_manager, transport, self.host_env
        )
        self.backups = BackupStore(
            transport, self.layout, env_name, self.env.backups, self.host_env
        )
        self.steps: list[dict[str, Any]] = []
        self._env_values: dict[str, str] | None = None
        self._specs: dict[str, dict[str, ProcessConfig]] = {}  # release -> its run spec
        # Blue-green: the colour a release is built for (its build-time backend address).
        self.build_color: str | None = None
        self.deployment_id: str | None = None  # of the deploy or rollback under way
        # Driven by a fleet command, which settles every host's journal together.
        self.fleet_member = False
        self.identity: Path | None = None  # age identity file, to restore encrypted backups
        self.notifier = notifier or Notifier.for_env(self.config, env_name, self.masker)
        self.last_incident: tuple[str, str] | None = None  # (path on the host, masked text)
        self.lock: DeployLock | None = None  # held by the command under way
        self.recovered: Recovery | None = None  # an unfinished run completed by take_lock
        self.journal: Journal | None = None  # of the deploy or rollback under way
        self._router = router  # made on first use (blue-green only)

    # --- small helpers ------------------------------------------------------------

    def emit(self, step: str, status: str, seconds: float = 0.0, detail: str = "") -> None:
        self.emit_fn(StepEvent(step, status, seconds, self.masker(detail)))

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.emit(name, "start")
        started = time.monotonic()
        at = round(time.time(), 3)
        try:
            yield
        except BaseException as exc:
            seconds = time.monotonic() - started
            self.steps.append({"step": name, "seconds": round(seconds, 3), "ok": False, "at": at})
            self.emit(name, "failed", seconds, str(exc))
            raise
        seconds = time.monotonic() - started
        self.steps.append({"step": name, "seconds": round(seconds, 3), "ok": True, "at": at})
        self.emit(name, "ok", seconds)

    def run(self, argv: list[str], env_extra: dict[str, str] | None = None, **kwargs: Any) -> str:
        env = {**self.host_env, **(env_extra or {})}
        return self.transport.run(argv, env=env, **kwargs).stdout

    @property
    def blue_green(self) -> bool:
        return self.env.strategy.coloured

    def app_name(self, process: str, color: str | None = None) -> str:
        """``<project>-<env>-<process>``, plus ``-<color>`` for a blue-green colour."""
        suffix = f"-{color}" if color else ""
        return f"{self.config.project.name}-{self.env_name}-{process}{suffix}"

    @property
    def app_names(self) -> list[str]:
        return self.app_names_of(None)

    def app_names_of(self, color: str | None) -> list[str]:
        return [self.app_name(p, color) for p in self.config.processes]

    def local_port(self, process: str, color: str | None = None) -> int:
        """Where this machine reaches ``process`` on the host (an SSH tunnel when remote)."""
        return self.transport.tunnel(self.port(process, color))

    def port(self, process: str, color: str | None = None) -> int:
        """The public port, or a blue-green colour's private one."""
        ports = self.env.ports
        if color is not None:
            ports = self.env.blue_green.color_ports(self.env.ports)[color]
        port: int = getattr(ports, process)
        return port

    def current_release(self) -> str | None:
        target = read_link(self.transport, self.layout.current)
        return target.rstrip("/").rsplit("/", 1)[-1] if target else None

    def list_releases(self) -> list[str]:
        result = self.transport.run(cmd.list_dir(self.layout.releases), check=False)
        return sorted(line for line in result.stdout.split() if not line.endswith(".tar"))

    # --- the deploy -----------------------------------------------------------------

    def check_lock(self) -> None:
        """Raise LockLost when this run no longer holds the lock (``slipway lock
        --release --force`` ended it): it must not change anything more."""
        if self.lock is not None and self.lock.lost():
            raise LockLost(
                f"this {self.journal_kind()} lost {self.env_name}'s lock (released by force)"
                f" and stopped before step '{self.journal.step if self.journal else '-'}'",
                hint="the next command that takes the lock recovers what it changed",
            )

    def unfinished_run(self) -> dict[str, Any] | None:
        """The run the journal on the host describes: under way (its lock is held) or
        interrupted (nobody holds the lock: it stopped without finishing)."""
        data = journal_mod.read(self.transport, self.layout)
        if data is None:
            return None
        row = data.get("row") or {}
        return {
            "id": row.get("id"),
            "kind": data.get("kind", "deploy"),
            "release": row.get("release"),
            "step": journal_mod.last_step(data) if "steps" in data else None,
            "interrupted": not is_held(self.transport, self.layout),
        }

    def journal_kind(self) -> str:
        return str(self.journal.data.get("kind", "deploy")) if self.journal else "deploy"

    def new_record(
        self, kind: str, *, ref: str, release: str, previous: str | None, commit: str, **more: Any
    ) -> dict[str, Any]:
        """The ``running`` record of a deploy, rollback or restore under way (its id is
        ``deployment_id``); ``more`` adds columns (``committed_at``, ``message``)."""
        return {
            "id": self.deployment_id,
            "env": self.env_name,
            "ref": ref,
            "commit_sha": commit,
            "release": release,
            "actor": self.actor,
            "started_at": time.time(),
            "status": "running",
            "previous_release": previous,
            "kind": kind,
            **more,
        }

    def begin_journal(self, kind: str, row: dict[str, Any]) -> None:
        """Start the journal of a run whose record ``row`` was just saved."""
        self.journal = Journal.begin(
            self.transport,
            self.layout,
            kind=kind,
            strategy=self.env.strategy.value,
            row=row,
            build_color=self.build_color,
            guard=self.check_lock,
        )

    def step_done(self, step: str, state: RunState) -> None:
        if self.journal is not None:
            self.journal.done(step, state)

    def checkpoint(self, step: str, state: RunState, **assume: Any) -> None:
        """Journal ``state`` before a change to live state inside ``step``; ``assume``
        overrides fields as if the change were already made (``switched=True`` before a
        switch): the journal holds the worst case, and undoing it is idempotent."""
        self.check_lock()
        if self.journal is not None:
            self.journal.intent(step, state, **assume)

    def env_file_path(self) -> str | None:
        return f"{self.layout.shared}/{self.env.env_file}" if self.env.env_file else None

    def read_env_file(self) -> dict[str, str]:
        """The env file's values, read once per Deployer and added to the masker."""
        if self._env_values is not None:
            return self._env_values
        path = self.env_file_path()
        if path is None:
            return {}
        text = read_text(self.transport, path)
        if text is None:
            raise SlipwayError(
                f"env file {path} is missing on the host",
                hint=f"create it (mode 0600) with the keys: {', '.join(self.env.required_env)}",
            )
        values = parse_env_file(text)
        self.masker.add(*values.values())
        self._env_values = values
        return values

    def missing_env_keys(self) -> list[str]:
        """Required keys the host's env file lacks (an error if the file is missing)."""
        values = self.read_env_file()
        return [key for key in self.env.required_env if not values.get(key)]

    def workdir(self, release: str, process: ProcessConfig) -> str:
        base = self.layout.release(release)
        return base if process.workdir == "." else f"{base}/{process.workdir}"

    def release_meta(self, release: str) -> dict[str, Any]:
        text = read_text(self.transport, f"{self.layout.release(release)}/{RELEASE_META}")
        try:
            meta: dict[str, Any] = json.loads(text) if text is not None else {}
        except json.JSONDecodeError:
            meta = {}
        return meta

    def save_meta(self, release: str, **values: Any) -> None:
        meta = self.release_meta(release)
        meta.update(values)
        # 0600: its hashes cover the env file's values (offline-guessable if short).
        self.transport.put_text(
            json.dumps(meta), f"{self.layout.release(release)}/{RELEASE_META}", mode=0o600
        )

    def build_env(self, process: ProcessConfig) -> dict[str, str]:
        """Build-time variables (Next.js inlines ``NEXT_PUBLIC_*``). They name the
        environment's public addresses, never a colour's private port, so one build
        serves either colour: a rollback or a standby restart never rebuilds.
        ``{backend_port}``/``{frontend_port}`` are the public ports (the router's in
        blue-green), ``{url}`` the address users reach (``url``, else host and port)."""
        values = {
            "host": BIND_HOST,
            "backend_port": str(self.env.ports.backend),
            "frontend_port": str(self.env.ports.frontend),
            "public_backend_port": str(self.env.ports.backend),
            "public_frontend_port": str(self.env.ports.frontend),
            "url": self.public_url(),
        }
        rendered = {k: build_cmd.render([v], values)[0] for k, v in process.build_env.items()}
        return {**rendered, "NEXT_TELEMETRY_DISABLED": "1"}

    def configured_processes(self) -> dict[str, ProcessConfig]:
        return {str(name): process for name, process in self.config.processes.items()}

    def processes_of(self, release: str) -> dict[str, ProcessConfig]:
        """How ``release``'s processes start: its own run spec (saved when it was built),
        or the configuration for a release built before run specs existed."""
        cached = self._specs.get(release)
        if cached is None:
            cached = runspec.load(self.transport, self.layout.release(release))
            cached = cached if cached is not None else self.configured_processes()
            # A release built before this host's roles changed runs only what the host
            # runs now (never a second backend, with a database of its own, on a web host).
            cached = {k: v for k, v in cached.items() if k in self.config.processes}
            self._specs[release] = cached
        return cached

    def finish_backup(self, state: RunState, *, keep: bool) -> str:
        """After the deploy: seal the pre-deploy backup (or drop it when backups are off
        and it was not needed), then apply retention. Never fails the deploy."""
        try:
            if state.backup is not None:
                if keep or self.env.backups.enabled:
                    self.backups.seal(self._fully_checked(state.backup))
                else:
                    self.backups.remove(state.backup)
            plan = self.backups.prune()
        except SlipwayError as exc:
            return f"backup housekeeping failed: {exc}"
        return f"{len(plan.delete)} old backups pruned" if plan.delete else ""

    def _fully_checked(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The deploy took its backup with ``quick_check`` only: run the full check now
        that the release is live. A failure is audited and said, never undone (the
        database it copied is the one serving)."""
        try:
            return self.backups.full_check(manifest)
        except SlipwayError as exc:
            self.audit("backup.check_failed", backup=manifest["id"], error=str(exc))
            raise

    def app_specs(
        self,
        release: str,
        source_commit: str,
        color: str | None = None,
        ports: dict[str, int] | None = None,
    ) -> list[AppSpec]:
        """Each process's PM2 app; ``ports`` overrides where a process listens (the
        restore test runs a backend on a free port)."""
        env_values = self.read_env_file()
        specs = []
        for name, process in self.processes_of(release).items():
            port = (ports or {}).get(name) or self.port(name, color)
            workdir = self.workdir(release, process)
            values = {
                "port": str(port),
                "host": BIND_HOST,
                "python": f"{self.layout.release(release)}/.venv/bin/python",
            }
            argv = build_cmd.render(process.start, values)
            if "/" in argv[0] and not argv[0].startswith("/"):
                argv[0] = f"{workdir}/{argv[0]}"
            env = {
                **env_values,
                "HOST": BIND_HOST,
                "SLIPWAY_ENV": self.env_name,
                "SLIPWAY_RELEASE": release,
                "SLIPWAY_COMMIT": source_commit,
                "SLIPWAY_COLOR": color or "",
                "PATH": self.host_env["PATH"],
            }
            if process.port_env:
                env[process.port_env] = str(port)
            if process.bind_env:
                env[process.bind_env] = BIND_HOST
            if process.kind is ProcessKind.PYTHON:
                env.update(process.database_vars(self.layout.database(self.env.database)))
            else:
                env["NODE_ENV"] = "production"
            kill_ms = int((process.drain_seconds + 3) * 1000)
            specs.append(
                AppSpec(self.app_name(name, color), argv, workdir, env, kill_ms, self.layout.logs)
            )
        self.pm.check(specs)  # what the manager cannot carry fails before any stop
        return specs

    def start_processes(self, release: str, color: str | None = None, commit: str = "") -> None:
        """Put ``release`` on ``color``'s ports (or the public ones): its specs first (a
        broken env file fails before anything stops), then stop what runs there, wait
        for the ports to be free, and start it from its own run spec. The one way every
        flow starts a release."""
        commit = commit or str(self.release_meta(release).get("commit", "unknown"))
        specs = self.app_specs(release, commit, color)
        self.pm.stop(self.app_names_of(color) + self.stray_apps())
        self.ensure_ports_free(color)
        suffix = f"-{color}" if color else ""
        self.pm.start(specs, f"{self.layout.release(release)}/.slipway-ecosystem{suffix}.json")

    def ensure_ports_free(self, color: str | None = None) -> None:
        """Wait (briefly) for the ports to be free; never start on a busy port (CodeFRAME's
        backend ran its migrations before failing with EADDRINUSE)."""
        deadline = time.monotonic() + 10
        for name in self.config.processes:
            port = self.port(name, color)
            while not call(self.transport, "port_free", port=port)["free"]:
                if time.monotonic() > deadline:
                    raise SlipwayError(
                        f"port {port} ({name}) is still in use after stopping the old release",
                        hint="another program holds it; slipway will not start on a busy port",
                    )
                time.sleep(0.05)

    def log_tail(self, color: str | None = None, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` of each of ``color``'s processes' error logs (their output
        logs when the error logs are empty), masked: why a release crashed or failed its
        gate, for the error, the incident report and the notification."""
        errors = self._log_tails(color, "err", lines)  # where tracebacks go
        return self.masker("\n".join(errors or self._log_tails(color, "out", lines)))

    def _log_tails(self, color: str | None, stream: str, lines: int) -> list[str]:
        parts = []
        for name in self.app_names_of(color):
            path = f"{self.layout.logs}/{name}.{stream}.log"
            text = self.transport.run(["tail", "-n", str(lines), "--", path], check=False)
            if text.ok and text.stdout.strip():
                parts.append(
                    f"--- {name}.{stream}.log (last {lines} lines)\n{text.stdout.rstrip()}"
                )
        return parts

    def failure_with_logs(self, message: str, color: str | None = None) -> HealthCheckFailed:
        """A gate or watch failure that carries the processes' last log lines."""
        tail = self.log_tail(color)
        return HealthCheckFailed(f"{message}\n{tail}" if tail else message)

    def processes_abort(self, color: str | None = None) -> str | None:
        """Why waiting for health is pointless: a process errored or is crash-looping."""
        for name, proc in self.pm.status(self.app_names_of(color)).items():
            if proc.status in ("errored", "stopped", "missing"):
                return f"process {name} is {proc.status}"
            if proc.restarts >= CRASH_LOOP_RESTARTS:
                return f"process {name} is crash-looping ({proc.restarts} restarts)"
        return None

    def checks(
        self,
        level: HealthLevel | None = None,
        color: str | None = None,
        *,
        serving: str | None = None,
        disk: bool = True,
    ) -> list[Check]:
        """The checks of ``level`` (default: this environment's), reaching the host:
        through the public ports, or straight at one blue-green colour. ``serving`` names
        the colour behind the public ports when the records do not say it yet (the
        post-switch watch). Deploy gates pass ``disk=False``: low disk space is an alert,
        and rolling a release back would not free any."""
        chosen = level or self.env.health
        checks = build_checks(
            self.config.health,
            chosen,
            lambda process: self.local_port(process, color),
            set(self.config.processes),
        )
        if chosen is HealthLevel.COMPREHENSIVE:
            checks += self.host_checks(color or serving, via_router=color is None, disk=disk)
        return checks

    def host_checks(
        self, color: str | None, *, via_router: bool = True, disk: bool = True
    ) -> list[Check]:
        """Process manager, disk space and direct database checks (comprehensive)."""
        health = self.config.health
        found: list[Check] = []
        if health.processes and self.env.process_manager is not ProcessManagerName.NONE:
            names = self.serving(color, via_router)
            found.append(host_health.processes_check(lambda: self.pm.status(names)))
        if health.disk and disk:
            found.append(host_health.disk_check(self.disk_free, self.env.monitor.disk_free_percent))
        if health.sqlite is not None and self.holds_database:
            query = health.sqlite.query
            found.append(host_health.sqlite_check(health.sqlite.name, lambda: self.probe_db(query)))
        return found

    def stray_apps(self) -> list[str]:
        """Apps of processes this host no longer runs (its roles changed since they
        started), on any colour: stopped with the next start, so a host never keeps a
        backend, and a database of its own, that its role no longer has."""
        gone = [p for p in self.loaded.config.processes if p not in self.config.processes]
        colors: list[str | None] = [None, *COLORS] if gone else []
        return [self.app_name(p, c) for p in gone for c in colors]

    @property
    def holds_database(self) -> bool:
        """This host runs the backend, so it has the environment's SQLite database (a
        frontend-only host of a fleet has none: nothing to back up or check)."""
        return "backend" in self.config.processes

    def serving(self, color: str | None = None, via_router: bool = True) -> list[str]:
        """The process-manager apps that serve traffic: a colour's (the live one unless
        named), plus the router when traffic comes through the public ports."""
        if not self.blue_green:
            return self.app_names
        color = color or self.live_color()
        names = self.app_names_of(color) if color else self.app_names
        return [*names, self.app_name("router")] if via_router else names

    def disk_free(self) -> dict[str, dict[str, Any]]:
        """Free space where this environment writes: its directory and its backups."""
        paths = sorted({self.layout.base, self.backups.directory})
        disks: dict[str, dict[str, Any]] = call(self.transport, "disk", paths=paths)["disks"]
        return disks

    def probe_db(self, query: str) -> list[Any] | None:
        """One read-only query of the environment's database file on the host."""
        db = self.layout.database(self.env.database)
        row: list[Any] | None = call(self.transport, "sqlite_probe", db=db, query=query)["row"]
        return row

    def gate_report(
        self,
        color: str | None = None,
        *,
        interval: float | None = None,
        deadline: float | None = None,
    ) -> GateReport:
        """The health gate; ``interval`` and ``deadline`` override the configured pacing
        (a hold polls faster and never outlasts its own deadline)."""
        health = self.config.health
        return wait_healthy(
            self.checks(color=color, disk=False),
            passes=health.passes,
            interval=health.interval_seconds if interval is None else interval,
            deadline=health.deadline_seconds if deadline is None else deadline,
            abort=lambda: self._gate_abort(color),
            ready=lambda: self.ports_accept(color),
        )

    def ports_accept(self, color: str | None = None) -> bool:
        """Does every process's port (or the colour's) accept connections on the host?
        Asked of the host agent: over SSH a local tunnel accepts whatever is behind it."""
        ports = {self.port(process.port, color) for process in self.config.processes.values()}
        return all(call(self.transport, "port_free", port=port)["accepting"] for port in ports)

    def _gate_abort(self, color: str | None) -> str | None:
        self.check_lock()  # a forced release ends a deploy waiting in its gate, too
        return self.processes_abort(color)

    def end_journal(self) -> None:
        """The run's record is final: its journal has nothing left to recover."""
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    def promote(self, release: str, *, save: bool = True) -> None:
        """Point ``current`` at ``release``; ``save`` the process list for boot (not
        needed when no process started or stopped)."""
        self.run(cmd.symlink_temp(self.layout.release(release), self.layout.current))
        self.run(cmd.rename_over(f"{self.layout.current}.new", self.layout.current))
        if save:
            self.pm.save()

    def public_url(self) -> str:
        """Where users reach this environment (for notifications)."""
        if self.env.url:
            return self.env.url
        host = getattr(getattr(self.transport, "host", None), "address", None) or "127.0.0.1"
        process = "frontend" if "frontend" in self.config.processes else "backend"
        return f"http://{host}:{self.port(process)}"

    def notify(self, note: Notification) -> list[Delivery]:
        """Send ``note`` (never raises, bounded by each channel's deadline) and audit
        each delivery, so a lost notification is visible in the records."""
        self._mirror_audit_head(note)
        deliveries = self.notifier.send(note)
        for delivery in deliveries:
            event = "notify.sent" if delivery.ok else "notify.failed"
            detail = f"{delivery.channel}: {delivery.error or 'sent'}"
            self.emit("notify", "info" if delivery.ok else "warning", delivery.seconds, detail)
            # The records being unreachable is reported by the deploy itself.
            with contextlib.suppress(SlipwayError):
                self.audit(event, notification=note.event.value, **delivery.as_dict())
        return deliveries

    def _mirror_audit_head(self, note: Notification) -> None:
        """Keep the audit chain's head off the host: on this machine and in ``note``
        (``slipway audit ENV --verify --head ID:HASH`` checks it is still there). The
        head this machine saw before must still be in the chain: otherwise it is kept,
        not replaced by the head of a rewritten chain, and the run warns."""
        try:
            report = records.verify(self.transport, self.layout, heads.recall(self.heads_key))
        except SlipwayError:
            return  # the records being unreachable is reported by the run itself
        head = report["head"]
        if not report["ok"]:
            problem = report["problems"][0]
            self.emit("notify", "warning", detail=f"the audit log fails verification: {problem}")
            field = ("Audit log", f"FAILS: {problem}")
        elif head is not None:
            heads.remember(self.heads_key, head)
            field = ("Audit head", f"{head['id']}:{head['hash']}")
        else:
            return
        note.fields.insert(min(len(note.fields), 9), field)  # Slack shows ten fields

    @property
    def heads_key(self) -> str:
        """This environment on this host, as the deployer's copy of audit heads names it."""
        return heads.key(self.transport.name, self.layout.base)

    def audit(self, event: str, **detail: Any) -> None:
        """Append one audit event for the deploy or rollback under way."""
        masked = self.masked(detail)
        event_row = records.audit_event(self.actor, event, self.deployment_id, **masked)
        records.save(self.transport, self.layout, audit=[event_row])

    def record_event(self, row: dict[str, Any], event: str, **detail: Any) -> None:
        """Save the deployment row and append one audit event, in one transaction."""
        audit = [records.audit_event(self.actor, event, row["id"], **self.masked(detail))]
        records.save(self.transport, self.layout, deployment=row, audit=audit)

    def masked(self, value: Any) -> Any:
        """``value`` (texts, lists, dicts) with every secret masked: audit details are
        read by people, never parsed back."""
        if isinstance(value, str):
            return self.masker(value)
        if isinstance(value, dict):
            return {key: self.masked(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.masked(item) for item in value]
        return value

    # --- endings ----------------------------------------------------------------------

    def prune(self, keep: set[str | None]) -> list[str]:
        """Delete releases beyond ``keep_releases`` (never the current or previous one, nor
        a blue-green colour's)."""
        releases = self.list_releases()
        current = self.current_release()
        protected = {r for r in keep | {current} if r}
        extra = [r for r in releases if r not in protected]
        excess = len(releases) - self.env.keep_releases
        doomed = extra[: max(0, excess)]
        for release in doomed:
            self.run(cmd.remove_tree(self.layout.release(release)))
        return doomed

    # --- blue-green colours and the router ------------------------------------------

    @property
    def canary_status_path(self) -> str:
        return f"{self.layout.state_dir}/canary.json"

    def canary_status(self) -> dict[str, Any] | None:
        """The last canary's state as its deploy left it (``deploy/canary.py``): weight,
        each step's figures per side, how it ended; None when no canary has run."""
        return read_json_object(self.transport, self.canary_status_path)

    def read_colors(self) -> dict[str, Any]:
        """``{"live": {color, release, since}|None, "standby": {...}|None}``"""
        return colors.read(self.transport, self.layout)

    def write_colors(self, data: dict[str, Any]) -> None:
        colors.write(self.transport, self.layout, data)

    def live_color(self) -> str | None:
        live = self.read_colors()["live"]
        return str(live["color"]) if live else None

    def target(self, color: str) -> Target:
        return Target(
            color, {process: self.port(process, color) for process in self.config.processes}
        )

    def router(self) -> Router:
        """The environment's router (Traefik or nginx), made once per context."""
        if self._router is None:
            bg = self.env.blue_green
            setup = RouterSetup(
                app_name=self.app_name("router"),
                directory=f"{self.layout.base}/router",
                public={process: self.port(process) for process in self.config.processes},
                bind=bg.bind,
                api_port=bg.api(self.env.ports),
                binary=bg.router_binary or bg.router.value,
                probe_paths={name: p.health_path for name, p in self.config.processes.items()},
                env=self.host_env,
                switch_timeout=bg.switch_timeout_seconds,
            )
            self._router = make_router(bg.router, self.transport, self.pm, setup)
        return self._router

    def color_online(self, color: str) -> bool:
        states = self.pm.status(self.app_names_of(color)).values()
        return all(state.online for state in states)

    def uncoloured_apps(self) -> list[str]:
        """The restart strategy's process-manager apps (no colour) that exist."""
        return [n for n, s in self.pm.status(self.app_names).items() if s.status != "missing"]

    def drain(self, color: str) -> None:
        """Stop a colour that no longer takes traffic. PM2 sends SIGINT: the app finishes
        its requests in flight and closes WebSockets with 1001 (clients reconnect to the
        live colour) within ``drain_seconds``; PM2's kill_timeout is set above that."""
        self.pm.stop(self.app_names_of(color))
        self.pm.save()
        self.audit("color.drained", color=color)
