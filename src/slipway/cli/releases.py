"""``slipway releases ENV``: the releases kept on each host, newest first."""

from __future__ import annotations

from typing import Any

import click

from slipway.cli.context import echo_json, loaded_config
from slipway.cli.hosts import host_session
from slipway.state import records


@click.command(name="releases")
@click.argument("environment")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def command(ctx: click.Context, environment: str, as_json: bool) -> None:
    """List ENVIRONMENT's releases on each host: id, commit, last outcome, which is live.

    Any release listed can be made live again with `slipway rollback ENV --to ID`.
    """
    loaded = loaded_config(ctx)
    report: list[dict[str, Any]] = []
    for deployer in host_session(loaded, environment):
        current = deployer.current_release()
        outcome: dict[str, str] = {}
        for row in reversed(records.deployments(deployer.transport, deployer.layout, 500)):
            outcome[row["release"]] = row["status"]
        for release in reversed(deployer.list_releases()):
            meta = deployer.release_meta(release)
            entry = {
                "host": deployer.transport.name,
                "release": release,
                "commit": meta.get("commit"),
                "ref": meta.get("ref"),
                "status": outcome.get(release, "unknown"),
                "current": release == current,
            }
            report.append(entry)
            if not as_json:
                mark = "*" if entry["current"] else " "
                click.echo(
                    f"{mark} {release}  {str(entry['commit'])[:10]}  {entry['ref']:<24}"
                    f" {entry['status']}"
                )
    if as_json:
        echo_json(report)
