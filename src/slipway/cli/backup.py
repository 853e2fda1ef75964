"""``slipway backup ENV create|list|verify|restore|diff|prune``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from slipway.backups.trial import start_app_on_copy
from slipway.cli.context import LOCK_WAIT, SafePath, echo_json, loaded_config
from slipway.cli.hosts import host_session
from slipway.cli.output import Progress
from slipway.deploy.database import set_aside_rows

IDENTITY = click.option(
    "--identity",
    type=SafePath(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="age identity (private key) file, for encrypted backups.",
)
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group(name="backup")
@click.argument("environment")
@click.pass_context
def command(ctx: click.Context, environment: str) -> None:
    """Back up, list, verify, restore and prune ENVIRONMENT's SQLite database.

    Backups are online (the app keeps writing), checked with integrity_check, described
    by a manifest, mode 0600, and encrypted with age when backups.age_recipients is set.
    A production deploy takes one before anything changes.

    \b
    Examples:
      slipway backup production create
      slipway backup production list
      slipway backup production verify 20261127T101500.123-manual --identity key.txt
      slipway backup production prune --dry-run
    """
    ctx.obj["environment"] = environment


def _sessions(ctx: click.Context, progress: Progress | None = None) -> Any:
    return host_session(loaded_config(ctx), ctx.obj["environment"], emit=progress)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@command.command(name="create")
@JSON
@click.pass_context
def create(ctx: click.Context, as_json: bool) -> None:
    """Take a backup now (reason: manual)."""
    for d in _sessions(ctx):
        if not d.holds_database:
            click.echo(f"{d.transport.name}: runs no backend (roles): no database to back up")
            continue
        db = d.layout.database(d.env.database)
        manifest = d.backups.create(db, reason="manual", release=d.current_release(), commit=None)
        if manifest is None:
            raise click.ClickException(f"no database at {db} on {d.transport.name}")
        manifest = d.backups.seal(manifest)
        d.audit("backup.created", backup=manifest["id"])
        if as_json:
            echo_json(manifest)
        else:
            click.echo(f"{manifest['id']}  {manifest['size']} bytes  {d.backups.path_of(manifest)}")


@command.command(name="list")
@JSON
@click.pass_context
def list_backups(ctx: click.Context, as_json: bool) -> None:
    """List backups, newest first, then any broken manifest (unreadable, a field
    missing, or naming a file outside the backups directory): those are never restored
    or pruned (said on stderr, --json too); look at them and remove them by hand."""
    for d in _sessions(ctx):
        manifests, broken = d.backups.scan()
        for entry in broken:
            click.echo(
                f"BROKEN {d.backups.directory}/{entry['name']}: {'; '.join(entry['problems'])}"
                " (never restored or pruned: look at it, then remove it by hand)",
                err=True,
            )
        if as_json:
            echo_json(manifests)
            continue
        for m in manifests:
            lock = " (age)" if m["encrypted"] else ""
            rows = sum(m["tables"].values())
            click.echo(
                f"{m['id']:<52} {_when(m['created_at'])}  {m['size']:>12} bytes"
                f"  {rows:>8} rows  schema {m.get('schema_version')}{lock}"
            )


@command.command(name="verify")
@click.argument("backup_id", required=False)
@IDENTITY
@click.option("--start-app", is_flag=True, help="Also run the backend on a copy and check it.")
@JSON
@click.pass_context
def verify(
    ctx: click.Context,
    backup_id: str | None,
    identity: Path | None,
    start_app: bool,
    as_json: bool,
) -> None:
    """Restore a backup (default: the newest backup of the live database, never a copy a
    restore set aside) into a scratch file and check it.

    With --start-app, also start the live release's backend against a copy of it (on a
    free port, outside PM2, never touching the live database) and run its API and
    database checks: the design's monthly restore test, end to end.

    Exit 1 when the checksum, integrity_check, a table's row count or (with
    --start-app) a check is wrong. Schedulable (cron, CI).
    """
    failed = False
    for d in _sessions(ctx):
        if not d.holds_database and not backup_id:
            click.echo(f"{d.transport.name}: runs no backend (roles): no backup to verify")
            continue
        manifest = d.backups.get(backup_id) if backup_id else d.backups.newest_of_live()
        result = d.backups.verify(manifest, identity)
        if start_app and result["ok"]:
            trial = start_app_on_copy(d, manifest, identity)
            result["app"] = trial
            if not trial["ok"]:
                result["ok"] = False
                result["problems"] = [f"the backend on the copy: {trial['summary']}"]
        failed = failed or not result["ok"]
        if as_json:
            echo_json({"id": manifest["id"], **result})
        elif result["ok"]:
            click.echo(f"{manifest['id']}: ok ({sum(result['tables'].values())} rows)")
            if "app" in result:
                app = result["app"]
                click.echo(f"  backend {app['release']} on the copy: {app['summary']}")
        else:
            click.echo(f"{manifest['id']}: FAILED: {'; '.join(result['problems'])}")
    if failed:
        ctx.exit(1)


@command.command(name="restore")
@click.argument("backup_id")
@IDENTITY
@click.option(
    "--lock-wait", type=LOCK_WAIT, default=0, help="Seconds to wait for the lock (0-86400)."
)
@click.pass_context
def restore(ctx: click.Context, backup_id: str, identity: Path | None, lock_wait: float) -> None:
    """Put BACKUP_ID back as the live database (the site stops meanwhile).

    The backup is verified first; the live database is kept as a pre-restore backup.
    """
    from slipway.backups.restore import restore_backup

    progress = Progress(as_json=False, color=not ctx.obj["no_color"])
    for d in _sessions(ctx, progress):
        d.identity = identity
        click.echo(restore_backup(d, backup_id, lock_wait=lock_wait))


@command.command(name="diff")
@click.argument("first")
@click.argument("second")
@IDENTITY
@JSON
@click.pass_context
def diff(ctx: click.Context, first: str, second: str, identity: Path | None, as_json: bool) -> None:
    """Rows of backup FIRST that backup SECOND does not have, per table (by primary
    key, else rowid), and the other way round.

    After a restore, FIRST is the copy it set aside and SECOND the backup it restored:
    the rows listed are the writes the restore took off the live site.

    \b
    Example:
      slipway backup production diff 20261130T101500.123-pre-restore \
        20261130T100000.001-pre-deploy-20261130100000-ab12cd34
    """
    for d in _sessions(ctx):
        a, b = d.backups.get(first), d.backups.get(second)
        with d.backups.plaintext(a, identity) as path_a, d.backups.plaintext(b, identity) as path_b:
            only_a = set_aside_rows(d, path_a, path_b)
            only_b = set_aside_rows(d, path_b, path_a)
        if as_json:
            echo_json(
                {"first": a["id"], "second": b["id"], "only_first": only_a, "only_second": only_b}
            )
            continue
        for name, only in ((a["id"], only_a), (b["id"], only_b)):
            tables = ", ".join(f"{t} {n}" for t, n in sorted(only.items())) or "none"
            click.echo(f"rows only in {name}: {tables}")


@command.command(name="prune")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@JSON
@click.pass_context
def prune(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Delete backups beyond retention (retention_days; the newest keep_last good ones
    and the newest good one are always kept)."""
    for d in _sessions(ctx):
        plan = d.backups.prune(dry_run=dry_run)
        if as_json:
            echo_json({"keep": plan.keep, "delete": plan.delete, "dry_run": dry_run})
            continue
        verb = "would delete" if dry_run else "deleted"
        for backup_id in plan.delete:
            click.echo(f"{verb} {backup_id} ({plan.reasons[backup_id]})")
        click.echo(f"{len(plan.keep)} kept, {len(plan.delete)} {verb.split()[-1]}")
