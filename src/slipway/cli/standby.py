"""``slipway standby ENV [--stop]``: the warm old colour kept after a blue-green deploy."""

from __future__ import annotations

import click

from slipway.cli.context import echo_json, loaded_config
from slipway.cli.hosts import host_session
from slipway.deploy import bluegreen
from slipway.errors import UsageError


@click.command(name="standby")
@click.argument("environment")
@click.option("--stop", is_flag=True, help="Drain and stop the standby now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def command(ctx: click.Context, environment: str, stop: bool, as_json: bool) -> None:
    """Show (or --stop) ENVIRONMENT's warm standby colour.

    After a blue-green deploy the previous release keeps running on the old colour for
    `standby_seconds` so that `slipway rollback` is an instant switch; then a job on the
    host drains and stops it. --stop does that now: requests in flight finish and
    WebSockets are closed with 1001 before the processes exit.
    """
    loaded = loaded_config(ctx)
    for deployer in host_session(loaded, environment):
        if not deployer.blue_green:
            raise UsageError(f"{environment} does not use the blue-green strategy")
        colors = deployer.read_colors()
        stopped = None
        if stop and colors["standby"]:
            lock = deployer.take_lock(ref="standby", reason="stop standby", wait=0)
            try:
                stopped = bluegreen.stop_standby(deployer)
            finally:
                lock.release()
        if as_json:
            echo_json({**colors, "stopped": stopped})
        elif stopped:
            click.echo(f"stopped the {stopped} standby of {environment}")
        elif colors["standby"]:
            s = colors["standby"]
            how = "draining (left by an instant rollback)" if s.get("draining") else "warm"
            click.echo(f"{environment}: {s['color']} ({s['release']}) is {how}")
        else:
            click.echo(f"{environment}: no warm standby")
