"""``slipway deploy ENV [--ref REF]``: build, swap, gate on health, roll back on failure."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click

from slipway.cli.context import LOCK_WAIT, echo_json_line, loaded_config, refuse_collisions
from slipway.cli.hosts import host_options, host_session, with_overrides
from slipway.cli.output import Progress
from slipway.deploy.engine import Deployer
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
    type=click.Path(file_okay=False, path_type=Path),
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
    as_json: bool,
) -> None:
    """Deploy REF to ENVIRONMENT on each of its hosts.

    Steps: lock, upload, link, install, build, rehearse, backup, start, health, promote
    (blue-green: start, health, switch, watch, promote). The rehearsal runs the
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
    refuse_collisions(loaded, environment)
    progress = Progress(as_json=as_json, color=not ctx.obj["no_color"])
    gh = GitHub.from_env() if github_deployment else None
    for deployer in host_session(loaded, environment, emit=progress, actor=actor):
        options: dict[str, Any] = {
            "breaking": breaking or None,
            "rehearse": False if no_rehearsal else None,
            "allow_data_loss": allow_data_loss,
        }
        outcome = _deploy(deployer, ref, lock_wait, gh, incident_dir, options)
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
                    "hold": outcome.hold,
                    "rehearsal": outcome.rehearsal,
                }
            )
        else:
            click.echo(
                f"deployed {outcome.commit[:10]} as {outcome.release} to {environment}"
                f" in {outcome.seconds:.1f}s ({outcome.health})"
            )
            if outcome.hold:
                click.echo(f"hold: {outcome.hold}")


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


def _deploy(
    d: Deployer,
    ref: str,
    lock_wait: float,
    gh: GitHub | None,
    incident_dir: Path | None,
    options: dict[str, Any],
) -> Outcome:
    """One host's deploy, reported to GitHub and with its incident kept, if asked."""
    deployment_id = None
    if gh is not None:
        created = gh.create_deployment(ref, d.env_name, f"slipway deploy {ref} by {d.actor}")
        deployment_id = int(created["id"])
        gh.create_deployment_status(deployment_id, "in_progress", "deploying", _run_url())
    try:
        outcome = d.deploy(ref, lock_wait=lock_wait, **options)
    except DeployFailed as exc:
        if gh is not None and deployment_id is not None:
            summary = (
                f"failed at {exc.step}; {'rolled back' if exc.rolled_back else 'NOT rolled back'}"
            )
            gh.create_deployment_status(deployment_id, "failure", summary, _run_url())
        if incident_dir is not None and d.last_incident is not None:
            incident_dir.mkdir(parents=True, exist_ok=True)
            name = d.last_incident[0].rsplit("/", 1)[-1]
            target = incident_dir / name
            target.write_text(d.last_incident[1], encoding="utf-8")
            target.chmod(0o600)
        raise
    if gh is not None and deployment_id is not None:
        gh.create_deployment_status(deployment_id, "success", f"{outcome.release} live", _run_url())
    return outcome
