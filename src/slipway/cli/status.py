"""``slipway status ENV`` and ``slipway audit ENV``: what the host's records say."""

from __future__ import annotations

import time
from typing import Any

import click

from slipway.cli.context import echo_json, loaded_config
from slipway.cli.hosts import host_session
from slipway.deploy import journal
from slipway.deploy.engine import Deployer
from slipway.state import records
from slipway.state.lock import is_held


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _colors_line(colors: dict[str, Any], environment: str, locked: bool) -> str:
    """The colours; a drain nobody is doing (the lock is free) says how to finish it."""
    live, standby = colors["live"], colors["standby"]
    text = f"live colour: {live['color']} ({live['release']})" if live else "live colour: -"
    if standby and standby.get("draining"):
        text += f"; draining: {standby['color']} ({standby['release']})"
        if not locked:
            text += f", its job stopped: `slipway recover {environment}` stops it"
    elif standby:
        text += f"; warm standby: {standby['color']} ({standby['release']}) until"
        text += f" {_when(standby['until'])}"
    return text


def _unfinished(d: Deployer) -> dict[str, Any] | None:
    """The run the journal on the host describes: under way (its lock is held) or
    interrupted (nobody holds the lock: it stopped without finishing)."""
    data = journal.read(d.transport, d.layout)
    if data is None:
        return None
    row = data.get("row") or {}
    return {
        "id": row.get("id"),
        "kind": data.get("kind", "deploy"),
        "release": row.get("release"),
        "step": journal.last_step(data) if "steps" in data else None,
        "interrupted": not is_held(d.transport, d.layout),
    }


def _unfinished_line(environment: str, run: dict[str, Any]) -> str:
    what = f"{run['kind']} {run['id']} of {run['release']}"
    if run["interrupted"]:
        return (
            f"INTERRUPTED {what} in step '{run['step']}': run `slipway recover {environment}`"
            " (any deploy or rollback also recovers it first)"
        )
    return f"{what} under way (step '{run['step']}')"


@click.command(name="status")
@click.argument("environment")
@click.option("--limit", default=10, show_default=True, help="How many deployments to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def command(ctx: click.Context, environment: str, limit: int, as_json: bool) -> None:
    """Show the live release and the last deployments of ENVIRONMENT on each host."""
    loaded = loaded_config(ctx)
    report: list[dict[str, Any]] = []
    for deployer in host_session(loaded, environment):
        rows = records.deployments(deployer.transport, deployer.layout, limit)
        entry: dict[str, Any] = {
            "host": deployer.transport.name,
            "current": deployer.current_release(),
            "deployments": rows,
        }
        if deployer.blue_green:
            entry["colors"] = deployer.read_colors()
        entry["unfinished"] = _unfinished(deployer)
        report.append(entry)
        if not as_json:
            click.echo(f"{environment} on {entry['host']}: live release {entry['current'] or '-'}")
            if "colors" in entry:
                # Probe the lock only for a drain: a probe makes a deploy wait for it.
                draining = (entry["colors"]["standby"] or {}).get("draining")
                locked = bool(draining) and is_held(deployer.transport, deployer.layout)
                click.echo("  " + _colors_line(entry["colors"], environment, locked))
            if entry["unfinished"]:
                click.echo("  " + _unfinished_line(environment, entry["unfinished"]))
            for row in rows:
                failed = f" at {row['failed_step']}" if row.get("failed_step") else ""
                click.echo(
                    f"  {_when(row['started_at'])}  {row['status']:<11}{failed:<12}"
                    f" {row['ref']} {row['commit_sha'][:10]} by {row['actor']}"
                    f" ({row.get('duration_s') or 0:.1f}s)"
                )
    if as_json:
        echo_json(report)


@click.command(name="audit")
@click.argument("environment")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def audit_command(ctx: click.Context, environment: str, limit: int, as_json: bool) -> None:
    """Show the append-only audit log of ENVIRONMENT (who did what, when)."""
    loaded = loaded_config(ctx)
    for deployer in host_session(loaded, environment):
        rows = records.audit_log(deployer.transport, deployer.layout, limit)
        if as_json:
            echo_json(rows)
            continue
        for row in rows:
            click.echo(f"{_when(row['at'])}  {row['actor']:<12} {row['event']:<18} {row['detail']}")
