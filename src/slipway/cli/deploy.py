"""``slipway deploy ENV [--ref REF]``: build, swap, gate on health, roll back on failure."""

from __future__ import annotations

import click

from slipway.cli.context import echo_json_line, loaded_config
from slipway.cli.hosts import host_session
from slipway.cli.output import Progress


@click.command(name="deploy")
@click.argument("environment")
@click.option("--ref", default="HEAD", show_default=True, help="Git ref to deploy.")
@click.option("--lock-wait", type=float, default=0, help="Seconds to wait for the lock.")
@click.option("--actor", default=None, help="Who deploys (default: your user name).")
@click.option("--json", "as_json", is_flag=True, help="Emit JSON events and a JSON result.")
@click.pass_context
def command(
    ctx: click.Context,
    environment: str,
    ref: str,
    lock_wait: float,
    actor: str | None,
    as_json: bool,
) -> None:
    """Deploy REF to ENVIRONMENT on each of its hosts.

    Steps: lock, upload, link, install, build, backup, start, health, promote. A failure
    at any step rolls back automatically and exits 1; a held lock exits 3.
    """
    loaded = loaded_config(ctx)
    progress = Progress(as_json=as_json, color=not ctx.obj["no_color"])
    for deployer in host_session(loaded, environment, emit=progress, actor=actor):
        outcome = deployer.deploy(ref, lock_wait=lock_wait)
        if as_json:
            echo_json_line(
                {
                    "event": "result",
                    "status": outcome.status,
                    "release": outcome.release,
                    "commit": outcome.commit,
                    "seconds": round(outcome.seconds, 3),
                    "steps": outcome.steps,
                    "health": outcome.health,
                }
            )
        else:
            click.echo(
                f"deployed {outcome.commit[:10]} as {outcome.release} to {environment}"
                f" in {outcome.seconds:.1f}s ({outcome.health})"
            )
