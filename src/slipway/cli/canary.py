"""``slipway canary ENV status|promote|abort``: see and steer a running canary deploy."""

from __future__ import annotations

import getpass
import time
from typing import Any

import click

from slipway.cli.context import echo_json, loaded_config
from slipway.cli.hosts import host_session
from slipway.deploy import canary
from slipway.deploy.context import HostContext
from slipway.errors import SlipwayError
from slipway.state.lock import is_held

ANSWER_SECONDS = 15.0  # how long promote/abort wait for the deploy to act


@click.command(name="canary")
@click.argument("environment")
@click.argument("action", type=click.Choice(["status", "promote", "abort"]), default="status")
@click.option("--actor", default=None, help="Who asks (default: your user name).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def command(
    ctx: click.Context, environment: str, action: str, actor: str | None, as_json: bool
) -> None:
    """Show (status) or steer (promote, abort) the canary deploy running in ENVIRONMENT.

    \b
    status   the weight now, and each step's figures: requests, 5xx share and p95 per
             side (stable, canary), and what ended the step
    promote  all traffic to the canary now; the deploy goes on to watch and promote
    abort    all traffic back to the stable colour now; the deploy fails and drains the
             canary (recorded and notified as a failed change)

    promote and abort are read by the running deploy between two looks at the router's
    log (a fraction of a second) and wait for it to act. Exit codes: 0 done, 1 no
    canary is running (or it did not act in time), 2 bad usage.

    \b
    Example:
      slipway deploy production --ref v1.5.0 --strategy canary &
      slipway canary production status
      slipway canary production abort
    """
    loaded = loaded_config(ctx)
    who = actor or getpass.getuser()
    report, steered = [], 0
    for d in host_session(loaded, environment):
        found = d.canary_status()
        if action != "status" and _running(d, found):
            found = _steer(d, action, who)  # every host of a fleet running one
            steered += 1
        report.append({"host": d.transport.name, "canary": found})
        if not as_json:
            click.echo(_describe(d, found))
    if as_json:
        echo_json(report if len(report) > 1 else report[0])
    if action != "status" and not steered:
        raise SlipwayError(
            f"no canary is running in {environment}",
            hint=f"see `slipway canary {environment} status` and `slipway status {environment}`",
        )


def _running(d: HostContext, found: dict[str, Any] | None) -> bool:
    return bool(found and found.get("state") == "running" and is_held(d.transport, d.layout))


def _steer(d: HostContext, action: str, who: str) -> dict[str, Any]:
    canary.request_control(d, action, who)
    deadline = time.monotonic() + ANSWER_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = d.canary_status() or {}
        if action == "abort" and now.get("state") == "aborted":
            return now
        if action == "promote" and (now.get("weight") == 100 or now.get("state") != "running"):
            return now
    raise SlipwayError(
        f"{d.transport.name}: the canary deploy did not act on {action} within"
        f" {ANSWER_SECONDS:g}s",
        hint="it reads the request between two looks at the log; see its output",
    )


def _describe(d: HostContext, found: dict[str, Any] | None) -> str:
    if not found:
        return f"{d.transport.name}: no canary has run in {d.env_name}"
    lines = [
        f"{d.transport.name}: canary of {found['release']} on {found['canary']} is"
        f" {found['state']}, {found['weight']}% of requests (stable: {found['stable']})"
    ]
    if found.get("breach"):
        lines.append(f"  ended by: {found['breach']}")
    for step in found.get("steps", []):
        c, s = step["canary"], step["stable"]
        ws = step.get("websocket") or {}
        lines.append(
            f"  {step['weight']:>3}% {step['seconds']:>6.1f}s  canary {c['requests']} req"
            f" {c['error_rate']:.1%} 5xx p95 {c['p95_ms']:.0f} ms{_ws(ws.get('canary'))}"
            f" | stable {s['requests']} req {s['error_rate']:.1%} 5xx p95"
            f" {s['p95_ms']:.0f} ms{_ws(ws.get('stable'))}  ({step['ended_by']})"
        )
    return "\n".join(lines)


def _ws(held: dict[str, Any] | None) -> str:
    return f" ws {held['dropped']}/{held['sessions']} dropped" if held else ""
