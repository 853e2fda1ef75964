"""A fleet deploy: one release to every host of an environment, all or nothing.

Kamal boots hosts in parallel behind a health barrier and Capistrano runs each task on
all servers at once; neither goes back on the hosts that succeeded when one fails. A
fleet deploy here is one :class:`~slipway.deploy.engine.Deployer` per host, driven
phase by phase:

1. **lock** every host (in parallel, each within ``--lock-wait``); one held lock and
   every lock taken is let go: nothing changes anywhere. Then each host settles what a
   killed command left (:func:`reconcile` first, see below).
2. **prepare** every host (``parallel`` at a time): upload, link, install, build,
   rehearse, backup. Nothing live changes, so a failure here only records it.
3. **activate** in waves of ``batch_size`` hosts: the strategy's steps up to its promote
   (start, health; blue-green also switch and watch). A wave must pass entirely before
   the next starts (the barrier). When a host fails, every host that was activated is
   recovered in reverse order (the strategy's own undo, as after any failed deploy).
4. **commit**: every host's journal says the fleet decided to commit, then every host
   promotes and records its success.

Killed part way, each host's journal still says what its undo needs, and the next
command on the fleet recovers every host. The one decision spread over several hosts
is the commit: once one host's journal carries it, every host had passed its gates, so
:func:`reconcile` carries it to the hosts whose journals do not yet say so, and each
recovery then rolls its host forward instead of back (presumed commit, as in two-phase
commit, with the journals as the participants' logs).

The record is one deployment id on every host (each host's own records and audit
chain keep its steps); one notification, one set of hooks.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from slipway.deploy import journal as journal_mod
from slipway.deploy import recovery, steps
from slipway.deploy.engine import Deployer, DeployPlan, HostRun, new_release_id
from slipway.deploy.run import Outcome
from slipway.deploy.source import Source
from slipway.errors import DeployFailed, LockHeld, LockLost, SlipwayError, UsageError
from slipway.notify import message
from slipway.state import records
from slipway.state.lock import DeployLock


class FleetStopped(SlipwayError):
    """Another host of the fleet failed: this host stops at its next step."""


@dataclass
class Member:
    """One host of the fleet and how far its deploy got."""

    name: str
    deployer: Deployer
    lock: DeployLock | None = None
    run: HostRun | None = None
    activated: bool = False
    outcome: Outcome | None = None
    error: DeployFailed | None = None


@dataclass
class FleetOutcome:
    deployment_id: str
    release: str
    commit: str
    status: str  # succeeded
    seconds: float
    hosts: list[tuple[str, Outcome]] = field(default_factory=list)
    waves: int = 1


@dataclass(frozen=True)
class Failure:
    host: str  # empty: Ctrl-C at the deployer, no host failed
    step: str
    error: Exception | KeyboardInterrupt

    def cause(self) -> str:
        if not self.host:
            return f"interrupted (Ctrl-C or SIGINT) during step '{self.step}'"
        return f"{self.host} failed at step '{self.step}': {_first_line(self.error)}"


def waves(members: Sequence[Member], batch_size: int | None) -> list[list[Member]]:
    """The activation waves, in the configuration's host order."""
    size = batch_size or len(members)
    return [list(members[i : i + size]) for i in range(0, len(members), size)]


def share_holds(members: Sequence[Member]) -> None:
    """Tell every host when one host's release holds (its rehearsal found breaking or
    destructive migrations): the strategy then decides for the fleet, not per host.
    A canary is refused, or falls back to blue-green, on every host alike, instead of
    a frontend-only host (nothing to rehearse) running a canary beside a backend host
    deployed blue-green."""
    holding = next((m.name for m in members if m.run is not None and m.run.state.holds), None)
    if holding is None:
        return
    for member in members:
        if member.run is not None and not member.run.state.holds:
            member.run.state.holds_on = holding
            member.run.activation = None  # asked again (strategy_steps), knowing it


def _fleet_of(data: dict[str, Any] | None) -> dict[str, Any] | None:
    fleet = data.get("fleet") if data else None
    return fleet if isinstance(fleet, dict) and fleet.get("id") else None


def reconcile(
    journals: dict[str, dict[str, Any] | None], outcomes: dict[str, set[str]]
) -> dict[str, bool]:
    """What each host's journal must say about its fleet's commit, for the hosts whose
    journal says otherwise. Pure (the caller writes). Per fleet id:

    - a host recorded it ``succeeded``: it committed (records outlive journals);
    - else a host recorded it ``rolled_back``: the fleet was undone;
    - else any journal saying commit decides it: every host had passed its gates
      before the first mark was written (presumed commit).

    ``outcomes``: the statuses the hosts' records hold for each fleet id."""
    decided: dict[str, bool] = {}
    for data in journals.values():
        fleet = _fleet_of(data)
        if fleet is None:
            continue
        fid = str(fleet["id"])
        statuses = outcomes.get(fid, set())
        if "succeeded" in statuses:
            decided[fid] = True
        elif "rolled_back" in statuses:
            decided[fid] = False
        else:
            decided[fid] = decided.get(fid, False) or bool(fleet.get("commit"))
    changes: dict[str, bool] = {}
    for host, data in journals.items():
        fleet = _fleet_of(data)
        if fleet is not None and bool(fleet.get("commit")) != decided[str(fleet["id"])]:
            changes[host] = decided[str(fleet["id"])]
    return changes


class FleetDeploy:
    """Deploys one release to every member, all or nothing (see the module's text)."""

    def __init__(
        self,
        members: Sequence[tuple[str, Deployer]],
        *,
        parallel: int,
        batch_size: int | None,
    ) -> None:
        if len(members) < 2:
            raise UsageError("a fleet deploy needs two hosts or more")
        self.members = [Member(name, d) for name, d in members]
        self.parallel = max(1, parallel)
        self.batch_size = batch_size
        self.stop = threading.Event()
        self.failure: Failure | None = None
        self.interrupted = False  # Ctrl-C reached the deployer (the main thread)
        self._failure_lock = threading.Lock()
        for member in self.members:
            member.deployer.quiet = True
            member.deployer.fleet_member = True
            member.deployer.stop_requested = self._stop_check(member)

    @property
    def first(self) -> Deployer:
        return self.members[0].deployer

    def deploy(
        self,
        ref: str,
        *,
        lock_wait: float = 0,
        reason: str = "deploy",
        breaking: bool | None = None,
        rehearse: bool | None = None,
        allow_data_loss: Sequence[str] = (),
    ) -> FleetOutcome:
        first = self.first
        source, plan = first.deploy_plan(ref, breaking, rehearse, allow_data_loss)
        self._each(self.members, lambda m: steps.mask_env_file_early(m.deployer))
        self._stop_if_interrupted()
        steps.run_hooks(first, "pre_deploy", source, "")
        started = time.monotonic()
        self._lock_all(ref, reason, lock_wait)
        try:
            outcome = self._deploy_locked(source, plan, started)
        finally:
            self._release_all()
        steps.run_hooks(first, "post_deploy", source, outcome.release)
        return outcome

    def _stop_if_interrupted(self) -> None:
        """Ctrl-C before anything changed: stop here, as a one-host deploy would."""
        if self.interrupted:
            self._release_all()
            raise KeyboardInterrupt

    def recover(self, *, lock_wait: float = 0) -> None:
        """``slipway recover`` on a fleet: every host's lock, the commit decision carried
        to every host, each host's interrupted run completed (``Deployer.recovered``)."""
        self._lock_all("recover", "recover", lock_wait)
        self._release_all()

    # --- locks ----------------------------------------------------------------------

    def _lock_all(self, ref: str, reason: str, wait: float) -> None:
        """Every host's lock or none; then each host settles what a killed command left,
        the fleet's commit decision carried to every host first."""

        def take(member: Member) -> None:
            member.lock = recovery.acquire(member.deployer, ref=ref, reason=reason, wait=wait)

        errors = self._each(self.members, take, stop_on_error=False)
        self._stop_if_interrupted()
        if errors:
            self._release_all()
            host, exc = errors[0]
            if isinstance(exc, SlipwayError):
                kind = LockHeld if isinstance(exc, LockHeld) else SlipwayError
                raise kind(f"{host}: {exc}", hint=_hint(exc, "nothing changed on any host"))
            raise exc
        try:
            self._carry_commit()
            errors = self._each(self.members, lambda m: recovery.settle(m.deployer), False)
            if errors:
                host, exc = errors[0]
                raise SlipwayError(f"{host}: {exc}", hint=_hint(exc, None)) from exc
        except BaseException:
            self._release_all()
            raise

    def _carry_commit(self) -> None:
        """A killed fleet: every host's journal made to say what the fleet decided (see
        :func:`reconcile`) before any recovery runs."""
        journals = {
            m.name: journal_mod.read(m.deployer.transport, m.deployer.layout) for m in self.members
        }
        ids = {str(f["id"]) for f in (_fleet_of(j) for j in journals.values()) if f}
        outcomes: dict[str, set[str]] = {}
        for member in self.members if ids else []:
            d = member.deployer
            for row in records.deployments(d.transport, d.layout, 50):
                if str(row["id"]) in ids:
                    outcomes.setdefault(str(row["id"]), set()).add(str(row["status"]))
        for name, commit in reconcile(journals, outcomes).items():
            member = next(m for m in self.members if m.name == name)
            data = journals[name] or {}
            journal = journal_mod.Journal(member.deployer.transport, member.deployer.layout, data)
            journal.note(fleet={**data["fleet"], "commit": commit})
            detail = (
                "the fleet had decided to commit: this host rolls forward"
                if commit
                else "the fleet was undone on the other hosts: this host goes back too"
            )
            member.deployer.emit("lock", "info", detail=detail)

    def _release_all(self) -> None:
        """Every lock let go; a host that cannot be reached any more lost its lock
        with its connection (the lock lives as long as the session holding it)."""
        for member in self.members:
            if member.lock is not None:
                with contextlib.suppress(SlipwayError):
                    member.lock.release()
                member.lock = None

    # --- the phases -------------------------------------------------------------------

    def _deploy_locked(self, source: Source, plan: DeployPlan, started: float) -> FleetOutcome:
        fleet_id = uuid.uuid4().hex[:12]
        hosts = [m.name for m in self.members]
        release = self._release_for_all(source)

        def begin(member: Member) -> None:
            member.run = member.deployer.begin(
                source,
                started,
                plan,
                deployment_id=fleet_id,
                release=release,
                fleet={"id": fleet_id, "hosts": hosts},
            )

        self._phase(self.members, begin, started)
        self._phase(self.members, lambda m: m.deployer.prepare(self._run(m)), started)
        share_holds(self.members)
        # Refused, or another strategy, before anything live changes on any host.
        self._phase(self.members, self._ask_strategy, started)
        batches = waves(self.members, self.batch_size)
        for number, wave in enumerate(batches, start=1):
            self.first.emit(
                "activate",
                "info",
                detail=f"wave {number} of {len(batches)}: {', '.join(m.name for m in wave)}",
            )
            self._phase(wave, self._activate, started)
        self._decide_commit(started)
        rolled_forward = self._commit(started)
        outcome = FleetOutcome(
            fleet_id,
            release,
            source.commit,
            "succeeded",
            time.monotonic() - started,
            [(m.name, m.outcome) for m in self.members if m.outcome is not None],
            len(batches),
        )
        self._announce_success(outcome, rolled_forward)
        return outcome

    def _release_for_all(self, source: Source) -> str:
        """One release id on every host, free on each of them."""
        kept: set[str] = set()
        found = threading.Lock()

        def listed(member: Member) -> None:
            releases = member.deployer.list_releases()
            with found:
                kept.update(releases)

        errors = self._each(self.members, listed, stop_on_error=False)
        if errors:
            host, exc = errors[0]
            raise SlipwayError(f"{host}: {exc}", hint=_hint(exc, "nothing changed on any host"))
        self._stop_if_interrupted()
        return new_release_id(source, kept)

    def _decide_commit(self, started: float) -> None:
        """Every host's journal says the fleet commits. A host whose mark failed (or
        Ctrl-C) and the decision is not made: the marks are taken back and every host
        goes back, as after a failed gate."""
        errors = self._each(self.members, lambda m: m.deployer.mark_fleet_commit(), False)
        if not errors and not self.interrupted:
            return
        for member in self.members:
            with contextlib.suppress(Exception):
                member.deployer.mark_fleet_commit(False)
        host, exc = errors[0] if errors else ("", KeyboardInterrupt())
        self._abort(Failure(host, "commit", exc), started)

    def _ask_strategy(self, member: Member) -> None:
        member.deployer.strategy_steps(self._run(member))

    def _activate(self, member: Member) -> None:
        member.activated = True  # from its first step on, its undo may have work to do
        member.deployer.activate(self._run(member))

    def _phase(
        self, members: list[Member], action: Callable[[Member], None], started: float
    ) -> None:
        errors = self._each(members, action)
        if errors:
            failure = self.failure or Failure(errors[0][0], "?", errors[0][1])
            self._abort(failure, started)

    def _commit(self, started: float) -> list[str]:
        """Every host passed: promote all. A promote that fails now is finished by the
        host's own recovery, which rolls it forward (its journal says commit). Returns
        the hosts rolled forward that way; raises when one could not be."""

        def promote(member: Member) -> None:
            d = member.deployer
            run = self._run(member)
            try:
                d.promote_run(run)
                member.outcome = d.succeed(run)
                return
            except LockLost:
                raise  # the command that took this host over completes its journal
            except (Exception, KeyboardInterrupt) as exc:
                data = d.journal.data if d.journal is not None else None
                if data is None:
                    raise
                cause = d.masker(_first_line(exc))
            done = recovery.recover(d, data, cause=cause, notify=False)
            if not done.serving:
                raise SlipwayError(done.note)
            member.outcome = Outcome(
                str(d.deployment_id),
                run.release,
                run.source.commit,
                "rolled_forward",
                time.monotonic() - run.started,
                d.steps,
                done.note,
            )

        errors = self._each(self.members, promote, stop_on_error=False)
        if errors:
            failure = Failure(errors[0][0], "promote", errors[0][1])
            self._announce_failure(failure, failure.cause(), False, started)
            raise DeployFailed(
                "promote",
                f"{failure.cause()} (after every host had passed its gates: the other"
                " hosts serve the new release)",
                rolled_back=False,
                hint="; ".join(f"{host}: {_first_line(exc)}" for host, exc in errors)
                + f"; once reachable, slipway recover {self.first.env_name} rolls it forward",
            )
        return [m.name for m in self.members if m.outcome and m.outcome.status != "succeeded"]

    # --- failure --------------------------------------------------------------------

    def _abort(self, failure: Failure, started: float) -> None:
        """Every host goes back: those activated in reverse order of activation, then
        the others (nothing live had changed on them). A host whose lock was taken
        over is left to the command that took it. Raises :class:`DeployFailed`."""
        self.stop.set()
        cause = failure.cause()
        order = [m for m in reversed(self.members) if m.activated]
        order += [m for m in self.members if not m.activated and m.run is not None]
        all_back = True
        for member in order:
            all_back = self._undo(member, failure, cause) and all_back
        self._announce_failure(failure, cause, all_back, started)
        back = "every host serves its previous release" if all_back else "NOT every host"
        raise DeployFailed(
            failure.step,
            f"{cause} ({back})",
            rolled_back=all_back,
            hint=", ".join(f"{m.name}: {m.error.hint}" for m in order if m.error and m.error.hint)[
                :2000
            ]
            or None,
        )

    def _undo(self, member: Member, failure: Failure, cause: str) -> bool:
        """One host's failure path (undo, record, incident); True when its previous
        release serves."""
        d = member.deployer
        own = failure.error if member.name == failure.host else FleetStopped(cause)
        try:
            d.check_lock()
            d.fail(self._run(member), own)
        except DeployFailed as exc:
            member.error = exc
            return exc.rolled_back
        except LockLost as exc:
            d.emit("rollback", "warning", detail=f"{exc}: the command that took it recovers it")
            return False
        except Exception as exc:  # one host's trouble must not leave the others as they are
            d.emit("rollback", "failed", detail=d.masker(_first_line(exc)))
            return False
        return True  # fail() always raises; kept for the type checker

    def _stop_check(self, member: Member) -> Callable[[], None]:
        def check() -> None:
            if self.stop.is_set():
                where = self.failure.cause() if self.failure else "stopped"
                raise FleetStopped(f"the fleet stopped: {where}")

        return check

    # --- notifications --------------------------------------------------------------

    def _announce_success(self, outcome: FleetOutcome, rolled_forward: list[str]) -> None:
        first = self.first
        row = self._run(self.members[0]).row
        first.notify(
            message.deployed(
                project=first.config.project.name,
                env=first.env_name,
                release=outcome.release,
                commit=outcome.commit,
                message=row["message"],
                actor=first.actor,
                seconds=outcome.seconds,
                checks=[],
                url=first.public_url(),
                extra=[
                    ("Hosts", ", ".join(name for name, _ in outcome.hosts)),
                    ("Waves", str(outcome.waves)),
                    ("Previous", self._run(self.members[0]).previous or "-"),
                ]
                + ([("Rolled forward", ", ".join(rolled_forward))] if rolled_forward else []),
            )
        )

    def _announce_failure(
        self, failure: Failure, cause: str, all_back: bool, started: float
    ) -> None:
        first = self.first
        run = self._run(self.members[0])
        first.notify(
            message.deploy_failed(
                project=first.config.project.name,
                env=first.env_name,
                release=run.release,
                commit=run.source.commit,
                actor=first.actor,
                step=failure.step,
                error=first.masker(cause),
                rolled_back=all_back,
                rollback=(
                    "every host was recovered in reverse order of activation"
                    if all_back
                    else "some hosts were NOT recovered: see each host's incident report"
                ),
                url=first.public_url(),
            )
        )

    # --- helpers --------------------------------------------------------------------

    def _run(self, member: Member) -> HostRun:
        assert member.run is not None, f"{member.name} has no run"
        return member.run

    def _each(
        self,
        members: Sequence[Member],
        action: Callable[[Member], None],
        stop_on_error: bool = True,
    ) -> list[tuple[str, Exception | KeyboardInterrupt]]:
        """``action`` on every member, ``parallel`` at a time; the errors by host. With
        ``stop_on_error`` the first error stops the others at their next step. Anything
        else (SystemExit) ends the fleet at once, as a kill would: the journals recover."""

        def one(member: Member) -> tuple[str, Exception | KeyboardInterrupt] | None:
            try:
                action(member)
            except (Exception, KeyboardInterrupt) as exc:  # by host, acted on by the caller
                if stop_on_error and not isinstance(exc, FleetStopped):
                    self._first_failure(member, exc)
                return member.name, exc
            return None

        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            futures = [pool.submit(one, m) for m in members]
            try:
                results = [f.result() for f in futures]
            except KeyboardInterrupt:
                # Ctrl-C reaches only this thread: the hosts stop at their next step.
                self.interrupted = True
                self._first_failure(None, KeyboardInterrupt())
                results = [f.result() for f in futures]
        errors = [r for r in results if r is not None]
        # The host that failed first, not one the fleet stopped, is the one named.
        errors.sort(key=lambda e: isinstance(e[1], FleetStopped))
        return errors

    def _first_failure(self, member: Member | None, exc: Exception | KeyboardInterrupt) -> None:
        with self._failure_lock:
            if self.failure is None:
                d = member.deployer if member else self.first
                self.failure = Failure(member.name if member else "", d.current_step, exc)
            self.stop.set()


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyboardInterrupt):
        text = "interrupted (Ctrl-C or SIGINT)"
    return text.splitlines()[0]


def _hint(exc: BaseException, extra: str | None) -> str | None:
    own = exc.hint if isinstance(exc, SlipwayError) else None
    return "; ".join(x for x in (own, extra) if x) or None
