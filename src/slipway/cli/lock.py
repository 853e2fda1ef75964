"""``slipway lock ENV``: who holds the deploy lock, if anyone."""

from __future__ import annotations

import click

from slipway.cli.context import echo_json, loaded_config
from slipway.cli.hosts import host_session
from slipway.errors import UsageError
from slipway.state.lock import force_release, is_held, read_owner


@click.command(name="lock")
@click.argument("environment")
@click.option("--release", "release", is_flag=True, help="End the holder (needs --force).")
@click.option("--force", is_flag=True, help="Confirm --release.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def command(
    ctx: click.Context, environment: str, release: bool, force: bool, as_json: bool
) -> None:
    """Show whether a deploy holds ENVIRONMENT's lock, and whose it is.

    The lock is an flock held by the deploying process itself: it is released the
    moment that process exits, is killed, or loses its SSH connection, so there is no
    stale lock to clear by hand. `--release --force` ends a deployer that hangs while
    still connected: it shows the owner, then stops the lock's holder process.
    """
    if release and not force:
        raise UsageError("--release ends another deploy's lock", hint="add --force to confirm")
    loaded = loaded_config(ctx)
    if release:
        for deployer in host_session(loaded, environment):
            owner = force_release(deployer.transport, deployer.layout)
            click.echo(
                f"{environment}: released lock of {owner.describe()}"
                if owner
                else f"{environment}: lock was free"
            )
        return
    report = []
    for deployer in host_session(loaded, environment):
        held = is_held(deployer.transport, deployer.layout)
        owner = read_owner(deployer.transport, deployer.layout) if held else None
        report.append(
            {
                "host": deployer.transport.name,
                "held": held,
                "owner": owner.__dict__ if owner else None,
            }
        )
        if not as_json:
            who = owner.describe() if owner else "unknown owner"
            click.echo(f"{environment}: " + (f"locked by {who}" if held else "free"))
    if as_json:
        echo_json(report)
