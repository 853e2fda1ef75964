"""``slipway plan ENV``: the steps a deploy would run, without running anything."""

from __future__ import annotations

import click

from slipway.cli.context import loaded_config
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


@click.command(name="plan")
@click.argument("environment")
@click.option("--ref", default="HEAD", show_default=True)
@click.pass_context
def command(ctx: click.Context, environment: str, ref: str) -> None:
    """Print the steps `slipway deploy ENVIRONMENT` would take. Runs nothing."""
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
    for number, (name, text) in enumerate(STEPS, 1):
        click.echo(f"{number}. {name:<8} {text.format(**values)}")
    click.echo(
        "on failure: stop the new processes, restore the database if its schema"
        " changed, start the previous release, gate it on health"
    )
