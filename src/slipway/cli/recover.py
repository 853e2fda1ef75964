"""``slipway recover ENV``: finish a deploy or rollback that stopped half way."""

from __future__ import annotations

from collections.abc import Iterator

import click

from slipway.cli.context import LOCK_WAIT, echo_json_line, loaded_config
from slipway.cli.hosts import fleet_session, host_session
from slipway.cli.output import Progress
from slipway.config import LoadedConfig
from slipway.deploy.engine import Deployer
from slipway.deploy.fleet import FleetDeploy


@click.command(name="recover")
@click.argument("environment")
@click.option(
    "--lock-wait", type=LOCK_WAIT, default=0, help="Seconds to wait for the lock (0-86400)."
)
@click.option("--json", "as_json", is_flag=True, help="Emit JSON events and a JSON result.")
@click.pass_context
def command(ctx: click.Context, environment: str, lock_wait: float, as_json: bool) -> None:
    """Complete a deploy or rollback of ENVIRONMENT that stopped without finishing.

    A deploy journals each change to live state on the host before making it. When the
    deployer is killed, loses its connection, or its lock is released by force, the
    journal stays behind; `slipway status` shows it. This command takes the lock and
    brings the environment back to a serving state: traffic back on the colour that
    served, or the previous release started from its own run spec and gated (a
    release that had already been promoted is finished instead). The record becomes
    `interrupted`, an incident report is written, and the recovery is audited and
    notified. It also stops a colour an instant rollback left draining when the job
    draining it died. Any deploy, rollback or restore does the same first, so this
    command is only needed to recover without deploying.

    Exits 0 when something healthy serves (or there was nothing to recover), 1 when
    the recovery could not bring a healthy release back, 3 when the lock is held.
    """
    loaded = loaded_config(ctx)
    progress = Progress(as_json=as_json, color=not ctx.obj["no_color"])
    failed = False
    for deployer in _recovered(loaded, environment, progress, lock_wait):
        done = deployer.recovered
        failed = failed or (done is not None and not done.serving)
        if as_json:
            echo_json_line(
                {
                    "event": "result",
                    "host": deployer.transport.name,
                    "recovered": done.__dict__ if done else None,
                }
            )
        elif done is None:
            click.echo(f"{environment} on {deployer.transport.name}: nothing to recover")
        else:
            state = "serving" if done.serving else "NOT SERVING"
            click.echo(
                f"{environment}: recovered the interrupted {done.kind} of {done.release}"
                f" (stopped in '{done.step}'): {state}; {done.note}"
            )
    if failed:
        ctx.exit(1)


def _recovered(
    loaded: LoadedConfig, environment: str, progress: Progress, lock_wait: float
) -> Iterator[Deployer]:
    """Each host after its recovery: one at a time, or a fleet's all at once (a fleet
    that had decided to commit rolls forward on every host, see slipway.deploy.fleet)."""
    env = loaded.config.environment(environment)
    if len(env.hosts) < 2:
        for deployer in host_session(loaded, environment, emit=progress):
            deployer.take_lock(ref="recover", reason="recover", wait=lock_wait).release()
            yield deployer
        return
    with fleet_session(loaded, environment, emit=progress) as members:
        fleet = FleetDeploy(members, parallel=env.fleet.parallel, batch_size=None)
        fleet.recover(lock_wait=lock_wait)
        yield from (d for _, d in members)
