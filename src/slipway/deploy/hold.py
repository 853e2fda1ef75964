"""Breaking migrations: no write may land between the backup and the new release going live.

With blue-green the old colour keeps serving while the new one migrates the database.
For most releases that is the point; for a release marked breaking
(``[migrations] breaking``) it would let the old code write into a schema it does not
know, and those writes would be lost if the deploy rolled back to the backup. So, from
before the backup until the new colour is verified and live:

1. **hold**: a holding proxy (:mod:`slipway.routers.holdproxy`) starts on the host, the
   router sends the public ports to it (confirmed like any switch), and the old colour
   is drained and stopped: its requests in flight finish, its WebSockets close and
   reconnect into the queue. New requests wait at the proxy: queued, not failed.
2. the backup, start, and health steps run as usual; after each one the hold's deadline
   (``hold_seconds``) is checked: past it the deploy fails and rolls back. The gate
   polls faster while requests wait (same number of passes in a row) and ends with the
   hold's deadline.
3. **switch**: the router moves to the new colour, then the proxy sends every held
   request there. On a rollback they go to the old release once it serves again on the
   restored database; with nothing healthy to send them to they are answered 503.

The longest wait is reported in the deploy's output, audit log and notification.
With the restart strategy there is no router to hold at: the old processes stop before
the backup instead (the restart's gap starts earlier, but nothing is written after it).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from slipway.config.model import COLORS
from slipway.errors import HoldExpired, RouterError
from slipway.routers import Target
from slipway.routers.hold import HoldingProxy, HoldResult

if TYPE_CHECKING:
    from slipway.deploy.context import HostContext
    from slipway.deploy.run import RunState
    from slipway.health.gate import GateReport

HOLD_COLOR = "hold"  # what the router's marker header says while the proxy holds
HOLD_GATE_INTERVAL = 0.25  # seconds between gate rounds while requests wait


def proxy_for(d: HostContext) -> HoldingProxy:
    """One proxy per deploy: a previous deploy's proxy may still serve its last
    connections (up to its linger time), with its own control socket."""
    name = f"hold-{d.deployment_id or 'manual'}"
    return HoldingProxy(
        d.transport,
        f"{d.layout.state_dir}/{name}.sock",
        f"{d.layout.logs}/slipway-hold.log",
        f"{d.layout.root}/.slipway",
    )


def hold_writers(d: HostContext, state: RunState) -> None:
    """Blue-green's ``hold`` step: from here on, nothing writes to the database until
    the switch."""
    router = d.router()
    old = d.live_color()
    if old is None or not router.running():
        d.emit(
            "hold",
            "info",
            detail="no router serves yet (first blue-green deploy): nothing to hold at;"
            " the live processes stop before the backup instead",
        )
        stop_before_backup(d, state)
        return
    state.old_color = old
    proxy = proxy_for(d)
    ports = proxy.start(list(d.config.processes), d.config.migrations.hold_seconds)
    state.hold, state.hold_started = proxy, time.monotonic()
    d.checkpoint("hold", state, swapped=True, switched=True)
    try:
        report = router.switch(Target(HOLD_COLOR, ports))
    except RouterError:
        state.hold = None
        proxy.abort("the router did not switch to the holding proxy")
        raise
    state.swapped = state.switched = True  # the old colour no longer takes traffic
    d.audit("traffic.held", previous=old, seconds=report.seconds)
    d.drain(old)
    d.emit("hold", "info", detail=f"requests held at the proxy; {old} drained and stopped")


def stop_before_backup(d: HostContext, state: RunState) -> None:
    """The restart strategy's hold (and blue-green's before a router serves)."""
    running = d.uncoloured_apps()
    if not running:
        return
    state.swapped = True  # the rollback starts the previous release again
    d.checkpoint("hold", state)
    d.pm.stop(running)
    d.audit("writers.stopped", names=running, why="breaking migrations")
    d.emit("hold", "info", detail=f"stopped {', '.join(running)} before the backup")


def check_deadline(d: HostContext, state: RunState, *, gate_cut: bool = False) -> None:
    """Fail the deploy once requests have waited longer than ``hold_seconds``, or when
    the gate gave up because the hold's deadline was nearer than its own (``gate_cut``:
    the gate stops one poll before its deadline, so the clock alone may not be past)."""
    if state.hold is None or state.hold_result is not None:
        return
    held_for = time.monotonic() - state.hold_started
    limit = d.config.migrations.hold_seconds
    if held_for > limit or gate_cut:
        raise HoldExpired(
            f"requests have been held {held_for:.1f}s and the release was not healthy"
            f" within the hold deadline of {limit:g}s",
            hint="raise [migrations] hold_seconds, or make the release start faster",
        )


def gate_cut_short(d: HostContext, pacing: dict[str, float], gate: GateReport) -> bool:
    """Did the gate run out of the time the hold left it (less than its own deadline)?"""
    limited = "deadline" in pacing and pacing["deadline"] < d.config.health.deadline_seconds
    return limited and gate.timed_out


def gate_pacing(d: HostContext, state: RunState) -> dict[str, float]:
    """While requests wait, the new colour's gate polls every HOLD_GATE_INTERVAL (still
    ``health.passes`` passes in a row; the post-switch watch keeps its full length) and
    ends when the hold's deadline does."""
    if state.hold is None or state.hold_result is not None:
        return {}
    health = d.config.health
    left = d.config.migrations.hold_seconds - (time.monotonic() - state.hold_started)
    return {
        "interval": min(health.interval_seconds, HOLD_GATE_INTERVAL),
        "deadline": max(0.0, min(health.deadline_seconds, left)),
    }


def release_to(d: HostContext, state: RunState, color: str) -> None:
    """Send the held requests to ``color``, which the router now serves."""
    if state.hold is None or state.hold_result is not None:
        return
    _record(d, state, state.hold.release(d.target(color).ports), color)


def settle(d: HostContext, state: RunState) -> str:
    """After a rollback: the held requests go where the router now points if that colour
    is online, else they are answered 503. Returns a note for the rollback report."""
    if state.hold is None or state.hold_result is not None:
        return ""
    active = d.router().active_color()
    if active in COLORS and d.color_online(str(active)):
        _record(d, state, state.hold.release(d.target(str(active)).ports), active)
    else:
        _record(d, state, state.hold.abort("the deploy failed and nothing serves"), None)
    assert state.hold_result is not None
    return state.hold_result.summary()


def _record(d: HostContext, state: RunState, result: HoldResult, color: str | None) -> None:
    state.hold_result = result
    d.audit(
        "traffic.released" if result.state == "released" else "traffic.hold_failed",
        to=color,
        held=result.held,
        longest_wait=result.longest_wait,
        failed=result.failed,
        why=result.why,
    )
    d.emit("hold", "info", detail=result.summary())
