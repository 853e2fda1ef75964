"""``slipway recover ENV``: finish a deploy or rollback that stopped half way."""

from __future__ import annotations

import click

from slipway.cli.context import LOCK_WAIT, echo_json_line, loaded_config
from slipway.cli.hosts import host_session
from slipway.cli.output import Progress


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
    for deployer in host_session(loaded, environment, emit=progress):
        lock = deployer.take_lock(ref="recover", reason="recover", wait=lock_wait)
        lock.release()
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
