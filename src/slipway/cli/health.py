"""``slipway health ENV``: run an environment's health checks once, as a report."""

from __future__ import annotations

import click

from slipway.cli.context import echo_json, loaded_config
from slipway.cli.hosts import host_session
from slipway.config.model import HealthLevel
from slipway.health.gate import run_round


@click.command(name="health")
@click.argument("environment")
@click.option(
    "--level",
    type=click.Choice([level.value for level in HealthLevel]),
    default=None,
    help="Checks to run (default: the environment's level).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def command(ctx: click.Context, environment: str, level: str | None, as_json: bool) -> None:
    """Run ENVIRONMENT's checks once, in parallel, and report each with its latency.

    Exit code 0 when every check passed, 1 when any failed: suitable for cron or a
    systemd timer. Over SSH the checks go through the connection's port forwarding.
    """
    loaded = loaded_config(ctx)
    report = []
    healthy = True
    for deployer in host_session(loaded, environment):
        chosen = HealthLevel(level) if level else deployer.env.health
        results = run_round(deployer.checks(chosen))
        healthy = healthy and all(r.ok for r in results)
        report.append(
            {
                "host": deployer.transport.name,
                "level": chosen.value,
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
