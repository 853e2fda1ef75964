"""Completing a run that stopped without finishing, from its journal.

See :mod:`slipway.deploy.journal` for when a journal is written and what it holds. This
module decides, from a journal, how to bring the environment back to a serving state,
and ends the run's record. The same path ends a manual rollback that failed part way.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from slipway.commands import host as cmd
from slipway.deploy import hold, incident, rehearsal, split, strategies
from slipway.deploy import journal as journal_mod
from slipway.deploy.run import Recovery, RunState
from slipway.deploy.strategy import Strategy
from slipway.errors import LockLost, SlipwayError
from slipway.notify import message
from slipway.state import records
from slipway.state.lock import DeployLock

if TYPE_CHECKING:
    from slipway.deploy.context import HostContext


def take_lock(d: HostContext, *, ref: str, reason: str, wait: float) -> DeployLock:
    """Take the environment's lock, then complete any run a previous command left
    unfinished (killed, disconnected, or ended by a forced lock release) before this one
    changes anything. Every command that changes live state starts here."""
    lock = acquire(d, ref=ref, reason=reason, wait=wait)
    try:
        settle(d)
    except BaseException:
        lock.release()
        raise
    return lock


def acquire(d: HostContext, *, ref: str, reason: str, wait: float) -> DeployLock:
    """Only the lock (a fleet takes every host's before it settles any of them)."""
    lock = DeployLock(d.transport, d.layout)
    with d.step("lock"):
        lock.acquire(actor=d.actor, ref=ref, reason=reason, wait=wait)
    d.lock = lock
    return lock


def settle(d: HostContext) -> None:
    """With the lock held: remove what a killed command left, complete its journal,
    stop a colour left draining."""
    # A rehearsal or a backup command killed half way left a plaintext copy of the
    # database (and an age identity) behind.
    d.run(cmd.remove_tree(rehearsal.scratch_dir(d)))
    d.backups.sweep_scratch()
    d.recovered = complete_interrupted(d)
    finish_drain(d)
    done = split.settle_leftovers(d)
    if done:
        d.emit("lock", "info", detail=done)


def finish_drain(d: HostContext) -> None:
    """An instant rollback leaves the colour it switched away from to a job on the host
    (``colors.json`` marks it ``draining``). While this command holds the lock that job
    is not draining: it died (killed, host rebooted) or has not started yet. Either way
    the colour takes no traffic; stop it now (then the job, if it runs later, finds its
    token gone and does nothing)."""
    found = d.read_colors()
    standby = found["standby"]
    if not standby or not standby.get("draining"):
        return
    d.emit(
        "lock",
        "info",
        detail=f"{standby['color']} ({standby['release']}) was left draining by an instant"
        " rollback: stopping it now",
    )
    d.drain(str(standby["color"]))
    d.write_colors({**found, "standby": None})  # we hold the lock: nothing else wrote it


def complete_interrupted(d: HostContext) -> Recovery | None:
    """Recover the journal left on the host, if any (the caller holds the lock).
    Returns what was done, or None when no run was left unfinished."""
    data = journal_mod.read(d.transport, d.layout)
    if data is None:
        return None
    if data.get("unreadable") or "row" not in data:
        raise SlipwayError(
            f"the deploy journal {journal_mod.path_of(d.layout)} is not readable",
            hint="check what serves (slipway status, slipway health), then remove the file",
        )
    if not data.get("attempts") and _already_final(d, str(data["row"]["id"])):
        # The run ended and its record is final: only removing the journal was cut short.
        journal_mod.Journal(d.transport, d.layout, data).close()
        return None
    _refuse_half_a_fleet(d, data)
    return recover(d, data)


def _refuse_half_a_fleet(d: HostContext, data: dict[str, Any]) -> None:
    """A fleet deploy's journal without the commit decision: whether the fleet committed
    is known only from all its hosts' journals, so only a fleet command (which reads
    them all first) may undo it; alone, this host could go back while the others went
    forward. One with the decision rolls forward whoever completes it."""
    fleet = data.get("fleet")
    if not isinstance(fleet, dict) or fleet.get("commit") or d.fleet_member:
        return
    hosts = ", ".join(str(h) for h in fleet.get("hosts", [])) or "several hosts"
    raise SlipwayError(
        f"the interrupted deploy on this host was part of a fleet deploy to {hosts}:"
        " it is recovered for the whole fleet at once, not host by host",
        hint=f"slipway recover {d.env_name} (with every host of that fleet configured)",
    )


def _already_final(d: HostContext, deployment_id: str) -> bool:
    for row in records.deployments(d.transport, d.layout, 50):
        if row["id"] == deployment_id:
            return str(row["status"]) != "running"
    return False


def recover(
    d: HostContext, data: dict[str, Any], cause: str | None = None, *, notify: bool = True
) -> Recovery:
    """Bring back a serving state after the run ``data`` describes, then finalise its
    record (``interrupted``, or ``failed`` when ``cause`` is the run's own error),
    write the incident report, audit, notify and remove the journal."""
    row: dict[str, Any] = dict(data["row"])
    kind = str(data.get("kind", "deploy"))
    step = journal_mod.last_step(data)
    state = RunState.from_journal(data.get("state") or {})
    lock_step, d.steps = d.steps, []
    d.deployment_id, d.build_color = row["id"], data.get("build_color")
    d.journal = None  # undo actions are idempotent: they need no journal of their own
    interrupted = cause is None
    if cause is None:
        cause = (
            f"the {kind} stopped during step '{step}' without finishing (killed, its"
            " connection lost, or its lock released by force)"
        )
    d.emit("recover", "warning", detail=f"{kind} {row['id']} of {row['release']}: {cause}")
    started = time.monotonic()
    try:
        with d.step("recover"):
            serving, went_back, note = _bring_back(d, data, kind, state)
    except LockLost:
        raise  # another command took over: it recovers, not this one
    except SlipwayError as exc:
        serving, went_back, note = False, False, f"recovery failed: {d.masker(str(exc))}"
    _finalise(d, data, row, kind, step, cause, interrupted, serving, went_back, note, state)
    if notify:
        _notify(d, row, step, cause, serving, note)
    d.emit("recover", "info" if serving else "warning", time.monotonic() - started, note)
    d.steps, d.deployment_id, d.build_color = lock_step, None, None
    return Recovery(str(row["id"]), kind, str(row["release"]), step, serving, note)


def undo_failed(d: HostContext, exc: BaseException, what: str, *, notify: bool) -> SlipwayError:
    """A rollback or restore failed part way: undo it from its journal (as after a
    failed deploy) and return the error to raise, its hint saying what serves now."""
    cause = "interrupted (Ctrl-C or SIGINT)" if isinstance(exc, KeyboardInterrupt) else str(exc)
    data = d.journal.data if d.journal is not None else None
    note = recover(d, data, cause=d.masker(cause), notify=notify).note if data else ""
    error = exc if isinstance(exc, SlipwayError) else SlipwayError(f"{what} failed: {cause}")
    error.hint = "; ".join(x for x in (error.hint, note) if x) or None
    return error


def _bring_back(
    d: HostContext, data: dict[str, Any], kind: str, state: RunState
) -> tuple[bool, bool, str]:
    """(something healthy serves, the previous release serves (not rolled forward), note)."""
    row = data["row"]
    release, previous = str(row["release"]), row.get("previous_release")
    if kind == "restore":  # every writer had stopped: start the live release again
        serving = _strategy_of(d, data).start_live(d)
        if data.get("state", {}).get("holding"):
            state.hold = hold.proxy_for(d)
            hold.settle(d, state)  # the held requests go to the live release, else 503
        if serving:
            return True, True, "the live release started again after the interrupted restore"
        return False, False, "the live release did not come back healthy"
    if d.current_release() == release and release != previous:
        return _roll_forward(d, data, state, release, previous)
    if state.swapped and (data.get("fleet") or {}).get("commit"):
        # Every host of its fleet had passed its gates and the fleet had decided to
        # commit: this host finishes its promote like the others (never half a fleet).
        return _roll_forward(d, data, state, release, previous, why="its fleet had committed")
    if state.swapped:
        if data.get("state", {}).get("holding"):
            state.hold = hold.proxy_for(d)  # the held requests go where the router ends up
        ok, note = _strategy_of(d, data).recover(d, previous, state, str(row["id"]))
        return ok, True, note
    return True, True, "nothing live had changed"


def _strategy_of(d: HostContext, data: dict[str, Any]) -> Strategy:
    """The strategy the run used (the configuration may have changed since)."""
    return strategies.named(str(data.get("strategy"))) or strategies.for_env(d.env)


def _roll_forward(
    d: HostContext,
    data: dict[str, Any],
    state: RunState,
    release: str,
    previous: str | None,
    why: str = "had been promoted",
) -> tuple[bool, bool, str]:
    """``current`` already names the release: its promote had begun after every gate
    passed. Finish the promote instead of undoing a release that serves."""
    color = data.get("build_color")
    strategy = _strategy_of(d, data)
    gate = strategy.roll_forward(d, release, previous, state, str(color) if color else None)
    if not gate.ok:
        return False, False, f"{release} was promoted but is not healthy: {gate.summary()}"
    return True, False, f"{release} {why}: its promote was finished, it serves"


def _finalise(
    d: HostContext,
    data: dict[str, Any],
    row: dict[str, Any],
    kind: str,
    step: str,
    cause: str,
    interrupted: bool,
    serving: bool,
    went_back: bool,
    note: str,
    state: RunState,
) -> None:
    steps = [s for s in data.get("steps", []) if isinstance(s, dict)]
    housekeeping = d.finish_backup(state, keep=True)
    if housekeeping:
        note += f"; {housekeeping}"
    row.update(
        status="interrupted" if interrupted else "failed",
        finished_at=time.time(),
        duration_s=round(time.time() - float(row.get("started_at") or time.time()), 3),
        failed_step=step,
        error=d.masker(cause)[-2000:],
        rolled_back_to=row.get("previous_release") if went_back and serving else None,
        steps=json.dumps(_timeline(steps) + d.steps),
    )
    event = f"{kind}.interrupted" if interrupted else f"{kind}.failed"
    d.record_event(row, event, step=step, error=cause[-500:], recovery=note, serving=serving)
    report = incident.Incident(
        env=d.env_name,
        kind=f"{'interrupted' if interrupted else 'failed'} {kind}",
        deployment_id=str(row["id"]),
        actor=d.actor,
        release=str(row["release"]),
        previous=row.get("previous_release"),
        commit=str(row.get("commit_sha") or "unknown"),
        failed_step=step,
        error=d.masker(cause),
        outcome=note,
        rolled_back=serving,
        backup=state.backup_path,
        steps=_timeline(steps) + list(d.steps),
    )
    try:
        incident.write(d, report)
    except SlipwayError as exc:  # the recovery itself matters more
        d.emit("recover", "warning", detail=f"the incident report could not be written: {exc}")
    kept = journal_mod.Journal(d.transport, d.layout, data, guard=d.check_lock)
    if serving:
        kept.close()
    else:  # keep the undo information: `slipway recover` can try again once fixed
        kept.note(attempts=int(data.get("attempts", 0)) + 1)


def _notify(
    d: HostContext, row: dict[str, Any], step: str, cause: str, serving: bool, note: str
) -> None:
    d.notify(
        message.deploy_failed(
            project=d.config.project.name,
            env=d.env_name,
            release=str(row["release"]),
            commit=str(row.get("commit_sha") or "unknown"),
            actor=d.actor,
            step=step,
            error=d.masker(cause),
            rolled_back=serving,
            rollback=note,
            url=d.public_url(),
        )
    )


def _timeline(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The journal's steps in the record's shape (an unfinished step is not ok)."""
    return [
        {"step": s.get("step"), "seconds": 0.0, "ok": bool(s.get("done")), "at": s.get("at")}
        for s in steps
    ]
