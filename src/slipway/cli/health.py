"""``slipway health ENV``: run an environment's health checks once, as a report."""

from __future__ import annotations

import click

from slipway.cli.context import echo_json, loaded_config
from slipway.cli.hosts import host_session
from slipway.config.model import COLORS, HealthLevel
from slipway.errors import UsageError
from slipway.health.gate import run_round


@click.command(name="health")
@click.argument("environment")
@click.option(
    "--level",
    type=click.Choice([level.value for level in HealthLevel]),
    default=None,
    help="Checks to run (default: the environment's level).",
)
@click.option(
    "--color",
    type=click.Choice(COLORS),
    default=None,
    help="Blue-green: check this colour on its private ports, not the public ones.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def command(
    ctx: click.Context, environment: str, level: str | None, color: str | None, as_json: bool
) -> None:
    """Run ENVIRONMENT's checks once, in parallel, and report each with its latency.

    \b
    basic          the HTTP checks of [[health.basic]]
    comprehensive  [[health.comprehensive]], the WebSocket check, the process
                   manager (online, no restart loop), free disk space and, if
                   configured, a read-only query of the SQLite file
    \b
    Exit codes: 0 every check passed, 1 a check failed, 2 bad usage or
    configuration. Suitable for cron or a systemd timer. Over SSH the checks go
    through the connection's port forwarding.
    """
    loaded = loaded_config(ctx)
    report = []
    healthy = True
    for deployer in host_session(loaded, environment):
        if color and not deployer.blue_green:
            raise UsageError(
                f"--color needs a blue-green environment; {environment!r} uses"
                f" strategy {deployer.env.strategy.value!r}"
            )
        chosen = HealthLevel(level) if level else deployer.env.health
        results = run_round(deployer.checks(chosen, color))
        healthy = healthy and all(r.ok for r in results)
        report.append(
            {
                "host": deployer.transport.name,
                "level": chosen.value,
                "color": color,
                "ok": all(r.ok for r in results),
                "checks": [r.__dict__ for r in results],
            }
        )
        if not as_json:
            for r in results:
                mark = "ok  " if r.ok else "FAIL"
                click.echo(f"{mark} {r.name:<12} {r.latency_ms:7.1f} ms  {r.error or ''}".rstrip())
    if as_json:
        echo_json(report)
    if not healthy:
        raise click.exceptions.Exit(1)
