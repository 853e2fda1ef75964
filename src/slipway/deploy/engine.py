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
import hashlib
import json
import os
import shlex
import subprocess
import time
import uuid
from typing import Any

from slipway.commands import build as build_cmd
from slipway.commands import host as cmd
from slipway.config.model import ProcessKind
from slipway.deploy import hold, incident, recovery, runspec, strategies
from slipway.deploy.context import (
    BIND_HOST,
    CRASH_LOOP_RESTARTS,
    DEFAULT_PATH,
    RELEASE_META,
    HostContext,
    parse_env_file,
)
from slipway.deploy.incident import Incident
from slipway.deploy.run import Emit, Outcome, Recovery, RunState, StepEvent
from slipway.deploy.source import Source, release_id, resolve
from slipway.deploy.strategy import Step
from slipway.errors import DeployFailed, LockLost, SlipwayError, UsageError
from slipway.notify import message
from slipway.state.host import call
from slipway.state.lock import DeployLock

DISK_FULL = "No space left on device"

__all__ = [
    "BIND_HOST",
    "CRASH_LOOP_RESTARTS",
    "DEFAULT_PATH",
    "RELEASE_META",
    "Deployer",
    "Emit",
    "Outcome",
    "Recovery",
    "StepEvent",
    "parse_env_file",
]


class Deployer(HostContext):
    """Deploys one environment of one app to one host: the deploy flow on top of the
    host context's tools."""

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
        """See :func:`slipway.deploy.recovery.take_lock`."""
        return recovery.take_lock(self, ref=ref, reason=reason, wait=wait)

    def _deploy_locked(self, source: Source, started: float, breaking: bool) -> Outcome:
        deployment_id = uuid.uuid4().hex[:12]
        self.deployment_id = deployment_id
        release = release_id(source)
        previous = self.current_release()
        strategy = strategies.for_env(self.env)
        self.build_color = strategy.build_color(self)
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
        self.begin_journal("deploy", row)
        state = RunState()
        current_step = "prepare"
        try:
            steps: list[Step] = [
                ("upload", lambda: self._upload(source, release)),
                ("link", lambda: self._link_shared(release)),
                ("install", lambda: self._install(source, release, previous)),
                ("build", lambda: self._build(source, release, previous)),
            ]
            if breaking:
                steps.append(("hold", lambda: strategy.hold(self, state)))
            steps.append(("backup", lambda: self._backup(release, source.commit, state)))
            steps += strategy.activate(self, release, previous, source.commit, state)
            for name, action in steps:
                current_step = name
                self.checkpoint(name, state)
                with self.step(name):
                    action()
                    hold.check_deadline(self, state)
                self.step_done(name, state)
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

    def _mask_env_file_early(self) -> None:
        """Know the secrets before hooks run; a missing file is reported by the link step."""
        with contextlib.suppress(SlipwayError):
            self.read_env_file()

    def _link_shared(self, release: str) -> None:
        values = self.read_env_file()
        missing = [key for key in self.env.required_env if not values.get(key)]
        if missing:
            raise SlipwayError(
                f"env file {self.env_file_path()} lacks required keys: {', '.join(missing)}"
            )
        path = self.env_file_path()
        if path is not None:
            self.run(cmd.chmod("600", path))
            target = f"{self.layout.release(release)}/{self.env.env_file}"
            self.run(["ln", "-sfn", path, target])
        db_dir = self.layout.database(self.env.database).rsplit("/", 1)[0]
        self.run(cmd.mkdir_p(db_dir))

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
            src = f"{self.workdir(candidate, frontend)}/{path}"
            if not self.transport.run(["test", "-e", src], check=False).ok:
                continue
            self.run(cmd.hardlink_copy(src, f"{self.workdir(release, frontend)}/{path}"))
            return True
        return False

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

    def _install(self, source: Source, release: str, previous: str | None) -> None:
        for name, process in self.config.processes.items():
            workdir = self.workdir(release, process)
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

    def _build(self, source: Source, release: str, previous: str | None) -> None:
        for name, process in self.config.processes.items():
            if not process.build:
                continue
            workdir = self.workdir(release, process)
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
            list(self.read_env_file()),
        )

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

    def _finish_success(
        self,
        row: dict[str, Any],
        release: str,
        previous: str | None,
        started: float,
        state: RunState,
    ) -> None:
        self.check_lock()  # a deploy that lost its lock never reports success
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
        self.prune(keep={release, previous} | strategies.for_env(self.env).protected(self))
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
        if state.swapped:
            strategy = strategies.for_env(self.env)
            rolled_back, rollback_note = strategy.recover(self, previous, state, row["id"])
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
            self.prune(
                keep={row["release"], previous} | strategies.for_env(self.env).protected(self)
            )
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


def _os_environ() -> dict[str, str]:
    return dict(os.environ)
