"""``slipway status ENV`` and ``slipway audit ENV``: what the host's records say."""

from __future__ import annotations

import getpass
import time
from typing import Any

import click

from slipway.cli.context import echo_json, loaded_config
from slipway.cli.hosts import host_session
from slipway.config import LoadedConfig
from slipway.deploy.context import check_actor
from slipway.state import heads, records
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
        entry["unfinished"] = deployer.unfinished_run()
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


def _printable(value: object) -> str:
    """A record's text for the terminal: a control character shows escaped, never acts
    (rows written before the helper stripped them are shown safely too)."""
    text = str(value)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _parse_head(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    row, _, digest = value.partition(":")
    if not row.isdigit() or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        raise click.BadParameter(
            f"{value!r} is not ROW:HASH (a row number, a colon and 64 hex digits, as the"
            " notification's 'Audit head' shows it)",
            param_hint="--head",
        )
    return {"id": int(row), "hash": digest}


@click.command(name="audit")
@click.argument("environment")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--verify",
    is_flag=True,
    help="Check the hash chain and the deployments it vouches for; exit 1 naming the first"
    " break (rows changed, removed or inserted behind slipway's back).",
)
@click.option(
    "--head",
    default=None,
    metavar="ROW:HASH",
    help="With --verify: a head seen elsewhere (a notification's 'Audit head') that must"
    " still be in the log. This machine's last seen head is always checked.",
)
@click.option(
    "--new-log",
    is_flag=True,
    help="The records database is missing or unreadable: keep it aside and start a new"
    " log whose first row says so (asks for --reason).",
)
@click.option("--reason", default="", help="Why a new log is started (kept in its first row).")
@click.pass_context
def audit_command(
    ctx: click.Context,
    environment: str,
    limit: int,
    as_json: bool,
    verify: bool,
    head: str | None,
    new_log: bool,
    reason: str,
) -> None:
    """Show the append-only audit log of ENVIRONMENT (who did what, when).

    Each row's hash covers the row before it, so `--verify` finds any row changed,
    removed or inserted since slipway wrote it, and any deployment record changed after
    its last audit row (exit 1 names the first). Exit codes: 0 fine, 1 the log fails
    verification or cannot be read, 2 bad arguments.
    """
    loaded = loaded_config(ctx)
    given = _parse_head(head)
    if new_log and not reason.strip():
        raise click.UsageError("--new-log needs --reason TEXT (it is kept in the new log)")
    if new_log:
        _start_new_logs(loaded, environment, reason)
        return
    if verify:
        ctx.exit(_verify_logs(loaded, environment, given, as_json))
    for deployer in host_session(loaded, environment):
        rows = records.audit_log(deployer.transport, deployer.layout, limit)
        if as_json:
            echo_json(rows)
            continue
        for row in rows:
            click.echo(
                f"{_when(row['at'])}  {_printable(row['actor']):<12}"
                f" {_printable(row['event']):<18} {_printable(row['detail'])}"
            )


def _verify_logs(
    loaded: LoadedConfig, environment: str, given: dict[str, Any] | None, as_json: bool
) -> int:
    reports = []
    for deployer in host_session(loaded, environment):
        name = deployer.heads_key
        report = records.verify(deployer.transport, deployer.layout, heads.recall(name), given)
        report["host"] = deployer.transport.name
        reports.append(report)
        if report["ok"] and report["head"]:
            heads.remember(name, report["head"])
        if as_json:
            continue
        where = f"{environment} on {report['host']}"
        if report["ok"]:
            top = report["head"]
            at = f", head {top['id']}:{top['hash']}" if top else ""
            click.echo(f"{where}: audit log verified ({report['rows']} rows{at})")
        else:
            click.echo(f"{where}: audit log FAILS verification", err=True)
            for problem in report["problems"]:
                click.echo(f"  - {_printable(problem)}", err=True)
    if as_json:
        echo_json(reports)
    return 0 if all(r["ok"] for r in reports) else 1


def _start_new_logs(loaded: LoadedConfig, environment: str, reason: str) -> None:
    actor = check_actor(getpass.getuser())
    for deployer in host_session(loaded, environment):
        previous = records.new_log(deployer.transport, deployer.layout, actor, reason)
        top = records.head(deployer.transport, deployer.layout)
        if top:
            heads.remember(deployer.heads_key, top)
        kept = f"; the old file is kept as {previous}" if previous else ""
        click.echo(f"{environment} on {deployer.transport.name}: new audit log started{kept}")
