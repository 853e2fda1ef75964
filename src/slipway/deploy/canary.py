"""Canary: the new release takes a rising share of real traffic, judged at each step.

After build and backup, as blue-green (:mod:`slipway.deploy.bluegreen`) up to its gate:

- **start** and **health**: the new release starts on the free colour and passes the
  environment's checks there;
- **canary**: for each weight of ``[canary] steps`` (default 5, 25, 50, 100 %) the router
  shares every public port between the stable colour and the canary (Traefik's weighted
  services, or nginx's ``split_clients``; a sticky cookie per process so a client keeps
  its side), and holds the step
  for ``step_seconds`` while the router's access log is read per side. A breach of an
  absolute threshold (the design's 5 % errors, p95 2 s) or a relative one (canary errors
  above ``error_factor`` x stable + ``error_margin``; p95 above ``latency_factor`` x
  stable + ``latency_margin_ms``) sends every request back to the stable colour at once,
  then fails the deploy, whose undo is blue-green's (drain the canary, keep the stable
  colour); the figures go to the record, the audit log, the failure and the incident;
- **watch** and **promote**: blue-green's, the old colour kept warm.

A canary needs both releases to live on one database: the rehearsal must class the
migrations unchanged or additive. Otherwise the deploy is refused before anything live
changes, or goes blue-green (``fallback = "blue-green"``). The first deploy, with
nothing to compare against, switches as blue-green does.

While a canary runs, ``<env>/.slipway/canary.json`` says where it is (``slipway canary
ENV status``); ``slipway canary ENV promote|abort`` leaves a request in
``canary-control.json`` that the running deploy reads between two looks at the log.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slipway.config.model import CanaryConfig, CanaryFallback, WebSocketCheck
from slipway.deploy import bluegreen
from slipway.deploy.bluegreen import BlueGreen
from slipway.deploy.run import RunState
from slipway.deploy.strategy import Step
from slipway.errors import DeployRefused, HealthCheckFailed
from slipway.health.sessions import HeldSessions, SessionFigures
from slipway.metrics.dora import percentile
from slipway.routers import Split
from slipway.state.host import call, read_json_object

if TYPE_CHECKING:
    from slipway.config.model import EnvironmentConfig
    from slipway.deploy.context import HostContext

LOOK_SECONDS = 0.2  # between two reads of the access log: a breach acts within this
WAIT_FOR_TRAFFIC = 3  # a step short of min_requests is held up to this many times longer
PROCESS_LOOKS = 5  # the canary's processes are looked at every this many looks
MIN_WS_DROPS = 2  # held WebSocket sessions the canary must drop before it is judged


@dataclass
class Side:
    """One side's requests in a step's window."""

    requests: int = 0
    errors: int = 0
    ms: list[float] = field(default_factory=list)
    ws_ended: int = 0

    def add(self, found: dict[str, Any]) -> None:
        self.requests += int(found.get("requests", 0))
        self.errors += int(found.get("errors", 0))
        self.ms += [float(v) for v in found.get("ms", [])]
        self.ws_ended += int(found.get("ws_ended", 0))

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p95_ms(self) -> float:
        return percentile(self.ms, 95) or 0.0

    def least_error_rate(self, count: int) -> float:
        """The lowest error rate this side can have once it has ``count`` requests
        (every request still to come answered well); its own rate when it has them."""
        return self.errors / max(self.requests, count) if self.requests else 0.0

    def least_p95_ms(self, count: int) -> float:
        """The lowest p95 this side can have once it has ``count`` requests (every
        request still to come instantly answered, so ranked first); its own p95 when
        it has them. The same nearest rank as :func:`percentile`."""
        missing = max(0, count - len(self.ms))
        if not missing:
            return self.p95_ms
        rank = math.ceil(0.95 * count)
        return 0.0 if rank <= missing else sorted(self.ms)[rank - missing - 1]

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "p95_ms": round(self.p95_ms, 1),
            "ws_ended": self.ws_ended,
        }


@dataclass
class StepAnalysis:
    """One weight held: both sides' figures (in all, and per process: each process is
    judged on its own, so frontend assets cannot dilute a failing backend) and what
    ended it."""

    weight: int
    stable: Side = field(default_factory=Side)
    canary: Side = field(default_factory=Side)
    seconds: float = 0.0
    breach: str | None = None
    ended_by: str = "time"  # time | breach | abort | promote
    promoted_by: str | None = None
    processes: dict[str, tuple[Side, Side]] = field(default_factory=dict)  # (stable, canary)
    sessions: dict[str, SessionFigures] = field(default_factory=dict)  # held WebSockets

    def add(self, process: str, is_canary: bool, figures: dict[str, Any]) -> None:
        pair = self.processes.setdefault(process, (Side(), Side()))
        pair[is_canary].add(figures)
        (self.canary if is_canary else self.stable).add(figures)

    def judged(self, cfg: CanaryConfig) -> str | None:
        """The first breach of any process, named."""
        for process, (stable, canary) in sorted(self.processes.items()):
            found = judge(cfg, stable, canary)
            if found:
                return f"{process}: {found}"
        if "canary" in self.sessions:
            return judge_sessions(cfg, self.sessions["stable"], self.sessions["canary"])
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "seconds": round(self.seconds, 2),
            "stable": self.stable.summary(),
            "canary": self.canary.summary(),
            "processes": {
                name: {"stable": st.summary(), "canary": ca.summary()}
                for name, (st, ca) in sorted(self.processes.items())
            },
            "websocket": {side: figures.summary() for side, figures in self.sessions.items()},
            "breach": self.breach,
            "ended_by": self.ended_by,
        }


def judge(cfg: CanaryConfig, stable: Side, canary: Side) -> str | None:
    """The first threshold the canary breaks, or None: for the error rate, then the
    p95, the absolute limit, then the one relative to the stable side (which needs
    ``min_requests`` stable requests).

    The canary is judged as it will stand at ``min_requests``: before it has them, by
    the least its figures can then be (every request still to come answered well and
    at once). So a breach that is already certain, such as two errors or two slow
    answers among the first twenty, aborts at once instead of after twenty bad
    answers, and nothing that could still pass is judged early."""
    count = cfg.min_requests
    compared = stable.requests >= count
    rules = (
        ("error rate", canary.least_error_rate(count), stable.error_rate,
         cfg.max_error_rate, cfg.error_factor, cfg.error_margin, _percent),
        ("p95", canary.least_p95_ms(count), stable.p95_ms,
         cfg.max_p95_ms, cfg.latency_factor, cfg.latency_margin_ms, _ms),
    )  # fmt: skip
    early = (
        f" (certain after {canary.requests} of min_requests {count})"
        if canary.requests < count
        else ""
    )
    for name, mine, theirs, most, factor, margin, show in rules:
        if mine > most:
            return f"canary {name} {show(mine)} > {show(most)}{early}"
        if compared and mine > factor * theirs + margin:
            return (
                f"canary {name} {show(mine)} > {factor:g} x stable {show(theirs)}"
                f" + {show(margin)}{early}"
            )
    return None


def judge_sessions(cfg: CanaryConfig, stable: SessionFigures, canary: SessionFigures) -> str | None:
    """The WebSocket rule: the share of the canary's held sessions the server refused or
    ended abnormally, against ``max_ws_drop_rate`` and against the stable side's. It
    needs :data:`MIN_WS_DROPS` drops (one session lost to a network blip is no
    verdict), and a canary no worse than the stable side is not blamed for what both
    do (an app whose WebSocket path ends sessions itself); when the stable side drops
    sessions too, only the relative rule judges (the two sides' shares move a drop
    apart from one look to the next)."""
    mine, theirs = canary.drop_rate, stable.drop_rate
    if canary.dropped < MIN_WS_DROPS or (stable.sessions and mine <= theirs):
        return None
    why = f" (last: {canary.last})" if canary.last else ""
    stable_drops = stable.dropped >= MIN_WS_DROPS  # then only the relative rule is fair
    if mine > cfg.max_ws_drop_rate and not stable_drops:
        return (
            f"canary WebSocket sessions ended abnormally {_percent(mine)} >"
            f" {_percent(cfg.max_ws_drop_rate)}{why}"
        )
    if stable.sessions and mine > cfg.error_factor * theirs + cfg.error_margin:
        return (
            f"canary WebSocket sessions ended abnormally {_percent(mine)} >"
            f" {cfg.error_factor:g} x stable {_percent(theirs)} + {_percent(cfg.error_margin)}{why}"
        )
    return None


def _percent(value: float) -> str:
    return f"{value:.1%}"


def _ms(value: float) -> str:
    return f"{value:.0f} ms"


def table(analyses: list[StepAnalysis]) -> str:
    """The analysis as a Markdown table (the failure, the incident, the notification)."""
    lines = [
        "| weight | seconds | side | requests | 5xx | error rate | p95 ms | WebSockets"
        " dropped | ended by |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for a in analyses:
        for name, side in (("stable", a.stable), ("canary", a.canary)):
            s = side.summary()
            held = a.sessions.get(name)
            dropped = f"{held.dropped} of {held.sessions}" if held else "-"
            lines.append(
                f"| {a.weight}% | {a.seconds:.1f} | {name} | {s['requests']} | {s['errors']}"
                f" | {s['error_rate']:.1%} | {s['p95_ms']:.0f} | {dropped} | "
                + (a.breach or a.ended_by if name == "canary" else "")
                + " |"
            )
    return "\n".join(lines)


# --- where the canary is, and what the operator asked --------------------------------


def control_path(d: HostContext) -> str:
    return f"{d.layout.state_dir}/canary-control.json"


def request_control(d: HostContext, action: str, actor: str) -> None:
    """``slipway canary ENV promote|abort``: a request the running deploy acts on."""
    body = {"action": action, "actor": actor, "at": time.time()}
    d.transport.put_text(json.dumps(body), control_path(d), mode=0o600)


def _take_control(d: HostContext) -> dict[str, Any] | None:
    """The operator's request, taken by a rename (one written meanwhile is not lost)."""
    taken = f"{control_path(d)}.taken"
    if not d.transport.run(["mv", "-f", "--", control_path(d), taken], check=False).ok:
        return None
    found = read_json_object(d.transport, taken)
    d.transport.run(["rm", "-f", "--", taken])
    return found


class Progress:
    """The running canary's state file: weights, analyses, how it ended."""

    def __init__(self, d: HostContext, release: str, stable: str, canary: str) -> None:
        self.d = d
        self.analyses: list[StepAnalysis] = []
        self.data: dict[str, Any] = {
            "deployment_id": d.deployment_id,
            "release": release,
            "stable": stable,
            "canary": canary,
            "weight": 0,
            "state": "running",
            "started_at": time.time(),
        }

    def write(self, **changes: Any) -> None:
        self.data.update(changes, updated_at=time.time())
        self.data["steps"] = [a.to_json() for a in self.analyses]
        self.d.transport.put_text(json.dumps(self.data), self.d.canary_status_path, mode=0o600)


# --- the deploy's steps ----------------------------------------------------------------


def refusal(d: HostContext, state: RunState) -> str | None:
    """Why this release cannot run beside the live one on one database (None: it can)."""
    if state.holds:
        return "its migrations change the schema in a way the live release cannot use"
    if state.holds_on:
        return (
            f"on {state.holds_on}, its migrations change the schema in a way the live"
            " release cannot use (a fleet's canary is all hosts or none)"
        )
    if not state.rehearsed:
        return (
            "the migrations were not rehearsed (--no-rehearsal, or [migrations] rehearse ="
            " false), so whether both releases fit one database is not known"
        )
    return None


def refuse_up_front(d: HostContext, breaking: bool, rehearse: bool) -> None:
    """Before the lock: a canary refused by what is already declared (``--breaking``,
    ``[migrations] breaking``, no rehearsal) is refused before anything is uploaded."""
    if d.env.canary.fallback is CanaryFallback.BLUE_GREEN or d.current_release() is None:
        return
    state = RunState(holds=breaking, rehearsed=rehearse)
    why = refusal(d, state)
    if why is not None:
        raise DeployRefused(
            f"a canary was refused: {why}",
            hint="deploy it blue-green (--strategy blue-green), or set [environments."
            f'{d.env_name}.canary] fallback = "blue-green"',
        )


def deploy_steps(
    d: HostContext, release: str, previous: str | None, commit: str, state: RunState
) -> list[Step]:
    why = refusal(d, state) if previous is not None else None
    if why is not None:
        if d.env.canary.fallback is CanaryFallback.BLUE_GREEN:
            d.emit("canary", "info", detail=f"no canary: {why}; deploying blue-green instead")
            return bluegreen.deploy_steps(d, release, previous, commit, state)
        raise DeployRefused(
            f"a canary of {release} was refused: {why}",
            hint="deploy it blue-green (--strategy blue-green), or set [environments."
            f'{d.env_name}.canary] fallback = "blue-green"',
        )
    color = d.build_color or bluegreen.next_color(d)
    return [
        ("start", lambda: bluegreen.start_new_color(d, release, commit, color, state)),
        ("health", lambda: bluegreen.gate_color(d, color, state)),
        ("canary", lambda: run_canary(d, release, color, state)),
        ("watch", lambda: bluegreen.watch(d, color)),
        ("promote", lambda: bluegreen.finish(d, release, color, previous, state)),
    ]


def run_canary(d: HostContext, release: str, color: str, state: RunState) -> None:
    """Each weight in turn; a breach (or ``abort``) sends every request back to the
    stable colour before anything else, then fails the deploy."""
    old = state.old_color
    if old is None or not d.color_online(old):  # nothing to compare with: switch
        d.emit("canary", "warning", detail="no stable colour running: switching at once")
        bluegreen.switch_to(d, color, state)
        return
    cfg = d.env.canary
    router = d.router()
    d.checkpoint("canary", state, switched=True)
    state.switched = True  # from here an undo switches back, whatever comes next
    _take_control(d)  # a request left from an earlier canary is not this one's
    progress = Progress(d, release, old, color)
    progress.write()
    # A cookie of this canary's own: a client sorted by an earlier canary (whose
    # colours have since swapped) must not land on this one's side.
    cookie = f"{cfg.cookie}_{d.deployment_id}"
    for weight in cfg.steps:
        started = time.monotonic()
        if weight < 100:
            report = router.split(Split(d.target(old), d.target(color), weight, cookie))
        else:
            report = router.switch(d.target(color))
        d.audit("canary.step", to=color, weight=weight, seconds=report.seconds)
        d.emit("canary", "info", detail=f"{weight}% on {color} (confirmed in {report.seconds}s)")
        progress.write(weight=weight)
        analysis = observe(d, cfg, old, color, weight, started)
        progress.analyses.append(analysis)
        if analysis.ended_by in ("breach", "abort"):
            abort(d, progress, analysis, old, color)
        progress.write()
        d.emit("canary", "info", detail=_figures(analysis))
        if analysis.ended_by == "promote":
            if weight < 100:
                router.switch(d.target(color))
            d.audit("canary.promoted", to=color, by=analysis.promoted_by)
            break
    progress.write(state="passed", weight=100)
    d.audit("canary.passed", to=color, steps=[a.to_json() for a in progress.analyses])


def observe(
    d: HostContext, cfg: CanaryConfig, old: str, new: str, weight: int, started: float
) -> StepAnalysis:
    """Hold ``weight`` for ``step_seconds``, reading the access log every
    :data:`LOOK_SECONDS`; ends early on a breach or the operator's request. A step
    that has not seen ``min_requests`` canary requests is held longer (up to
    :data:`WAIT_FOR_TRAFFIC` times), then fails: too little traffic to judge is no
    pass (nor is a log that stopped growing)."""
    analysis = StepAnalysis(weight)
    log = f"{d.router().setup.directory}/logs/access.log"
    offset = call(d.transport, "sides", log=log, offset=None)["offset"]
    with hold_sessions(d, cfg, old, new) as held:
        return _look(d, cfg, analysis, log, offset, held, (old, new), started)


def hold_sessions(d: HostContext, cfg: CanaryConfig, old: str, new: str) -> HeldSessions:
    """``ws_sessions`` WebSocket sessions on each colour's backend for one step (none
    when the app has no WebSocket check, or this host no backend)."""
    check = d.config.health.websocket
    timeout = float(d.config.health.timeout_seconds)
    if check is None or "backend" not in d.config.processes or not cfg.ws_sessions:
        return HeldSessions(WebSocketCheck(), {}, 0, timeout)
    urls = {
        side: f"ws://127.0.0.1:{d.local_port('backend', color)}{check.path}"
        for side, color in (("stable", old), ("canary", new))
    }
    return HeldSessions(check, urls, cfg.ws_sessions, timeout)


def _look(
    d: HostContext,
    cfg: CanaryConfig,
    analysis: StepAnalysis,
    log: str,
    offset: int,
    held: HeldSessions,
    colors: tuple[str, str],
    started: float,
) -> StepAnalysis:
    """The step's loop (see :func:`observe`)."""
    old, new = colors
    deadline = started + cfg.step_seconds
    looks = 0
    while True:
        time.sleep(LOOK_SECONDS)
        looks += 1
        d.check_lock()  # a lock released by force: stop here (the next command undoes)
        if d.stop_requested is not None:
            d.stop_requested()  # another host of the fleet failed: go back
        found = call(d.transport, "sides", log=log, offset=offset)
        offset = found["offset"]
        for service, figures in found["sides"].items():
            process, _, side = service.split("@", 1)[0].rpartition("-")
            if not process or side not in (old, new):  # all on one colour: the canary's
                process, side = service.split("@", 1)[0], new
            analysis.add(process, side == new, figures)
        analysis.sessions = held.figures()
        now = time.monotonic()
        analysis.seconds = now - started
        analysis.breach = analysis.judged(cfg)
        if analysis.breach is None and looks % PROCESS_LOOKS == 0:
            # A crashed or crash-looping canary drops its WebSockets and requests.
            crashed = d.processes_abort(new)
            analysis.breach = f"canary {crashed}" if crashed else None
        if analysis.breach:
            analysis.ended_by = "breach"
            return analysis
        control = _take_control(d)
        if control and control.get("action") in ("abort", "promote"):
            return _controlled(d, analysis, control)
        if now >= deadline and analysis.canary.requests >= cfg.min_requests:
            return analysis
        if now >= started + cfg.step_seconds * WAIT_FOR_TRAFFIC:
            analysis.breach = (
                f"too little traffic to judge: {analysis.canary.requests} canary requests in"
                f" {analysis.seconds:.0f}s (min_requests {cfg.min_requests})"
            )
            analysis.ended_by = "breach"
            return analysis


def _controlled(d: HostContext, analysis: StepAnalysis, control: dict[str, Any]) -> StepAnalysis:
    analysis.ended_by = str(control["action"])
    who = str(control.get("actor", "someone"))
    if analysis.ended_by == "abort":
        analysis.breach = f"aborted by {who}"
    else:
        analysis.promoted_by = who
    d.audit(f"canary.{analysis.ended_by}_requested", by=who, weight=analysis.weight)
    return analysis


def abort(d: HostContext, progress: Progress, analysis: StepAnalysis, old: str, new: str) -> None:
    """Every request back to ``old`` now (weight 0; not asking its health path first:
    it was serving until the split), then the deploy fails; its undo drains the
    canary. The time from the breach found to the routes confirmed is recorded."""
    found_at = time.monotonic()
    d.emit("canary", "warning", detail=f"{analysis.breach}: sending every request back to {old}")
    report = d.router().switch(d.target(old), check_target=False)
    to_zero = time.monotonic() - found_at
    progress.write(state="aborted", weight=0, breach=analysis.breach, to_zero_s=to_zero)
    steps = [a.to_json() for a in progress.analyses]
    d.audit(
        "canary.aborted",
        at_weight=analysis.weight,
        breach=analysis.breach,
        to_zero_seconds=round(to_zero, 3),
        switch_seconds=report.seconds,
        steps=steps,
    )
    d.emit("canary", "warning", detail=f"{analysis.breach}: every request back on {old}")
    raise HealthCheckFailed(
        f"canary aborted at {analysis.weight}% on {new}: {analysis.breach}; every request"
        f" back on {old} {to_zero:.2f}s later\n{table(progress.analyses)}"
    )


def _figures(a: StepAnalysis) -> str:
    c, s = a.canary.summary(), a.stable.summary()
    return (
        f"{a.weight}% held {a.seconds:.1f}s: canary {c['requests']} requests,"
        f" {c['error_rate']:.1%} 5xx, p95 {c['p95_ms']:.0f} ms; stable {s['requests']},"
        f" {s['error_rate']:.1%}, p95 {s['p95_ms']:.0f} ms"
    )


class Canary(BlueGreen):
    """The :class:`~slipway.deploy.strategy.Strategy` of ``strategy = "canary"``: blue-
    green's colours, undo, rollback and standby, with a judged, rising split between
    the gate and the promote."""

    name = "canary"

    def plan(self, env: EnvironmentConfig) -> list[tuple[str, str]]:
        found = super().plan(env)
        switch = (
            "canary",
            "{router}: {steps}% of requests to the new colour, {step}s each, judged from the"
            " access log; a breach sends all back to the old colour",
        )
        return [switch if name == "switch" else (name, text) for name, text in found]

    def plan_values(self, env: EnvironmentConfig) -> dict[str, str]:
        values = super().plan_values(env)
        values.update(
            steps=", ".join(str(w) for w in env.canary.steps),
            step=f"{env.canary.step_seconds:g}",
        )
        return values

    def refuse_up_front(self, ctx: HostContext, breaking: bool, rehearse: bool) -> None:
        refuse_up_front(ctx, breaking, rehearse)

    def activate(
        self, ctx: HostContext, release: str, previous: str | None, commit: str, state: RunState
    ) -> list[Step]:
        return deploy_steps(ctx, release, previous, commit, state)

    def recover(
        self, ctx: HostContext, previous: str | None, state: RunState, deployment_id: str
    ) -> tuple[bool, str]:
        """Blue-green's undo; the canary's state file then says it was rolled back
        (a killed or failed run left it "running" or "passed")."""
        found = super().recover(ctx, previous, state, deployment_id)
        status = ctx.canary_status()
        mine = status is not None and status.get("deployment_id") == deployment_id
        if status is not None and mine and status.get("state") != "aborted":
            status.update(state="rolled back", weight=0, updated_at=time.time())
            ctx.transport.put_text(json.dumps(status), ctx.canary_status_path, mode=0o600)
        return found
