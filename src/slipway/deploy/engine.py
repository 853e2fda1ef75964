"""One deploy (or rollback) of one environment on one host, step by step.

Steps, in order: lock, resolve, upload, link shared state, install, build, back up the
database, swap processes, health gate, promote (``current`` symlink), record and prune.
Nothing the live site uses changes before the swap; a failure at or after the swap
rolls back in reverse: new processes stopped, database restored if its schema changed,
previous release started again and gated on health, ``current`` untouched, the failed
release kept for inspection, the lock released, the record naming the failed step.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slipway.backups.store import BackupStore
from slipway.commands import build as build_cmd
from slipway.commands import host as cmd
from slipway.config.load import LoadedConfig
from slipway.config.model import (
    EnvironmentConfig,
    HealthLevel,
    ProcessConfig,
    ProcessKind,
    ProcessManagerName,
    Strategy,
)
from slipway.deploy import runspec
from slipway.deploy.journal import Journal
from slipway.deploy.run import Emit, Outcome, Recovery, RunState, StepEvent
from slipway.deploy.source import Source, release_id, resolve
from slipway.errors import (
    DeployFailed,
    HealthCheckFailed,
    LockLost,
    SlipwayError,
    UsageError,
)
from slipway.health import build_checks, wait_healthy
from slipway.health import host as host_health
from slipway.health.checks import Check
from slipway.health.gate import GateReport
from slipway.notify import Delivery, Notification, Notifier, message
from slipway.processes import ProcessManager, make_process_manager
from slipway.processes.base import AppSpec
from slipway.secrets import Masker
from slipway.state import records
from slipway.state.host import Layout, call
from slipway.state.lock import DeployLock
from slipway.transports.base import Transport

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BIND_HOST = "127.0.0.1"
RELEASE_META = ".slipway-release.json"
DISK_FULL = "No space left on device"
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


class Deployer:
    """Deploys one environment of one app to one host through ``transport``."""

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
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.env_name = env_name
        self.env: EnvironmentConfig = self.config.environment(env_name)
        if self.env.root is None:
            raise UsageError(f"environment {env_name!r} is not deployed (no root)")
        self.transport = transport
        self.masker = masker or transport.masker
        self.emit_fn = emit or (lambda event: None)
        self.actor = actor or getpass.getuser()
        self.layout = Layout(self.env.root, env_name)
        # Locally the deployer's PATH is the host's; over SSH a login shell is not run,
        # so the standard directories are used, after any configured host_path.
        base_path = (
            os.environ.get("PATH", DEFAULT_PATH) if transport.name == "local" else DEFAULT_PATH
        )
        self.host_env = {**self.env.host_env, "PATH": ":".join([*self.env.host_path, base_path])}
        if self.env.pm2_home:
            self.host_env["PM2_HOME"] = self.env.pm2_home
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
        self.identity: Path | None = None  # age identity file, to restore encrypted backups
        self.notifier = notifier or Notifier.for_env(self.config, env_name, self.masker)
        self.last_incident: tuple[str, str] | None = None  # (path on the host, masked text)
        self.lock: DeployLock | None = None  # held by the command under way
        self.recovered: Recovery | None = None  # an unfinished run completed by take_lock
        self.journal: Journal | None = None  # of the deploy or rollback under way

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
        return self.env.strategy is Strategy.BLUE_GREEN

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
        result = self.transport.run(cmd.readlink(self.layout.current), check=False)
        target = result.stdout.strip()
        return target.rsplit("/", 1)[-1] if result.ok and target else None

    def list_releases(self) -> list[str]:
        result = self.transport.run(cmd.list_dir(self.layout.releases), check=False)
        return sorted(line for line in result.stdout.split() if not line.endswith(".tar"))

    # --- the deploy -----------------------------------------------------------------

    def deploy(
        self,
        ref: str,
        *,
        lock_wait: float = 0,
        reason: str = "deploy",
        breaking: bool | None = None,
    ) -> Outcome:
        """Deploy ``ref``. ``breaking`` overrides ``[migrations] breaking`` for this
        release (see :mod:`slipway.deploy.hold`)."""
        repo = self.loaded.repository_path()
        if repo is None:
            raise UsageError("deploying from a remote repository URL is not supported yet")
        source = resolve(repo, ref)
        if breaking is None:
            breaking = self.config.migrations.is_breaking(source.ref, source.commit)
        self._mask_env_file_early()
        self._run_hooks("pre_deploy", source, "")
        started = time.monotonic()
        lock = self.take_lock(ref=ref, reason=reason, wait=lock_wait)
        try:
            outcome = self._deploy_locked(source, started, breaking)
        finally:
            lock.release()
        if outcome.status == "succeeded":
            self._run_hooks("post_deploy", source, outcome.release)
        return outcome

    def take_lock(self, *, ref: str, reason: str, wait: float) -> DeployLock:
        """Take the environment's lock, then complete any run a previous command left
        unfinished (killed, disconnected, or ended by a forced lock release) before this
        one changes anything. Every command that changes live state starts here."""
        lock = DeployLock(self.transport, self.layout)
        with self.step("lock"):
            lock.acquire(actor=self.actor, ref=ref, reason=reason, wait=wait)
        self.lock = lock
        try:
            self.recovered = recovery.complete_interrupted(self)
        except BaseException:
            lock.release()
            raise
        return lock

    def check_lock(self) -> None:
        """Raise LockLost when this run no longer holds the lock (``slipway lock
        --release --force`` ended it): it must not change anything more."""
        if self.lock is not None and self.lock.lost():
            raise LockLost(
                f"this {self.journal_kind()} lost {self.env_name}'s lock (released by force)"
                f" and stopped before step '{self.journal.step if self.journal else '-'}'",
                hint="the next command that takes the lock recovers what it changed",
            )

    def journal_kind(self) -> str:
        return str(self.journal.data.get("kind", "deploy")) if self.journal else "deploy"

    def checkpoint(self, step: str, state: RunState, **assume: Any) -> None:
        """Journal ``state`` before a change to live state inside ``step``; ``assume``
        overrides fields as if the change were already made (``switched=True`` before a
        switch): the journal holds the worst case, and undoing it is idempotent."""
        self.check_lock()
        if self.journal is not None:
            self.journal.intent(step, state, **assume)

    def _deploy_locked(self, source: Source, started: float, breaking: bool) -> Outcome:
        deployment_id = uuid.uuid4().hex[:12]
        self.deployment_id = deployment_id
        release = release_id(source)
        previous = self.current_release()
        if self.blue_green:
            self.build_color = bluegreen.next_color(self)
        row: dict[str, Any] = {
            "id": deployment_id,
            "env": self.env_name,
            "ref": source.ref,
            "commit_sha": source.commit,
            "committed_at": source.committed_at,
            "message": self.masker(source.message)[:500],
            "release": release,
            "actor": self.actor,
            "started_at": time.time(),
            "status": "running",
            "previous_release": previous,
            "kind": "deploy",
        }
        self.transport.run(cmd.mkdir_p(self.layout.state_dir))
        self.record_event(
            row,
            "deploy.started",
            ref=source.ref,
            commit=source.commit,
            release=release,
            breaking=breaking,
        )
        self.journal = Journal.begin(
            self.transport,
            self.layout,
            kind="deploy",
            strategy=self.env.strategy.value,
            row=row,
            build_color=self.build_color,
            guard=self.check_lock,
        )
        state = RunState()
        current_step = "prepare"
        try:
            steps: list[tuple[str, Callable[[], None]]] = [
                ("upload", lambda: self._upload(source, release)),
                ("link", lambda: self._link_shared(release)),
                ("install", lambda: self._install(source, release, previous)),
                ("build", lambda: self._build(source, release, previous)),
            ]
            if breaking:
                steps.append(("hold", lambda: hold.hold_writers(self, state)))
            steps.append(("backup", lambda: self._backup(release, source.commit, state)))
            if self.blue_green:
                steps += bluegreen.deploy_steps(self, release, previous, state, source)
            else:
                steps += [
                    ("start", lambda: self._swap(release, previous, state, source)),
                    ("health", lambda: self._gate(state)),
                    ("promote", lambda: self.promote(release)),
                ]
            for name, action in steps:
                current_step = name
                self.checkpoint(name, state)
                with self.step(name):
                    action()
                    hold.check_deadline(self, state)
                self.journal.done(name, state)
        except LockLost:
            raise  # another command owns the environment now: touch nothing
        except (Exception, KeyboardInterrupt) as exc:
            # Every failure ends in the same rollback path, Ctrl-C included: stopping
            # half way could leave requests held and the old colour stopped.
            return self._fail(row, current_step, exc, previous, state, started)
        self._finish_success(row, release, previous, started, state)
        return Outcome(
            deployment_id,
            release,
            source.commit,
            "succeeded",
            time.monotonic() - started,
            self.steps,
            state.gate.summary() if state.gate else "",
            state.hold_result.summary() if state.hold_result else "",
        )

    # --- steps ----------------------------------------------------------------------

    def _upload(self, source: Source, release: str) -> None:
        archive = source.archive()
        target = self.layout.release(release)
        remote_tar = f"{target}.tar"
        try:
            self.run(cmd.mkdir_p(target, self.layout.shared, self.layout.logs))
            self.transport.put(archive, remote_tar, mode=0o600)
            self.run(cmd.extract_tar(remote_tar, target))
            meta = {"commit": source.commit, "ref": source.ref, "message": source.message}
            self.transport.put_text(json.dumps(meta), f"{target}/{RELEASE_META}")
        finally:
            archive.unlink(missing_ok=True)
            self.transport.run(cmd.remove_tree(remote_tar), check=False)

    def _env_file_path(self) -> str | None:
        return f"{self.layout.shared}/{self.env.env_file}" if self.env.env_file else None

    def _read_env_file(self) -> dict[str, str]:
        """The env file's values, read once per Deployer and added to the masker."""
        if self._env_values is not None:
            return self._env_values
        path = self._env_file_path()
        if path is None:
            return {}
        result = self.transport.run(["cat", "--", path], check=False)
        if not result.ok:
            raise SlipwayError(
                f"env file {path} is missing on the host",
                hint=f"create it (mode 0600) with the keys: {', '.join(self.env.required_env)}",
            )
        values = parse_env_file(result.stdout)
        self.masker.add(*values.values())
        self._env_values = values
        return values

    def missing_env_keys(self) -> list[str]:
        """Required keys the host's env file lacks (an error if the file is missing)."""
        values = self._read_env_file()
        return [key for key in self.env.required_env if not values.get(key)]

    def _mask_env_file_early(self) -> None:
        """Know the secrets before hooks run; a missing file is reported by the link step."""
        with contextlib.suppress(SlipwayError):
            self._read_env_file()

    def _link_shared(self, release: str) -> None:
        values = self._read_env_file()
        missing = [key for key in self.env.required_env if not values.get(key)]
        if missing:
            raise SlipwayError(
                f"env file {self._env_file_path()} lacks required keys: {', '.join(missing)}"
            )
        path = self._env_file_path()
        if path is not None:
            self.run(cmd.chmod("600", path))
            target = f"{self.layout.release(release)}/{self.env.env_file}"
            self.run(["ln", "-sfn", path, target])
        db_dir = self.layout.database(self.env.database).rsplit("/", 1)[0]
        self.run(cmd.mkdir_p(db_dir))

    def _workdir(self, release: str, process: ProcessConfig) -> str:
        base = self.layout.release(release)
        return base if process.workdir == "." else f"{base}/{process.workdir}"

    def _reuse(
        self, source: Source, release: str, previous: str | None, path: str, what: str
    ) -> bool:
        """Hard-link the frontend's ``path`` from the previous release when its inputs
        (lock file for node_modules; sources and build-time env for the build) are
        unchanged. Releases stay immutable: hard links share files, never directories."""
        frontend = self.config.processes.get("frontend")
        key = self._content_key(source, what)
        if frontend is None or key is None:
            return False
        # The previous release first; blue-green alternates colours, so a build for this
        # colour is usually the one before it.
        kept = [r for r in reversed(self.list_releases()) if r not in (release, previous)]
        for candidate in [previous, *kept][:4]:
            if candidate is None or self.release_meta(candidate).get(what) != key:
                continue
            src = f"{self._workdir(candidate, frontend)}/{path}"
            if not self.transport.run(["test", "-e", src], check=False).ok:
                continue
            self.run(cmd.hardlink_copy(src, f"{self._workdir(release, frontend)}/{path}"))
            return True
        return False

    def release_meta(self, release: str) -> dict[str, Any]:
        result = self.transport.run(
            ["cat", "--", f"{self.layout.release(release)}/{RELEASE_META}"], check=False
        )
        try:
            meta: dict[str, Any] = json.loads(result.stdout) if result.ok else {}
        except json.JSONDecodeError:
            meta = {}
        return meta

    def _content_key(self, source: Source, what: str) -> str | None:
        frontend = self.config.processes.get("frontend")
        if frontend is None:
            return None
        if what == "node_modules":
            return source.tree(f"{frontend.workdir}/package-lock.json")
        tree = source.tree(frontend.workdir)
        if tree is None:
            return None
        env = json.dumps(self.build_env(frontend), sort_keys=True)
        return hashlib.sha256(f"{tree}\n{env}".encode()).hexdigest()

    def save_meta(self, release: str, **values: Any) -> None:
        meta = self.release_meta(release)
        meta.update(values)
        self.transport.put_text(json.dumps(meta), f"{self.layout.release(release)}/{RELEASE_META}")

    def _install(self, source: Source, release: str, previous: str | None) -> None:
        for name, process in self.config.processes.items():
            workdir = self._workdir(release, process)
            if process.kind is ProcessKind.PYTHON:
                venv = f"{self.layout.release(release)}/.venv"
                self.run(build_cmd.uv_venv(venv), cwd=workdir)
                if process.requirements:
                    self.run(build_cmd.uv_install(venv, process.requirements), cwd=workdir)
            if process.install:
                if name == "frontend" and self._reuse(
                    source, release, previous, "node_modules", "node_modules"
                ):
                    self.emit("install", "info", detail=f"{name}: node_modules unchanged, reused")
                else:
                    self.run(process.install, cwd=workdir, timeout=900)
        key = self._content_key(source, "node_modules")
        if key:
            self.save_meta(release, node_modules=key)

    def build_env(self, process: ProcessConfig, color: str | None = None) -> dict[str, str]:
        """Build-time variables. In blue-green a build points at its own colour's backend
        (so the new frontend talks to the new backend in smoke tests and after the switch);
        ``{public_backend_port}`` is the router's port, for addresses browsers use."""
        color = color or self.build_color
        values = {
            "host": BIND_HOST,
            "backend_port": str(self.port("backend", color)),
            "frontend_port": str(self.port("frontend", color)),
            "public_backend_port": str(self.env.ports.backend),
            "public_frontend_port": str(self.env.ports.frontend),
        }
        rendered = {k: build_cmd.render([v], values)[0] for k, v in process.build_env.items()}
        return {**rendered, "NEXT_TELEMETRY_DISABLED": "1"}

    def _build(self, source: Source, release: str, previous: str | None) -> None:
        for name, process in self.config.processes.items():
            if not process.build:
                continue
            workdir = self._workdir(release, process)
            if name == "frontend" and self._reuse(source, release, previous, ".next", "build"):
                self.emit("build", "info", detail=f"{name}: sources unchanged, build reused")
                continue
            self.run(process.build, cwd=workdir, env_extra=self.build_env(process))
        key = self._content_key(source, "build")
        if key:
            self.save_meta(release, build=key, built_for=self.build_color or "public")
        runspec.save(
            self.transport,
            self.layout.release(release),
            self.configured_processes(),
            list(self._read_env_file()),
        )

    def configured_processes(self) -> dict[str, ProcessConfig]:
        return {str(name): process for name, process in self.config.processes.items()}

    def processes_of(self, release: str) -> dict[str, ProcessConfig]:
        """How ``release``'s processes start: its own run spec (saved when it was built),
        or the configuration for a release built before run specs existed."""
        cached = self._specs.get(release)
        if cached is None:
            cached = runspec.load(self.transport, self.layout.release(release))
            cached = cached if cached is not None else self.configured_processes()
            self._specs[release] = cached
        return cached

    def _backup(self, release: str, commit: str, state: RunState) -> None:
        """Always taken (the automatic rollback restores from it); sealed (encrypted) and
        subject to retention when the deploy ends."""
        db = self.layout.database(self.env.database)
        state.db_before = call(self.transport, "describe", db=db)
        if not state.db_before.get("exists"):
            self.emit("backup", "info", detail="no database yet: nothing to back up")
            return
        manifest = self.backups.create(db, reason="pre-deploy", release=release, commit=commit)
        if manifest is None:  # the database vanished in between: nothing to back up
            return
        state.backup = manifest
        state.backup_path = self.backups.path_of(manifest)
        self.emit(
            "backup",
            "info",
            detail=f"{state.backup_path} ({manifest['size']} bytes, {manifest['seconds']}s)",
        )

    def finish_backup(self, state: RunState, *, keep: bool) -> str:
        """After the deploy: seal the pre-deploy backup (or drop it when backups are off
        and it was not needed), then apply retention. Never fails the deploy."""
        try:
            if state.backup is not None:
                if keep or self.env.backups.enabled:
                    self.backups.seal(state.backup)
                else:
                    self.backups.remove(state.backup)
            plan = self.backups.prune()
        except SlipwayError as exc:
            return f"backup housekeeping failed: {exc}"
        return f"{len(plan.delete)} old backups pruned" if plan.delete else ""

    def app_specs(
        self,
        release: str,
        source_commit: str,
        color: str | None = None,
        ports: dict[str, int] | None = None,
    ) -> list[AppSpec]:
        """Each process's PM2 app; ``ports`` overrides where a process listens (the
        restore test runs a backend on a free port)."""
        env_values = self._read_env_file()
        specs = []
        for name, process in self.processes_of(release).items():
            port = (ports or {}).get(name) or self.port(name, color)
            workdir = self._workdir(release, process)
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
            if process.kind is ProcessKind.PYTHON:
                env["DATABASE_PATH"] = self.layout.database(self.env.database)
            else:
                env["NODE_ENV"] = "production"
            kill_ms = int((process.drain_seconds + 3) * 1000)
            specs.append(
                AppSpec(self.app_name(name, color), argv, workdir, env, kill_ms, self.layout.logs)
            )
        return specs

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
                time.sleep(0.2)

    def _swap(self, release: str, previous: str | None, state: RunState, source: Source) -> None:
        specs = self.app_specs(release, source.commit)
        state.swapped = True
        self.checkpoint("start", state)
        self.pm.stop(self.app_names)
        self.ensure_ports_free()
        self.pm.start(specs, f"{self.layout.release(release)}/.slipway-ecosystem.json")

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
        if health.processes and self.env.process_manager is ProcessManagerName.PM2:
            names = self.serving(color, via_router)
            found.append(host_health.processes_check(lambda: self.pm.status(names)))
        if health.disk and disk:
            found.append(host_health.disk_check(self.disk_free, self.env.monitor.disk_free_percent))
        if health.sqlite is not None:
            query = health.sqlite.query
            found.append(host_health.sqlite_check(health.sqlite.name, lambda: self.probe_db(query)))
        return found

    def serving(self, color: str | None = None, via_router: bool = True) -> list[str]:
        """The process-manager apps that serve traffic: a colour's (the live one unless
        named), plus the router when traffic comes through the public ports."""
        if not self.blue_green:
            return self.app_names
        color = color or bluegreen.live_color(self)
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
        )

    def _gate_abort(self, color: str | None) -> str | None:
        self.check_lock()  # a forced release ends a deploy waiting in its gate, too
        return self.processes_abort(color)

    def _gate(self, state: RunState) -> None:
        state.gate = self.gate_report()
        if not state.gate.ok:
            raise HealthCheckFailed(f"health gate failed: {state.gate.summary()}")
        self.emit("health", "info", detail=state.gate.summary())

    def end_journal(self) -> None:
        """The run's record is final: its journal has nothing left to recover."""
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    def promote(self, release: str) -> None:
        self.run(cmd.symlink_temp(self.layout.release(release), self.layout.current))
        self.run(cmd.rename_over(f"{self.layout.current}.new", self.layout.current))
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
        deliveries = self.notifier.send(note)
        for delivery in deliveries:
            event = "notify.sent" if delivery.ok else "notify.failed"
            detail = f"{delivery.channel}: {delivery.error or 'sent'}"
            self.emit("notify", "info" if delivery.ok else "warning", delivery.seconds, detail)
            # The records being unreachable is reported by the deploy itself.
            with contextlib.suppress(SlipwayError):
                self.audit(event, notification=note.event.value, **delivery.as_dict())
        return deliveries

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

    def _finish_success(
        self,
        row: dict[str, Any],
        release: str,
        previous: str | None,
        started: float,
        state: RunState,
    ) -> None:
        seconds = time.monotonic() - started
        row.update(
            status="succeeded",
            finished_at=time.time(),
            duration_s=round(seconds, 3),
            steps=json.dumps(self.steps),
        )
        self.record_event(
            row, "deploy.succeeded", release=release, previous=previous, seconds=round(seconds, 3)
        )
        self.end_journal()
        self.prune(keep={release, previous})
        note = self.finish_backup(state, keep=False)
        if note:
            self.emit("promote", "info", detail=note)
        self.notify(
            message.deployed(
                project=self.config.project.name,
                env=self.env_name,
                release=release,
                commit=row["commit_sha"],
                message=row["message"],
                actor=self.actor,
                seconds=seconds,
                checks=state.gate.last if state.gate else [],
                url=self.public_url(),
                extra=[("Previous", previous or "-")]
                + ([("Hold", state.hold_result.summary())] if state.hold_result else []),
            )
        )

    def _fail(
        self,
        row: dict[str, Any],
        step: str,
        exc: Exception | KeyboardInterrupt,
        previous: str | None,
        state: RunState,
        started: float,
    ) -> Outcome:
        cause = self.masker(str(exc))
        if isinstance(exc, KeyboardInterrupt):
            cause = "interrupted (Ctrl-C or SIGINT) during this step"
        rolled_back, rollback_note = True, "nothing live had changed"
        if state.swapped and self.blue_green:
            rolled_back, rollback_note = bluegreen.roll_back(self, previous, state, row["id"])
        elif state.swapped:
            rolled_back, rollback_note = roll_back_after_failure(self, previous, state, row["id"])
        if DISK_FULL in cause:
            # Keeping the failed release for inspection would keep the disk full.
            self.transport.run(cmd.remove_tree(self.layout.release(row["release"])), check=False)
            rollback_note += "; the host's disk is full: the failed release was removed"
        elif state.swapped:
            rollback_note += "; " + self._incident(
                row, step, cause, rolled_back, rollback_note, state
            )
        seconds = time.monotonic() - started
        status = "rolled_back" if rolled_back else "failed"
        row.update(
            status=status,
            finished_at=time.time(),
            duration_s=round(seconds, 3),
            failed_step=step,
            error=cause[-2000:],
            rolled_back_to=previous,
            steps=json.dumps(self.steps),
        )
        housekeeping = self.finish_backup(state, keep=True)
        if housekeeping:
            rollback_note += f"; {housekeeping}"
        try:
            self.record_event(
                row, "deploy.failed", step=step, error=cause[-500:], rollback=rollback_note
            )
            self.end_journal()
            self.prune(keep={row["release"], previous})
        except SlipwayError as record_error:  # the deploy's own error matters more
            rollback_note += f"; the failure could not be recorded: {record_error}"
        self.notify(
            message.deploy_failed(
                project=self.config.project.name,
                env=self.env_name,
                release=row["release"],
                commit=row["commit_sha"],
                actor=self.actor,
                step=step,
                error=cause,
                rolled_back=rolled_back,
                rollback=rollback_note,
                url=self.public_url(),
            )
        )
        raise DeployFailed(step, cause, rolled_back=rolled_back, hint=rollback_note) from exc

    def _incident(
        self,
        row: dict[str, Any],
        step: str,
        cause: str,
        rolled_back: bool,
        note: str,
        state: RunState,
    ) -> str:
        """Write the incident report of a failure that touched the live processes."""
        report = Incident(
            env=self.env_name,
            kind="failed deploy",
            deployment_id=row["id"],
            actor=self.actor,
            release=row["release"],
            previous=row.get("previous_release"),
            commit=row["commit_sha"],
            failed_step=step,
            error=cause[-3000:],
            outcome=note,
            rolled_back=rolled_back,
            backup=state.backup_path,
            steps=list(self.steps),
        )
        try:
            return f"incident report: {incident.write(self, report)}"
        except SlipwayError as exc:  # the deploy's own error matters more
            return f"the incident report could not be written: {exc}"

    def prune(self, keep: set[str | None]) -> list[str]:
        """Delete releases beyond ``keep_releases`` (never the current or previous one, nor
        a blue-green colour's)."""
        releases = self.list_releases()
        current = self.current_release()
        if self.blue_green:  # the warm standby's release is running: never delete it
            colors = bluegreen.read_colors(self)
            keep = keep | {c["release"] for c in colors.values() if c}
        protected = {r for r in keep | {current} if r}
        extra = [r for r in releases if r not in protected]
        excess = len(releases) - self.env.keep_releases
        doomed = extra[: max(0, excess)]
        for release in doomed:
            self.run(cmd.remove_tree(self.layout.release(release)))
        return doomed

    def _run_hooks(self, which: str, source: Source, release: str) -> None:
        hooks = getattr(self.env.hooks, which)
        env = {
            "SLIPWAY_ENV": self.env_name,
            "SLIPWAY_REF": source.ref,
            "SLIPWAY_COMMIT": source.commit,
            "SLIPWAY_RELEASE": release,
            "SLIPWAY_ACTOR": self.actor,
            "SLIPWAY_HOOK": which,
        }
        for argv in hooks:
            with self.step(f"hook {which}"):
                result = subprocess.run(
                    argv,
                    env={**_os_environ(), **env},
                    capture_output=True,
                    text=True,
                    cwd=self.loaded.base_dir,
                    check=False,
                )
                if result.returncode != 0:
                    tail = self.masker((result.stdout + result.stderr).strip()[-800:])
                    command = self.masker(shlex.join(argv))
                    raise SlipwayError(
                        f"{which} hook failed (exit {result.returncode}): {command}\n{tail}",
                        hint="nothing was changed" if which == "pre_deploy" else None,
                    )


from slipway.deploy import bluegreen, hold, incident, recovery  # noqa: E402 - import cycle
from slipway.deploy.incident import Incident  # noqa: E402
from slipway.deploy.restart import roll_back_after_failure  # noqa: E402 - import cycle


def _os_environ() -> dict[str, str]:
    return dict(os.environ)
