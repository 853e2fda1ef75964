"""Blue-green: the new release starts beside the live one and takes traffic only when proven.

The deploy's last steps, after build and backup (see :mod:`slipway.deploy.engine`):

- **start**: the new release starts on the colour that is not live, on its private ports
  (a busy port is refused, never shared);
- **health**: the environment's checks run straight against the new colour;
- **switch**: the router sends the public ports to the new colour and the switch is
  confirmed (router API, and a request through each public port answered by the colour);
- **watch**: the checks keep running through the public ports for ``watch_seconds``;
- **promote**: ``current`` points at the release; the old colour stays warm for
  ``standby_seconds`` (an instant rollback) and is then drained and stopped by a job on
  the host.

Any failure before the switch leaves traffic where it was; a failure after it switches
straight back to the old colour, which is still running. Which colour is live and which
is on standby is kept in ``<env>/.slipway/colors.json`` (written atomically).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from slipway.commands import host as cmd
from slipway.config.model import COLORS
from slipway.deploy import hold, journal
from slipway.deploy.context import PUBLIC_BUILD
from slipway.deploy.database import (
    journal_aside,
    needs_restore,
    restore_database,
    restore_from_latest,
    schema_fits,
)
from slipway.deploy.restart import start_release
from slipway.deploy.strategy import Step
from slipway.errors import HealthCheckFailed
from slipway.health.gate import GateReport, run_round
from slipway.routers import Router
from slipway.state import colors
from slipway.state.colors import other, warm_standby
from slipway.state.host import call, helper_argv

if TYPE_CHECKING:
    from slipway.config.model import EnvironmentConfig
    from slipway.deploy.context import HostContext
    from slipway.deploy.run import RunState

FAILED_ROUNDS_TO_FAIL = 2  # post-switch: one slow round is noise, two in a row is a finding
DRAIN_WAIT_LOCK = 600.0  # how long a draining colour's job waits for the rollback's lock


def next_color(d: HostContext) -> str:
    """The colour a new release goes to: the one that is not live (blue at first)."""
    live = d.live_color()
    return other(live) if live else COLORS[0]


# --- the deploy's steps ------------------------------------------------------------------


def deploy_steps(
    d: HostContext, release: str, previous: str | None, commit: str, state: RunState
) -> list[Step]:
    color = d.build_color or next_color(d)
    return [
        ("start", lambda: start_new_color(d, release, commit, color, state)),
        ("health", lambda: gate_color(d, color, state)),
        ("switch", lambda: switch_to(d, color, state)),
        ("watch", lambda: watch(d, color)),
        ("promote", lambda: finish(d, release, color, previous, state)),
    ]


def start_new_color(d: HostContext, release: str, commit: str, color: str, state: RunState) -> None:
    colors = d.read_colors()
    state.old_color = colors["live"]["color"] if colors["live"] else None
    state.standby_before = colors["standby"]
    state.swapped = True
    d.checkpoint("start", state)
    if colors["standby"]:
        # The new release takes the standby's colour: cancel its retirement job (a
        # failed deploy brings the standby back, see restore_standby).
        d.write_colors({**colors, "standby": None})
    d.start_processes(release, color, commit)


def gate_color(d: HostContext, color: str, state: RunState) -> None:
    pacing = hold.gate_pacing(d, state)
    state.gate = d.gate_report(color, **pacing)
    if not state.gate.ok:
        hold.check_deadline(d, state, gate_cut=hold.gate_cut_short(d, pacing, state.gate))
        raise d.failure_with_logs(
            f"{color} is not healthy, traffic was not switched: {state.gate.summary()}", color
        )
    d.emit("health", "info", detail=f"{color}: {state.gate.summary()}")


def switch_to(d: HostContext, color: str, state: RunState) -> None:
    router = d.router()
    d.checkpoint("switch", state, switched=True)
    if not router.running():
        _hand_ports_to_router(d, router, color)
    report = router.switch(d.target(color))
    state.switched = True
    state.switch_seconds = report.seconds
    previous = report.previous if report.previous != color else None  # first switch
    d.audit("traffic.switched", to=color, previous=previous, seconds=report.seconds)
    d.emit("switch", "info", detail=f"traffic on {color}, confirmed in {report.seconds:.2f}s")
    hold.release_to(d, state, color)


def _hand_ports_to_router(d: HostContext, router: Router, color: str) -> None:
    """First blue-green deploy (or the router was stopped): start the router. Processes
    of the restart strategy hold the public ports, so they stop first (a gap, once)."""
    legacy = d.uncoloured_apps()
    if legacy:
        d.emit("switch", "info", detail="handing the public ports from PM2 apps to the router")
        d.pm.stop(d.app_names)
        d.ensure_ports_free()
    router.ensure_running(d.target(color))


def watch(d: HostContext, color: str) -> None:
    """Post-switch checks through the public ports for ``watch_seconds``."""
    seconds = d.env.blue_green.watch_seconds
    if seconds <= 0:
        return
    checks = d.checks(serving=color, disk=False)
    deadline = time.monotonic() + seconds
    failed_rounds = 0
    while True:
        aborted = d.processes_abort(color)
        if aborted:
            raise d.failure_with_logs(f"after the switch: {aborted}", color)
        results = run_round(checks)
        failures = [r for r in results if not r.ok]
        failed_rounds = failed_rounds + 1 if failures else 0
        if failed_rounds >= FAILED_ROUNDS_TO_FAIL:
            problems = "; ".join(f"{r.name}: {r.error}" for r in failures)
            raise d.failure_with_logs(f"after the switch, through the router: {problems}", color)
        if time.monotonic() >= deadline:
            return
        time.sleep(d.config.health.interval_seconds)


def finish(d: HostContext, release: str, color: str, previous: str | None, state: RunState) -> None:
    d.promote(release)
    live = {"color": color, "release": release, "since": time.time()}
    old = state.old_color
    seconds = d.env.blue_green.standby_seconds
    if old is None or previous is None or not d.color_online(old):
        d.write_colors({"live": live, "standby": None})
        return
    if seconds <= 0:
        d.write_colors({"live": live, "standby": None})
        d.drain(old)
        return
    token = uuid.uuid4().hex
    standby = {"color": old, "release": previous, "until": time.time() + seconds, "token": token}
    d.write_colors({"live": live, "standby": standby})
    schedule_retire(d, old, token, seconds)
    d.emit("promote", "info", detail=f"{old} ({previous}) kept warm for {seconds:g}s")


# --- the old colour's end ----------------------------------------------------------------


def retire_request(d: HostContext, color: str, token: str, delay: float) -> dict[str, Any]:
    return {
        "op": "retire",
        "delay": delay,
        "token": token,
        "colors": colors.path_of(d.layout),
        "journal": journal.path_of(d.layout),
        "lock": d.layout.lock_file,
        "lock_info": d.layout.lock_info,
        "records": d.layout.records,
        "current": d.layout.current,
        "names": d.app_names_of(color),
        "commands": d.pm.stop_commands(d.app_names_of(color)),
        "env": {
            k: v
            for k, v in d.host_env.items()
            if k in ("PATH", "PM2_HOME", "SUPERVISOR_HOME", "HOME")
        },
        "actor": d.actor,
    }


def schedule_retire(
    d: HostContext, color: str, token: str, delay: float, wait_lock: float = 0.0
) -> None:
    """A detached job on the host stops the standby when its time is up, unless a later
    deploy or rollback changed the colours (its token then no longer matches).
    ``wait_lock``: how long it waits for the command holding the lock (this one)."""
    request = json.dumps({**retire_request(d, color, token, delay), "wait_lock": wait_lock})
    log = f"{d.layout.logs}/slipway-retire.log"
    d.transport.run(cmd.detached(log, ["setsid", "-f", *helper_argv(d.transport), request]))


def stop_standby(d: HostContext) -> str | None:
    """Drain and stop the warm standby now (``slipway standby --stop``)."""
    colors = d.read_colors()
    standby = colors["standby"]
    if not standby:
        return None
    d.write_colors({**colors, "standby": None})
    d.drain(standby["color"])
    return str(standby["color"])


# --- going back --------------------------------------------------------------------------


def ensure_built_for(d: HostContext, release: str, color: str) -> None:
    """Builds name the public address, so one serves either colour. A release built by
    an older slipway for one colour's private port is rebuilt (for the public address)
    before it starts on the other colour."""
    frontend = d.processes_of(release).get("frontend")
    built_for = d.release_meta(release).get("built_for")
    if frontend is None or not frontend.build or built_for in (color, None, PUBLIC_BUILD):
        return
    workdir = f"{d.layout.release(release)}/{frontend.workdir}".removesuffix("/.")
    d.emit("rollback", "info", detail=f"rebuilding {release}'s frontend (built for {built_for})")
    # Hard links may share .next with another release: unlink, never overwrite in place.
    d.run(cmd.remove_tree(f"{workdir}/.next"))
    d.run(frontend.build, cwd=workdir, env_extra=d.build_env(frontend))
    d.save_meta(release, built_for=PUBLIC_BUILD, build=None)


def start_on(d: HostContext, release: str, color: str) -> GateReport:
    ensure_built_for(d, release, color)
    d.start_processes(release, color)
    return d.gate_report(color)


def restore_standby(d: HostContext, standby: dict[str, Any]) -> str:
    """A failed deploy took the warm standby's colour: start that release there again
    for the rest of its warm period, so an instant rollback stays possible."""
    remaining = float(standby["until"]) - time.time()
    if remaining <= 0:
        return "the warm standby's period had ended"
    color, release = str(standby["color"]), str(standby["release"])
    gate = start_on(d, release, color)
    if not gate.ok:
        d.pm.stop(d.app_names_of(color))
        return f"the warm standby {release} could not be restarted: {gate.summary()}"
    token = uuid.uuid4().hex
    colors = d.read_colors()
    d.write_colors({**colors, "standby": {**standby, "token": token}})
    schedule_retire(d, color, token, remaining)
    return f"{release} warm again on {color}"


def roll_back(
    d: HostContext, previous: str | None, state: RunState, deployment_id: str
) -> tuple[bool, str]:
    """Undo a blue-green deploy that failed after its new colour started (or after its
    requests were held). Returns (previous release serving, note)."""
    serving, note = _roll_back(d, previous, state, deployment_id)
    held = hold.settle(d, state)
    return serving, f"{note}; {held}" if held else note


def _roll_back(
    d: HostContext, previous: str | None, state: RunState, deployment_id: str
) -> tuple[bool, str]:
    new = d.build_color or ""
    old = state.old_color
    notes: list[str] = []
    with d.step("rollback"):
        old_running = old is not None and d.color_online(old)
        if state.switched and old is not None and old_running:
            report = d.router().switch(d.target(old))
            notes.append(f"traffic switched back to {old} in {report.seconds:.2f}s")
            d.audit("traffic.switched", to=old, previous=new, seconds=report.seconds)
        d.pm.stop(d.app_names_of(new))
        db = d.layout.database(d.env.database)
        restore = bool(state.backup_path) and (
            state.restored
            or needs_restore(state.db_before or {}, call(d.transport, "describe", db=db))
        )
        untouched = old_running or not state.switched  # the old processes still serve
        if untouched and not restore:
            notes.append(f"{previous or 'the previous release'} kept serving")
            if state.standby_before and not state.switched:
                notes.append(restore_standby(d, state.standby_before))
            return True, "; ".join(notes)
        if restore and state.backup_path:
            # No writer may hold the database while it is replaced (a short gap).
            d.pm.stop(d.app_names_of(old) if old else d.app_names)
            notes.append(restore_database(d, state.backup_path, deployment_id))
        if previous is None:
            return False, "; ".join([*notes, "no previous release to start"])
        if old is None and not state.switched:  # the restart strategy's processes
            gate = start_release(d, previous)
            color = None
        else:
            color = old or other(new)
            gate = start_on(d, previous, color)
        if not gate.ok:
            return False, "; ".join([*notes, f"{previous} unhealthy: {gate.summary()}"])
        if color is not None:  # confirm (or move) the traffic on the colour now serving
            router = d.router()
            router.ensure_running(d.target(color))  # it may never have started
            router.switch(d.target(color))
        notes.append(f"{previous} serving" + (f" on {color}" if color else ""))
        return True, "; ".join(notes)


def rollback_locked(d: HostContext, release: str, restore_db: bool, state: RunState) -> list[str]:
    """``slipway rollback`` for blue-green to ``release`` (validated by the caller): an
    instant switch back while the old colour is warm; otherwise the release starts on the
    free colour, is gated, and takes traffic. Journaled like a deploy of ``release``:
    undoing it brings the colour live before it back."""
    colors = d.read_colors()
    live = colors["live"]
    current = d.current_release()
    notes: list[str] = []
    if not restore_db:
        fits, why = schema_fits(d, current, release)
        if not fits:
            restore_db = True
            notes.append(why)
            d.emit("rollback", "info", detail=why)
    if restore_db and current:
        d.backups.before_deploy_of(current)  # a missing backup is refused before any stop
    standby = warm_standby(colors)
    warm = bool(standby and standby["release"] == release and d.color_online(standby["color"]))
    color = str(standby["color"]) if standby and warm and not restore_db else None
    color = color or (other(live["color"]) if live else COLORS[0])
    state.old_color = live["color"] if live else None
    d.build_color = color
    if d.journal is not None:
        d.journal.note(build_color=color)
    if warm and not restore_db:
        d.checkpoint("switch", state, swapped=True, switched=True)
        # Its retirement job must not stop it once it serves: clear the standby first.
        d.write_colors({**colors, "standby": None})
        report = d.router().switch(d.target(color))
        state.swapped = state.switched = True
        notes.append(f"switched to the warm {color} in {report.seconds:.2f}s")
        d.audit("traffic.switched", to=color, previous=report.previous, seconds=report.seconds)
    else:
        state.swapped = True
        if restore_db and current:
            # Requests wait at the holding proxy while no writer may run (none fails).
            hold.hold_writers(d, state)
            state.switched = True  # the live colour stopped: nothing serves until the switch
            d.checkpoint("restore", state)
            d.pm.stop(d.app_names_of(live["color"]) if live else d.app_names)
            notes.append(restore_from_latest(d, current, on_aside=journal_aside(d, state)))
        d.checkpoint("start", state)
        report_gate = start_on(d, release, color)
        if not report_gate.ok:
            raise HealthCheckFailed(
                f"release {release} is not healthy on {color}: {report_gate.summary()}"
            )
        d.checkpoint("switch", state, switched=True)
        router = d.router()
        router.ensure_running(d.target(color))
        switched = router.switch(d.target(color))
        state.switched = True
        notes.append(f"started {release} on {color}; switched in {switched.seconds:.2f}s")
        d.audit("traffic.switched", to=color, previous=switched.previous, seconds=switched.seconds)
        hold.release_to(d, state, color)
        if state.hold_result is not None:
            notes.append(state.hold_result.summary())
    d.checkpoint("promote", state)
    now = {"color": color, "release": release, "since": time.time()}
    if warm and not restore_db and live:
        # An instant rollback returns now: the colour it left drains in a job on the
        # host once this command lets go of the lock (colors.json names it meanwhile,
        # so the next command knows; PM2's process list has not changed: no save).
        d.promote(release, save=False)
        token = uuid.uuid4().hex
        old = {**live, "until": time.time(), "token": token, "draining": True}
        d.write_colors({"live": now, "standby": old})
        schedule_retire(d, str(live["color"]), token, 0.0, wait_lock=DRAIN_WAIT_LOCK)
        notes.append(f"{live['color']} ({live['release']}) drains in the background")
        return notes
    if live and live["color"] != color:
        d.checkpoint("drain", state)
        d.drain(live["color"])
    d.promote(release)
    d.write_colors({"live": now, "standby": None})
    return notes


def protected(d: HostContext) -> set[str]:
    """The releases on a colour (live and warm standby): running, never pruned."""
    return {str(c["release"]) for c in d.read_colors().values() if c}


class BlueGreen:
    """The :class:`~slipway.deploy.strategy.Strategy` of ``strategy = "blue-green"``."""

    name = "blue-green"

    def plan(self, env: EnvironmentConfig) -> list[tuple[str, str]]:
        return [
            ("start", "PM2: start the release on the colour that is not live ({colors})"),
            ("health", "{passes} passes in a row within {deadline}s, on the new colour: {checks}"),
            (
                "switch",
                "{router} on ports {backend}/{frontend} -> new colour; confirm via API + header",
            ),
            ("watch", "checks through the public ports for {watch}s; failure switches back"),
            (
                "promote",
                "point current at the release; old colour warm for {standby}s, then drained",
            ),
        ]

    def plan_values(self, env: EnvironmentConfig) -> dict[str, str]:
        bg = env.blue_green
        ports = bg.color_ports(env.ports)
        return {
            "colors": ", ".join(f"{c} {p.backend}/{p.frontend}" for c, p in ports.items()),
            "router": bg.router.value,
            "watch": f"{bg.watch_seconds:g}",
            "standby": f"{bg.standby_seconds:g}",
        }

    def hold_text(self) -> str:
        return (
            "breaking migrations: {router} -> a holding proxy; the live colour drains and stops;"
            " requests wait (deadline {hold}s) and go to the new colour after the switch"
        )

    def on_failure(self) -> str:
        return (
            "on failure: before the switch traffic never moved (the new colour is stopped);"
            " after it, traffic switches back to the old colour, still running; the"
            " database is restored only if the old code cannot live with it"
        )

    def build_color(self, ctx: HostContext) -> str | None:
        return next_color(ctx)

    def refuse_up_front(self, ctx: HostContext, breaking: bool, rehearse: bool) -> None:
        return None  # runs any release

    def hold(self, ctx: HostContext, state: RunState) -> None:
        hold.hold_writers(ctx, state)

    def activate(
        self, ctx: HostContext, release: str, previous: str | None, commit: str, state: RunState
    ) -> list[Step]:
        return deploy_steps(ctx, release, previous, commit, state)

    def recover(
        self, ctx: HostContext, previous: str | None, state: RunState, deployment_id: str
    ) -> tuple[bool, str]:
        return roll_back(ctx, previous, state, deployment_id)

    def roll_forward(
        self,
        ctx: HostContext,
        release: str,
        previous: str | None,
        state: RunState,
        color: str | None,
    ) -> GateReport:
        color = color or ctx.live_color() or COLORS[0]
        finish(ctx, release, color, previous, state)
        return ctx.gate_report(color)

    def rollback_to(
        self, ctx: HostContext, release: str, current: str | None, restore_db: bool, state: RunState
    ) -> tuple[list[str], str]:
        with ctx.step("switch"):
            notes = rollback_locked(ctx, release, restore_db, state)
        return notes, "; ".join(notes)

    def start_live(self, ctx: HostContext) -> bool:
        live = ctx.read_colors()["live"]
        if live is None:  # never switched: the restart strategy's processes serve
            current = ctx.current_release()
            return current is None or start_release(ctx, current).ok
        report = start_on(ctx, str(live["release"]), str(live["color"]))
        if report.ok:
            router = ctx.router()
            router.ensure_running(ctx.target(str(live["color"])))
            router.switch(ctx.target(str(live["color"])))
        return report.ok

    def protected(self, ctx: HostContext) -> set[str]:
        return protected(ctx)
