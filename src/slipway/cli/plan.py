"""``slipway plan ENV``: the steps a deploy would run, without running anything."""

from __future__ import annotations

import click

from slipway.cli.context import echo_json, loaded_config
from slipway.cli.hosts import host_session, with_strategy
from slipway.cli.output import Progress
from slipway.config import LoadedConfig
from slipway.config.deep import install_plan
from slipway.config.summary import checks_for
from slipway.deploy import strategies
from slipway.deploy.source import resolve
from slipway.errors import SlipwayError

# The strategy-neutral steps; the strategy adds the rest (and the hold, when asked).
STEPS = [
    ("lock", "take {env}'s lock on each host ({hosts}); finish any interrupted deploy first"),
    ("upload", "git archive of {ref} -> {root}/{env}/releases/<release>/"),
    ("link", "link {env_file} (mode 0600, must hold: {required}); database dir for {database}"),
    ("install", "{install}"),
    ("build", "frontend build (reused if sources unchanged); the release's run spec saved"),
    (
        "rehearse",
        "the release's backend migrates a copy of {database} on a free port; the change is"
        " classified: destructive is refused, breaking adds the hold",
    ),
    ("backup", "online SQLite backup of {database} to {root}/{env}/backups/"),
]


@click.command(name="plan")
@click.argument("environment")
@click.option("--ref", default="HEAD", show_default=True)
@click.option("--breaking", is_flag=True, help="Plan REF as a release with breaking migrations.")
@click.option(
    "--rehearse",
    is_flag=True,
    help="Also run REF's migrations on a copy of the live database on each host and print"
    " their class (uploads and installs REF in a scratch release; changes nothing live).",
)
@click.option(
    "--strategy",
    type=click.Choice(["restart", "blue-green", "canary"]),
    default=None,
    help="Plan the deploy as `deploy --strategy` would run it.",
)
@click.option("--json", "as_json", is_flag=True, help="With --rehearse: print the classes as JSON.")
@click.pass_context
def command(
    ctx: click.Context,
    environment: str,
    ref: str,
    breaking: bool,
    rehearse: bool,
    strategy: str | None,
    as_json: bool,
) -> None:
    """Print the steps `slipway deploy ENVIRONMENT` would take. Runs nothing, unless
    --rehearse.

    A REF listed in [migrations] breaking (by name or glob) or --breaking adds the hold
    step before the backup; so does a release the rehearsal finds breaking.

    With --rehearse, exit 1 when the deploy would be refused (its migrations lose rows).

    \b
    Examples:
      slipway plan production --ref v1.4.0
      slipway plan production --ref v1.4.0 --rehearse"""
    loaded = with_strategy(loaded_config(ctx), environment, strategy)
    config = loaded.config
    env = config.environment(environment)
    values = {
        "env": environment,
        "ref": ref,
        "root": env.root,
        "hosts": ", ".join(env.hosts),
        "env_file": env.env_file or "(no env file)",
        "required": ", ".join(env.required_env) or "-",
        "database": env.database,
        "backend": env.ports.backend,
        "frontend": env.ports.frontend,
        "apps": ", ".join(f"{config.project.name}-{environment}-{p}" for p in config.processes),
        "passes": config.health.passes,
        "deadline": config.health.deadline_seconds,
        "checks": ", ".join(checks_for(config, env.health)) or "none",
        "keep": env.keep_releases,
    }
    values["install"] = _install(loaded, ref)
    chosen = strategies.for_env(env)
    values |= chosen.plan_values(env)
    steps = [*STEPS, *chosen.plan(env)]
    if not config.migrations.rehearse:
        steps = [s for s in steps if s[0] != "rehearse"]
    if breaking or config.migrations.is_breaking(ref, ""):
        values["hold"] = f"{config.migrations.hold_seconds:g}"
        steps.insert([s[0] for s in steps].index("backup"), ("hold", chosen.hold_text()))
    if not as_json:
        for number, (name, text) in enumerate(steps, 1):
            click.echo(f"{number}. {name:<8} {text.format(**values)}")
        click.echo(chosen.on_failure())
    if rehearse and _rehearse(ctx, environment, ref, as_json):
        ctx.exit(1)


def _install(loaded: LoadedConfig, ref: str) -> str:
    """What the install step would do, read from the repository at ``ref``."""
    repo = loaded.repository_path()
    try:
        source = resolve(repo, ref) if repo is not None else None
    except SlipwayError:
        source = None
    if source is None:
        return "each process's dependencies, as its lock file at REF says"
    return install_plan(loaded.config, source)


def _rehearse(ctx: click.Context, environment: str, ref: str, as_json: bool) -> bool:
    """Rehearse REF on each host; True when a deploy would be refused."""
    refused = False
    progress = Progress(as_json=False, color=not ctx.obj["no_color"]) if not as_json else None
    for d in host_session(loaded_config(ctx), environment, emit=progress):
        found = d.rehearse_only(ref)
        host = d.transport.name
        refused = refused or bool(found and found.classification.lost())
        if as_json:
            echo_json({"host": host, "rehearsal": found.to_json() if found else None})
        elif found is None:
            click.echo(f"rehearsal on {host}: nothing to rehearse (no database yet)")
        else:
            click.echo(f"rehearsal on {host}: migrations {found.summary()}")
            if found.classification.lost():
                click.echo("  a deploy would be refused: add --allow-data-loss TABLE to accept")
            elif found.holds:
                click.echo("  a deploy adds the hold step before the backup (breaking)")
    return refused
