"""``slipway check [ENV]``: validate the configuration and show what goes where."""

from __future__ import annotations

import click

from slipway.cli.context import echo_json, loaded_config, refuse_collisions
from slipway.config.summary import summary_data, summary_text


@click.command(name="check")
@click.argument("environment", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def command(ctx: click.Context, environment: str | None, as_json: bool) -> None:
    """Validate the configuration and summarise ENVIRONMENT (default: all).

    Every problem is reported at once with its location, e.g.
    `environments.production.ports.backend: must be an integer from 1 to 65535`, then
    environments on one host that share a port or a database file (a deploy checks the
    same with the hosts it is given). Exit code 0 when valid, 2 when not.
    """
    loaded = loaded_config(ctx)
    if environment is not None:
        loaded.config.environment(environment)  # unknown name -> UsageError with the list
    refuse_collisions(loaded, environment)
    if as_json:
        echo_json(summary_data(loaded, environment))
    else:
        click.echo(summary_text(loaded, environment), nl=False)
