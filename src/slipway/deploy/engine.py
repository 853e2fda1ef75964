"""One deploy of one environment on one host: the pipeline, in phases.

- **prepare** (nothing the live site uses changes): lock (an interrupted run is
  recovered first), upload, link, install, build, backup (:mod:`slipway.deploy.steps`);
  a release with breaking migrations adds the strategy's hold point before the backup.
- **activate**: the strategy's steps (restart: start, health, promote; blue-green:
  start, health, switch, watch, promote), each journaled before it changes live state.
- **commit**: the record, prune, backup housekeeping, notification, post-deploy hooks.
- **abort**: any failure (Ctrl-C included) calls the strategy's ``recover``, which undoes
  activate as far as it got: the failed release is kept for inspection, the record names
  the failed step, the incident report says what the undo did.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slipway.commands import host as cmd
from slipway.config.deep import refuse_stale_locks
from slipway.deploy import (
    database,
    hold,
    incident,
    recovery,
    rehearsal,
    split,
    steps,
    strategies,
    venvs,
)
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
from slipway.deploy.strategy import Step, Strategy
from slipway.errors import DeployFailed, LockLost, SlipwayError, UsageError
from slipway.notify import message
from slipway.notify.message import Notification
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


@dataclass(frozen=True)
class DeployPlan:
    """What this deploy was asked to do about the database."""

    breaking: bool  # force the hold (``--breaking`` or ``[migrations] breaking``)
    rehearse: bool  # run the migrations on a copy first
    allow_data_loss: tuple[str, ...]  # tables the migrations may empty or drop


PROMOTE = "promote"  # the strategy's last step: it moves ``current``


@dataclass
class HostRun:
    """One host's deploy under way, between its phases."""

    source: Source
    plan: DeployPlan
    row: dict[str, Any]
    release: str
    previous: str | None
    state: RunState
    started: float
    activation: list[Step] | None = None  # the strategy's steps, asked once


def new_release_id(source: Source, kept: set[str]) -> str:
    """``<time>-<sha8>``; a second deploy of one commit within the same second gets a
    suffix, never the directory of a release that may be serving (``kept``: on every
    host a fleet deploys to)."""
    base = release_id(source)
    release, n = base, 1
    while release in kept:
        release, n = f"{base}-{n}", n + 1
    return release


class Deployer(HostContext):
    """Deploys one environment of one app to one host: the deploy flow on top of the
    host context's tools."""

    rehearsed: rehearsal.Rehearsal | None = None  # what the migration rehearsal found
    current_step = "prepare"
    quiet = False  # a fleet member: the fleet notifies once for all its hosts
    # A fleet member: raises when another host failed, so this one stops at its next step.

    def deploy(
        self,
        ref: str,
        *,
        lock_wait: float = 0,
        reason: str = "deploy",
        breaking: bool | None = None,
        rehearse: bool | None = None,
        allow_data_loss: Sequence[str] = (),
    ) -> Outcome:
        """Deploy ``ref``. ``breaking`` forces the hold for this release (see
        :mod:`slipway.deploy.hold`); otherwise the migration rehearsal decides
        (``rehearse``, default ``[migrations] rehearse``; see
        :mod:`slipway.deploy.rehearsal`). ``allow_data_loss`` names the tables the
        release's migrations may empty or drop."""
        source, plan = self.deploy_plan(ref, breaking, rehearse, allow_data_loss)
        steps.mask_env_file_early(self)
        steps.run_hooks(self, "pre_deploy", source, "")
        started = time.monotonic()
        lock = self.take_lock(ref=ref, reason=reason, wait=lock_wait)
        try:
            outcome = self._deploy_locked(source, started, plan)
        finally:
            lock.release()
        if outcome.status == "succeeded":
            steps.run_hooks(self, "post_deploy", source, outcome.release)
        return outcome

    def deploy_plan(
        self,
        ref: str,
        breaking: bool | None,
        rehearse: bool | None,
        allow_data_loss: Sequence[str],
    ) -> tuple[Source, DeployPlan]:
        """The commit to deploy and what to do about its database, before any lock: a
        stale lock file is refused here (see :mod:`slipway.config.deep`). One host's
        deploy and a fleet's ask the same."""
        repo = self.loaded.repository_path()
        if repo is None:
            raise UsageError("deploying from a remote repository URL is not supported yet")
        source = resolve(repo, ref)
        self._refuse_stale_locks(source)
        if breaking is None:
            breaking = self.config.migrations.is_breaking(source.ref, source.commit)
        if rehearse is None:
            rehearse = self.config.migrations.rehearse
        self.strategy.refuse_up_front(self, breaking, rehearse)
        return source, DeployPlan(breaking, rehearse, tuple(allow_data_loss))

    def rehearse_only(self, ref: str, *, lock_wait: float = 0) -> rehearsal.Rehearsal | None:
        """``slipway plan --rehearse``: the deploy's prepare steps up to the rehearsal, in
        a hidden scratch release that is removed afterwards. Nothing live changes and
        nothing is recorded; the lock is held meanwhile (the install and the snapshot
        must not race a deploy)."""
        repo = self.loaded.repository_path()
        if repo is None:
            raise UsageError("rehearsing from a remote repository URL is not supported yet")
        source = resolve(repo, ref)
        self._refuse_stale_locks(source)
        steps.mask_env_file_early(self)
        lock = self.take_lock(ref=ref, reason="plan --rehearse", wait=lock_wait)
        release = f".rehearse-{uuid.uuid4().hex[:8]}"
        try:
            previous = self.current_release()
            with self.step("upload"):
                steps.upload(self, source, release)
            with self.step("link"):
                steps.link_shared(self, release)
            with self.step("install"):
                steps.install(self, source, release, previous)
            with self.step("rehearse"):
                return rehearsal.rehearse(self, release, source.commit)
        finally:
            self.transport.run(cmd.remove_tree(self.layout.release(release)), check=False)
            lock.release()

    def _refuse_stale_locks(self, source: Source) -> None:
        """Before the lock: a lock file that no longer fits its manifest is refused; one
        that could not be checked is a warning (see :mod:`slipway.config.deep`)."""
        for warning in refuse_stale_locks(self.config, source, source.ref):
            self.emit("lock", "warning", detail=warning)

    @property
    def strategy(self) -> Strategy:
        """This environment's strategy (``strategy`` in the configuration)."""
        return strategies.for_env(self.env)

    def take_lock(self, *, ref: str, reason: str, wait: float) -> DeployLock:
        """See :func:`slipway.deploy.recovery.take_lock`."""
        return recovery.take_lock(self, ref=ref, reason=reason, wait=wait)

    def _new_release_id(self, source: Source) -> str:
        return new_release_id(source, set(self.list_releases()))

    def _deploy_locked(self, source: Source, started: float, plan: DeployPlan) -> Outcome:
        run = self.begin(source, started, plan)
        try:
            self.prepare(run)
            self.activate(run)
            self.promote_run(run)
        except LockLost:
            raise  # another command owns the environment now: touch nothing
        except (Exception, KeyboardInterrupt) as exc:
            # A step that failed because another command took the environment (its lock
            # was released by force, and the new holder cleared our scratch files) must
            # not undo or record anything either: that command recovers this run.
            self.check_lock()
            # Every failure ends in the same rollback path, Ctrl-C included: stopping
            # half way could leave requests held and the old colour stopped.
            return self.fail(run, exc)
        return self.succeed(run)

    # --- the phases, one call each (a fleet calls them host by host, in waves) --------

    def begin(
        self,
        source: Source,
        started: float,
        plan: DeployPlan,
        *,
        deployment_id: str | None = None,
        release: str | None = None,
        fleet: dict[str, Any] | None = None,
    ) -> HostRun:
        """The record and the journal of a new run (the caller holds the lock). A fleet
        gives every host the same ``deployment_id`` and ``release`` and journals its
        ``fleet`` (id and hosts) so a recovery can tell whether the fleet had decided to
        commit."""
        split.refuse_while_active(self, "deploy")  # under the lock, on every host
        self.deployment_id = deployment_id or uuid.uuid4().hex[:12]
        release = release or self._new_release_id(source)
        previous = self.current_release()
        self.build_color = self.strategy.build_color(self)
        row = self.new_record(
            "deploy",
            ref=source.ref,
            release=release,
            previous=previous,
            commit=source.commit,
            committed_at=source.committed_at,
            message=self.masker(source.message)[:500],
        )
        self.transport.run(cmd.mkdir_p(self.layout.state_dir))
        # The journal first: a run killed before its record is written is still ended by
        # the next command (a record left "running" with no journal is never fixed).
        self.begin_journal("deploy", row)
        if fleet is not None and self.journal is not None:
            self.journal.note(fleet=fleet)
        self.record_event(
            row,
            "deploy.started",
            ref=source.ref,
            commit=source.commit,
            release=release,
            breaking=plan.breaking,
        )
        self.current_step = "prepare"
        return HostRun(source, plan, row, release, previous, RunState(), started)

    def prepare(self, run: HostRun) -> None:
        """Upload, link, install, build, rehearse and (unless the release holds) back up:
        nothing the live site uses changes."""
        source, release, previous = run.source, run.release, run.previous
        self._run_steps(
            [
                ("upload", lambda: steps.upload(self, source, release)),
                ("link", lambda: steps.link_shared(self, release)),
                ("install", lambda: steps.install(self, source, release, previous)),
                ("build", lambda: steps.build(self, source, release, previous)),
            ],
            run.state,
        )
        if run.plan.rehearse:
            self._run_steps(
                [
                    (
                        "rehearse",
                        lambda: self._rehearse(run.row, release, source, run.plan, previous),
                    )
                ],
                run.state,
            )
        run.state.holds, run.state.rehearsed = self._holds(run), run.plan.rehearse
        self.strategy_steps(run)  # a strategy may refuse the release here, before a backup
        if not self._holds(run):
            self._run_steps([self._backup_step(run)], run.state)

    def activate(self, run: HostRun) -> None:
        """The hold and its backup when the release holds, then the strategy's steps up
        to (not including) its promote."""
        later: list[Step] = []
        if self._holds(run):
            later += [("hold", lambda: self.strategy.hold(self, run.state)), self._backup_step(run)]
        later += [s for s in self.strategy_steps(run) if s[0] != PROMOTE]
        self._run_steps(later, run.state)

    def promote_run(self, run: HostRun) -> None:
        """The strategy's promote: ``current`` moves to the release."""
        self._run_steps([s for s in self.strategy_steps(run) if s[0] == PROMOTE], run.state)

    def mark_fleet_commit(self, commit: bool = True) -> None:
        """Every host of the fleet passed its gates: from here a recovery of this run
        finishes its promote instead of undoing it (see :mod:`slipway.deploy.fleet`).
        ``False`` takes a mark back (another host's could not be written)."""
        if self.journal is not None:
            self.journal.note(fleet={**self.journal.data.get("fleet", {}), "commit": commit})

    def succeed(self, run: HostRun) -> Outcome:
        self._finish_success(run.row, run.release, run.previous, run.started, run.state)
        return Outcome(
            str(self.deployment_id),
            run.release,
            run.source.commit,
            "succeeded",
            time.monotonic() - run.started,
            self.steps,
            run.state.gate.summary() if run.state.gate else "",
            run.state.hold_result.summary() if run.state.hold_result else "",
            self.rehearsed.to_json() if self.rehearsed else None,
        )

    def fail(self, run: HostRun, exc: Exception | KeyboardInterrupt) -> Outcome:
        """Undo, record, notify; raises :class:`DeployFailed`."""
        return self._fail(run.row, self.current_step, exc, run.previous, run.state, run.started)

    def _holds(self, run: HostRun) -> bool:
        return run.plan.breaking or (self.rehearsed is not None and self.rehearsed.holds)

    def _backup_step(self, run: HostRun) -> Step:
        return ("backup", lambda: steps.backup(self, run.release, run.previous, run.state))

    def strategy_steps(self, run: HostRun) -> list[Step]:
        """The strategy's steps for ``run``, asked once (again when a fleet cleared them:
        it learnt something after this host's prepare)."""
        if run.activation is None:
            run.activation = self.strategy.activate(
                self, run.release, run.previous, run.source.commit, run.state
            )
        return run.activation

    def _run_steps(self, plan: list[Step], state: RunState) -> None:
        """Each step journaled before it runs and after it ends; a hold's deadline is
        checked after every step."""
        for name, action in plan:
            if self.stop_requested is not None:
                self.stop_requested()
            self.current_step = name
            self.checkpoint(name, state)
            with self.step(name):
                action()
                hold.check_deadline(self, state)
            self.step_done(name, state)

    def _rehearse(
        self,
        row: dict[str, Any],
        release: str,
        source: Source,
        plan: DeployPlan,
        live: str | None,
    ) -> None:
        """Run the migrations on a copy and classify them (see
        :mod:`slipway.deploy.rehearsal`); a destructive release not allowed is refused
        here, before anything live changes. Skipped when the backend is the live
        release's, on the schema it left (a frontend-only or config-only deploy)."""
        if not plan.allow_data_loss and self._backend_unchanged(release, source, live):
            skipped = {"class": "unchanged", "tables": [], "skipped": f"backend as in {live}"}
            row["rehearsal"] = json.dumps(skipped)
            self.record_event(row, "deploy.rehearsed", **skipped)
            self.emit(
                "rehearse",
                "info",
                detail=f"the backend is the live release's ({live}: same files, lock,"
                " configuration and env file) on the schema it left: its migrations"
                " already ran, nothing to rehearse",
            )
            return
        found = rehearsal.rehearse(self, release, source.commit, plan.allow_data_loss)
        if found is None:
            self.emit("rehearse", "info", detail="no database yet: nothing to rehearse")
            return
        self.rehearsed = found
        row["rehearsal"] = json.dumps(found.to_json())
        self.record_event(row, "deploy.rehearsed", **found.to_json())
        self.emit("rehearse", "info", detail=f"migrations {found.classification.summary()}")
        rehearsal.refuse_data_loss(found)
        if found.allowed:
            self._allow_data_loss(row, found)
        if found.classification.holds:
            self.emit(
                "rehearse",
                "info",
                detail="the schema changes: requests are held from the backup to the switch",
            )

    def _backend_unchanged(self, release: str, source: Source, live: str | None) -> bool:
        """The backend is the live release's on the schema it left (its inputs' hash is
        saved for the next deploy). A shortcut: any error means "rehearse"."""
        try:
            inputs = rehearsal.backend_inputs(self, source)
            if inputs is not None:
                self.save_meta(release, backend_inputs=inputs)
            return rehearsal.unchanged_since(self, inputs, live)
        except SlipwayError as exc:
            self.emit("rehearse", "info", detail=f"rehearsing (the skip check failed: {exc})")
            return False

    def _allow_data_loss(self, row: dict[str, Any], found: rehearsal.Rehearsal) -> None:
        """The deployer accepted the loss: audited, written up, and the deploy holds."""
        lost = [t for t in found.classification.lost() if t.table in found.allowed]
        self.record_event(
            row,
            "data_loss.allowed",
            tables={t.table: [t.rows_before, t.rows_after] for t in lost},
        )
        report = Incident(
            env=self.env_name,
            kind="data loss allowed",
            deployment_id=row["id"],
            actor=self.actor,
            release=row["release"],
            previous=row.get("previous_release"),
            commit=row["commit_sha"],
            failed_step="rehearse",
            error="; ".join(t.describe() for t in lost),
            outcome="the deployer allowed these tables to lose rows (--allow-data-loss)",
            rolled_back=False,
            backup=None,
            steps=list(self.steps),
        )
        where = incident.write(self, report)
        self.emit(
            "rehearse",
            "warning",
            detail=f"data loss allowed by {self.actor}: {', '.join(found.allowed)};"
            f" incident report: {where}",
        )

    # --- steps ----------------------------------------------------------------------

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
        self._remember_schema(release)
        self.prune_releases(keep={release, previous} | self.strategy.protected(self))
        note = self.finish_backup(state, keep=False)
        if note:
            self.emit("promote", "info", detail=note)
        self.announce(
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
                + ([("Migrations", self.rehearsed.summary())] if self.rehearsed else [])
                + ([("Hold", state.hold_result.summary())] if state.hold_result else []),
            )
        )

    def announce(self, note: Notification) -> None:
        """A run's end, notified; a fleet's hosts stay quiet (the fleet sends one)."""
        if not self.quiet:
            self.notify(note)

    def prune_releases(self, keep: set[str | None]) -> list[str]:
        """Old releases beyond ``keep_releases``, then the shared Python environments no
        remaining release links to."""
        doomed = self.prune(keep)
        venvs.prune(self, self.list_releases())
        return doomed

    def _remember_schema(self, release: str) -> None:
        """The schema this release runs on: a later rollback to it checks it still fits
        (:func:`slipway.deploy.database.schema_fits`). Never fails the deploy."""
        try:
            self.save_meta(release, schema=database.live_schema(self))
        except SlipwayError as exc:
            self.emit("promote", "warning", detail=f"the release's schema was not saved: {exc}")

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
            rolled_back, rollback_note = self.strategy.recover(self, previous, state, row["id"])
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
            self.prune_releases(keep={row["release"], previous} | self.strategy.protected(self))
        except SlipwayError as record_error:  # the deploy's own error matters more
            rollback_note += f"; the failure could not be recorded: {record_error}"
        self.announce(
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
        hint = rollback_note
        if isinstance(exc, SlipwayError) and exc.hint:
            hint += f"; {exc.hint}"
        raise DeployFailed(step, cause, rolled_back=rolled_back, hint=hint) from exc

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
            error=cause if len(cause) <= 3000 else f"{cause[:1500]}\n...\n{cause[-1500:]}",
            outcome=note,
            rolled_back=rolled_back,
            backup=state.backup_path,
            steps=list(self.steps),
        )
        try:
            return f"incident report: {incident.write(self, report)}"
        except SlipwayError as exc:  # the deploy's own error matters more
            return f"the incident report could not be written: {exc}"
