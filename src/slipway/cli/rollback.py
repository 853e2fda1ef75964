"""``slipway rollback ENV [--to RELEASE]``: make an earlier release live again."""

from __future__ import annotations

import os
from pathlib import Path

import click

from slipway.cli.context import LOCK_WAIT, SafePath, echo_json_line, loaded_config
from slipway.cli.hosts import host_session
from slipway.cli.output import Progress
from slipway.deploy.engine import Deployer
from slipway.deploy.rollback import manual_rollback, rolled_back_from
from slipway.errors import SlipwayError, UsageError
from slipway.github.api import GitHub, report_deployment


@click.command(name="rollback")
@click.argument("environment")
@click.option("--to", "to", default=None, help="Release id (default: the previous good one).")
@click.option(
    "--restore-db",
    is_flag=True,
    help="Also restore the database backup taken before the current release.",
)
@click.option(
    "--identity",
    type=SafePath(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="age identity (private key) file, to restore an encrypted backup.",
)
@click.option(
    "--lock-wait", type=LOCK_WAIT, default=0, help="Seconds to wait for the lock (0-86400)."
)
@click.option(
    "--github-deployment",
    is_flag=True,
    help="Report the rollback as a GitHub deployment with its status.",
)
@click.option("--json", "as_json", is_flag=True, help="Emit JSON events and a JSON result.")
@click.pass_context
def command(
    ctx: click.Context,
    environment: str,
    to: str | None,
    restore_db: bool,
    identity: Path | None,
    lock_wait: float,
    github_deployment: bool,
    as_json: bool,
) -> None:
    """Roll ENVIRONMENT back to an earlier release, gated on health like a deploy.

    Blue-green: while the previous release is still warm on the other colour (the
    standby period after a deploy), this is an instant switch back (under a second).
    Afterwards the release is started on the free colour, gated, then switched to.

    The database is left as it is unless --restore-db is given, or the schema changed
    since the target ran (then the backup taken before the current release is restored
    while requests wait at the holding proxy; the live database is first set aside as a
    backup, never destroyed, and the rows only in it are reported per table). After an
    instant rollback, --restore-db alone restores the data as it was before the release
    rolled back from. If the target is unhealthy, the
    current release is started again and the command exits 1.
    """
    loaded = loaded_config(ctx)
    progress = Progress(as_json=as_json, color=not ctx.obj["no_color"])
    for deployer in host_session(loaded, environment, emit=progress):
        deployer.identity = identity
        source = rolled_back_from(deployer) if restore_db and to is None else None
        if source is not None:
            _restore_data_of(deployer, source, lock_wait, as_json)
            continue
        gh = GitHub.from_env() if github_deployment else None
        try:
            outcome = manual_rollback(deployer, to, restore_db=restore_db, lock_wait=lock_wait)
        except SlipwayError as exc:
            if gh is not None:
                report_deployment(
                    gh,
                    os.environ.get("GITHUB_SHA") or "main",
                    environment,
                    "failure",
                    f"rollback failed: {exc}"[:140],
                )
            raise
        if gh is not None:
            report_deployment(
                gh, outcome.commit, environment, "success", f"rolled back to {outcome.release}"
            )
        if as_json:
            echo_json_line(
                {
                    "event": "result",
                    "status": outcome.status,
                    "release": outcome.release,
                    "seconds": round(outcome.seconds, 3),
                    "detail": outcome.health,
                }
            )
        else:
            click.echo(f"rolled {environment} back to {outcome.release} ({outcome.health})")


def _restore_data_of(d: Deployer, source: str, lock_wait: float, as_json: bool) -> None:
    """After an instant rollback away from ``source``: put back the database as it was
    before ``source`` was deployed (the live release stays; see ``backup restore``)."""
    from slipway.backups.restore import restore_backup

    manifest = d.backups.before_deploy_of(source)
    live = d.current_release()
    if manifest.get("release") not in (live, None):
        raise UsageError(
            f"the backup taken before {source} was deployed holds {manifest['release']}'s"
            f" data, not the live release {live}'s",
            hint="choose a backup with `slipway backup ENV list` and restore it with"
            " `slipway backup ENV restore ID`",
        )
    d.emit(
        "rollback",
        "info",
        detail=f"the live release came back from {source} by a rollback: restoring the"
        f" backup taken before {source} was deployed ({manifest['id']})",
    )
    note = restore_backup(d, str(manifest["id"]), lock_wait=lock_wait)
    if as_json:
        echo_json_line({"event": "result", "status": "succeeded", "detail": note})
    else:
        click.echo(note)
