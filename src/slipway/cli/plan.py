"""``slipway plan ENV``: the steps a deploy would run, without running anything."""

from __future__ import annotations

import click

from slipway.cli.context import loaded_config
from slipway.config.model import Strategy
from slipway.config.summary import checks_for

STEPS = [
    ("lock", "take {env}'s lock on each host ({hosts})"),
    ("upload", "git archive of {ref} -> {root}/{env}/releases/<release>/"),
    ("link", "link {env_file} (mode 0600, must hold: {required}); database dir for {database}"),
    ("install", "backend: uv venv + lock file; frontend: npm ci (reused if the lock is unchanged)"),
    ("build", "frontend build for ports {backend}/{frontend} (reused if sources unchanged)"),
    ("backup", "online SQLite backup of {database} to {root}/{env}/backups/"),
    ("start", "PM2: stop {apps}; check ports free; start the new release"),
    ("health", "{passes} passes in a row within {deadline}s: {checks}"),
    ("promote", "point {root}/{env}/current at the release; pm2 save; prune to {keep}"),
]

BLUE_GREEN_STEPS = [
    *STEPS[:4],
    ("build", "frontend build for the new colour's backend (reused if built before)"),
    STEPS[5],
    ("start", "PM2: start the release on the colour that is not live ({colors})"),
    ("health", "{passes} passes in a row within {deadline}s, on the new colour: {checks}"),
    ("switch", "{router} on ports {backend}/{frontend} -> new colour; confirm via API + header"),
    ("watch", "checks through the public ports for {watch}s; failure switches back"),
    ("promote", "point current at the release; old colour warm for {standby}s, then drained"),
]

HOLD_STEP = {
    True: (
        "hold",
        "breaking migrations: {router} -> a holding proxy; the live colour drains and stops;"
        " requests wait (deadline {hold}s) and go to the new colour after the switch",
    ),
    False: ("hold", "breaking migrations: stop {apps} before the backup (nothing writes after it)"),
}


@click.command(name="plan")
@click.argument("environment")
@click.option("--ref", default="HEAD", show_default=True)
@click.option("--breaking", is_flag=True, help="Plan REF as a release with breaking migrations.")
@click.pass_context
def command(ctx: click.Context, environment: str, ref: str, breaking: bool) -> None:
    """Print the steps `slipway deploy ENVIRONMENT` would take. Runs nothing.

    A REF listed in [migrations] breaking (by name or glob) or --breaking adds the hold
    step before the backup."""
    config = loaded_config(ctx).config
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
    steps = STEPS
    if env.strategy is Strategy.BLUE_GREEN:
        bg = env.blue_green
        colors = bg.color_ports(env.ports)
        values |= {
            "colors": ", ".join(f"{c} {p.backend}/{p.frontend}" for c, p in colors.items()),
            "router": bg.router.value,
            "watch": f"{bg.watch_seconds:g}",
            "standby": f"{bg.standby_seconds:g}",
        }
        steps = BLUE_GREEN_STEPS
    if breaking or config.migrations.is_breaking(ref, ""):
        values["hold"] = f"{config.migrations.hold_seconds:g}"
        at = [name for name, _ in steps].index("backup")
        steps = [*steps[:at], HOLD_STEP[steps is BLUE_GREEN_STEPS], *steps[at:]]
    for number, (name, text) in enumerate(steps, 1):
        click.echo(f"{number}. {name:<8} {text.format(**values)}")
    if env.strategy is Strategy.BLUE_GREEN:
        click.echo(
            "on failure: before the switch traffic never moved (the new colour is stopped);"
            " after it, traffic switches back to the old colour, still running; the"
            " database is restored only if its schema changed"
        )
    else:
        click.echo(
            "on failure: stop the new processes, restore the database if its schema"
            " changed, start the previous release, gate it on health"
        )
