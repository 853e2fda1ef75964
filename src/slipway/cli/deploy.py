"""``slipway deploy ENV [--ref REF]``: build, swap, gate on health, roll back on failure."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from slipway.cli.context import (
    LOCK_WAIT,
    SafePath,
    echo_json_line,
    loaded_config,
    refuse_collisions,
)
from slipway.cli.hosts import (
    fleet_session,
    host_options,
    host_session,
    with_overrides,
    with_strategy,
)
from slipway.cli.output import Progress
from slipway.config import LoadedConfig
from slipway.deploy.engine import Deployer
from slipway.deploy.fleet import FleetDeploy, FleetOutcome
from slipway.deploy.run import Outcome
from slipway.errors import DeployFailed
from slipway.github.api import GitHub

TABLE_NAME = re.compile(r"[^\x00-\x1f\x7f,]{1,128}")  # any SQLite name but a comma


@click.command(name="deploy")
@click.argument("environment")
@click.option("--ref", default="HEAD", show_default=True, help="Git ref to deploy.")
@click.option(
    "--lock-wait", type=LOCK_WAIT, default=0, help="Seconds to wait for the lock (0-86400)."
)
@click.option("--actor", default=None, help="Who deploys (default: your user name).")
@host_options
@click.option(
    "--github-deployment",
    is_flag=True,
    help="Report a GitHub deployment and its status (needs GITHUB_REPOSITORY, GITHUB_TOKEN).",
)
@click.option(
    "--incident-dir",
    type=SafePath(file_okay=False, path_type=Path),
    default=None,
    help="On failure, copy the incident report here (CI attaches it to the run).",
)
@click.option(
    "--breaking",
    is_flag=True,
    help="This release's migrations are breaking (as if listed in [migrations] breaking):"
    " hold requests at the proxy from the backup until it is live.",
)
@click.option(
    "--no-rehearsal",
    is_flag=True,
    help="Skip the migration rehearsal (the release's migrations on a copy of the live"
    " database): the release is not classified, and only --breaking takes the hold.",
)
@click.option(
    "--allow-data-loss",
    "allow_data_loss",
    metavar="TABLE[,TABLE]",
    default="",
    callback=lambda _ctx, _param, value: _table_list(value),
    help="Tables this release's migrations may empty or drop (the rehearsal refuses the"
    " deploy otherwise). Audited, notified and written up as an incident.",
)
@click.option(
    "--strategy",
    type=click.Choice(["restart", "blue-green", "canary"]),
    default=None,
    help="Deploy this release with another strategy than the environment's (canary:"
    " a rising, judged share of traffic; see [environments.ENV.canary]).",
)
@click.option("--json", "as_json", is_flag=True, help="Emit JSON events and a JSON result.")
@click.pass_context
def command(
    ctx: click.Context,
    environment: str,
    ref: str,
    lock_wait: float,
    actor: str | None,
    host: tuple[str, ...],
    root: str | None,
    ssh_key: str | None,
    github_deployment: bool,
    incident_dir: Path | None,
    breaking: bool,
    no_rehearsal: bool,
    allow_data_loss: tuple[str, ...],
    strategy: str | None,
    as_json: bool,
) -> None:
    """Deploy REF to ENVIRONMENT on each of its hosts.

    Steps: lock, upload, link, install, build, rehearse, backup, start, health, promote
    (blue-green: start, health, switch, watch, promote; canary: start, health, canary,
    watch, promote, the canary step moving a rising share of traffic and judging it
    from the router's access log). The rehearsal runs the
    release's migrations on a copy of the live database and classifies them: unchanged,
    additive, breaking or destructive. Destructive (a table loses rows) is refused
    unless allowed with --allow-data-loss; breaking adds a hold step before the backup:
    requests wait at a holding proxy (blue-green) or the old processes stop (restart)
    until the new release is live, so no write lands after the backup. A failure at
    any step rolls back automatically and exits 1; a held lock exits 3.

    \b
    Examples:
      slipway deploy staging main
      slipway deploy production v1.4.0 --allow-data-loss sessions
    """
    loaded = with_overrides(loaded_config(ctx), environment, host, root, ssh_key)
    loaded = with_strategy(loaded, environment, strategy)
    refuse_collisions(loaded, environment)
    progress = Progress(as_json=as_json, color=not ctx.obj["no_color"])
    gh = GitHub.from_env() if github_deployment else None
    options: dict[str, Any] = {
        "lock_wait": lock_wait,
        "breaking": breaking or None,
        "rehearse": False if no_rehearsal else None,
        "allow_data_loss": allow_data_loss,
    }
    if len(loaded.config.environment(environment).hosts) > 1:
        _deploy_fleet(loaded, environment, ref, actor, progress, gh, incident_dir, options)
        return
    for deployer in host_session(loaded, environment, emit=progress, actor=actor):
        outcome = _reported(
            gh,
            ref,
            deployer,
            functools.partial(deployer.deploy, ref, **options),
            [deployer],
            incident_dir,
        )
        if as_json:
            echo_json_line({"event": "result", **_host_result(outcome)})
        else:
            click.echo(
                f"deployed {outcome.commit[:10]} as {outcome.release} to {environment}"
                f" in {outcome.seconds:.1f}s ({outcome.health})"
            )
            if outcome.hold:
                click.echo(f"hold: {outcome.hold}")


def _deploy_fleet(
    loaded: LoadedConfig,
    environment: str,
    ref: str,
    actor: str | None,
    progress: Progress,
    gh: GitHub | None,
    incident_dir: Path | None,
    options: dict[str, Any],
) -> None:
    """Every host at once, all or nothing (see :mod:`slipway.deploy.fleet`)."""
    settings = loaded.config.environment(environment).fleet
    with fleet_session(loaded, environment, emit=progress, actor=actor) as members:
        fleet = FleetDeploy(members, parallel=settings.parallel, batch_size=settings.batch_size)
        hosts = [d for _, d in members]
        outcome = _reported(
            gh, ref, hosts[0], functools.partial(fleet.deploy, ref, **options), hosts, incident_dir
        )
    if progress.as_json:
        echo_json_line(
            {
                "event": "result",
                "status": outcome.status,
                "release": outcome.release,
                "commit": outcome.commit,
                "seconds": round(outcome.seconds, 3),
                "waves": outcome.waves,
                "hosts": [{"host": name, **_host_result(o)} for name, o in outcome.hosts],
            }
        )
        return
    click.echo(
        f"deployed {outcome.commit[:10]} as {outcome.release} to {environment}"
        f" ({len(outcome.hosts)} hosts, {outcome.waves} waves) in {outcome.seconds:.1f}s"
    )
    for name, host_outcome in outcome.hosts:
        click.echo(f"  {name}: {host_outcome.health}")


def _host_result(outcome: Outcome) -> dict[str, Any]:
    return {
        "status": outcome.status,
        "release": outcome.release,
        "commit": outcome.commit,
        "seconds": round(outcome.seconds, 3),
        "steps": outcome.steps,
        "health": outcome.health,
        "hold": outcome.hold,
        "rehearsal": outcome.rehearsal,
    }


def _table_list(value: str) -> tuple[str, ...]:
    """``a,b`` -> ("a", "b"); a name with spaces or control characters is refused."""
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    for name in names:
        if not TABLE_NAME.fullmatch(name):
            raise click.BadParameter(
                f"{name!r} is not a table name", param_hint="--allow-data-loss"
            )
    return names


def _run_url() -> str | None:
    keys = ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    if not all(os.environ.get(k) for k in keys):
        return None
    server, repo, run = (os.environ[k] for k in keys)
    return f"{server}/{repo}/actions/runs/{run}"


R = TypeVar("R", Outcome, FleetOutcome)


def _reported(
    gh: GitHub | None,
    ref: str,
    first: Deployer,
    run: Callable[[], R],
    hosts: list[Deployer],
    incident_dir: Path | None,
) -> R:
    """One deploy (of a host or a fleet), reported to GitHub as one deployment and with
    each host's incident report kept, if asked."""
    deployment_id = None
    if gh is not None:
        created = gh.create_deployment(
            ref, first.env_name, f"slipway deploy {ref} by {first.actor}"
        )
        deployment_id = int(created["id"])
        gh.create_deployment_status(deployment_id, "in_progress", "deploying", _run_url())
    try:
        outcome = run()
    except DeployFailed as exc:
        if gh is not None and deployment_id is not None:
            summary = (
                f"failed at {exc.step}; {'rolled back' if exc.rolled_back else 'NOT rolled back'}"
            )
            gh.create_deployment_status(deployment_id, "failure", summary, _run_url())
        if incident_dir is not None:
            _keep_incidents(hosts, incident_dir)
        raise
    if gh is not None and deployment_id is not None:
        gh.create_deployment_status(deployment_id, "success", f"{outcome.release} live", _run_url())
    return outcome


def _keep_incidents(hosts: list[Deployer], incident_dir: Path) -> None:
    """Each host's incident report, named after its host in a fleet."""
    for d in hosts:
        if d.last_incident is None:
            continue
        incident_dir.mkdir(parents=True, exist_ok=True)
        name = d.last_incident[0].rsplit("/", 1)[-1]
        if len(hosts) > 1:
            name = f"{_safe(str(getattr(d.transport, 'host', 'local')))}-{name}"
        target = incident_dir / name
        target.write_text(d.last_incident[1], encoding="utf-8")
        target.chmod(0o600)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)
