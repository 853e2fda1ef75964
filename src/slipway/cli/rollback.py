"""``slipway rollback ENV [--to RELEASE]``: make an earlier release live again."""

from __future__ import annotations

from pathlib import Path

import click

from slipway.cli.context import echo_json_line, loaded_config
from slipway.cli.hosts import host_session
from slipway.cli.output import Progress
from slipway.deploy.rollback import manual_rollback


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
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="age identity (private key) file, to restore an encrypted backup.",
)
@click.option("--lock-wait", type=float, default=0, help="Seconds to wait for the lock.")
@click.option("--json", "as_json", is_flag=True, help="Emit JSON events and a JSON result.")
@click.pass_context
def command(
    ctx: click.Context,
    environment: str,
    to: str | None,
    restore_db: bool,
    identity: Path | None,
    lock_wait: float,
    as_json: bool,
) -> None:
    """Roll ENVIRONMENT back to an earlier release, gated on health like a deploy.

    Blue-green: while the previous release is still warm on the other colour (the
    standby period after a deploy), this is an instant switch back (under a second).
    Afterwards the release is started on the free colour, gated, then switched to.

    The database is left as it is unless --restore-db is given (then the live database
    is first set aside as a backup, never destroyed). If the target is unhealthy, the
    current release is started again and the command exits 1.
    """
    loaded = loaded_config(ctx)
    progress = Progress(as_json=as_json, color=not ctx.obj["no_color"])
    for deployer in host_session(loaded, environment, emit=progress):
        deployer.identity = identity
        outcome = manual_rollback(deployer, to, restore_db=restore_db, lock_wait=lock_wait)
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
