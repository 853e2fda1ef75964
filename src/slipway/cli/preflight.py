"""``slipway preflight ENV --ref vX.Y.Z``: refuse a production deploy before it starts."""

from __future__ import annotations

import getpass
import os

import click

from slipway.cli.context import echo_json, loaded_config
from slipway.cli.hosts import host_options, host_session, with_overrides
from slipway.errors import UsageError
from slipway.github import preflight
from slipway.github.api import GitHub


@click.command(name="preflight")
@click.argument("environment")
@click.option("--ref", required=True, help="The version tag to deploy (vX.Y.Z).")
@click.option("--actor", default=None, help="Who deploys (default: $GITHUB_ACTOR or you).")
@host_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def command(
    ctx: click.Context,
    environment: str,
    ref: str,
    actor: str | None,
    host: tuple[str, ...],
    root: str | None,
    ssh_key: str | None,
    as_json: bool,
) -> None:
    """Check that REF may be deployed to ENVIRONMENT; one line per check.

    \b
    tag       REF is a version tag vX.Y.Z in this clone
    main      its commit is on main (GitHub compare)
    ci        CI passed on it (check runs and commit statuses)
    newer     it is newer than the release live on the host
    actor     the actor is in the environment's `deployers` (if set)
    env file  the host's env file has every required key
    \b
    Needs GITHUB_REPOSITORY and GITHUB_TOKEN (set in Actions). Exit 0 when all
    pass, 1 when one fails, 2 bad usage.
    """
    loaded = with_overrides(loaded_config(ctx), environment, host, root, ssh_key)
    repo = loaded.repository_path()
    if repo is None:
        raise UsageError("preflight needs the repository as a local clone")
    gh = GitHub.from_env()
    who = actor or os.environ.get("GITHUB_ACTOR") or getpass.getuser()
    deployer = next(host_session(loaded, environment))
    findings = preflight.run(deployer, gh, repo, ref, who)
    if as_json:
        echo_json([f.__dict__ for f in findings])
    else:
        for finding in findings:
            click.echo(finding.line())
    if not all(f.ok for f in findings):
        raise click.exceptions.Exit(1)
