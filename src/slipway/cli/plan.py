"""``slipway plan ENV``: the steps a deploy would run, without running anything."""

from __future__ import annotations

import click

from slipway.cli.context import loaded_config
from slipway.config.summary import checks_for
from slipway.deploy import strategies

# The strategy-neutral steps; the strategy adds the rest (and the hold, when asked).
STEPS = [
    ("lock", "take {env}'s lock on each host ({hosts}); finish any interrupted deploy first"),
    ("upload", "git archive of {ref} -> {root}/{env}/releases/<release>/"),
    ("link", "link {env_file} (mode 0600, must hold: {required}); database dir for {database}"),
    ("install", "backend: uv venv + lock file; frontend: npm ci (reused if the lock is unchanged)"),
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
@click.pass_context
def command(ctx: click.Context, environment: str, ref: str, breaking: bool) -> None:
    """Print the steps `slipway deploy ENVIRONMENT` would take. Runs nothing.

    A REF listed in [migrations] breaking (by name or glob) or --breaking adds the hold
    step before the backup; so does a release the rehearsal finds breaking."""
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
    strategy = strategies.for_env(env)
    values |= strategy.plan_values(env)
    steps = [*STEPS, *strategy.plan(env)]
    if not config.migrations.rehearse:
        steps = [s for s in steps if s[0] != "rehearse"]
    if breaking or config.migrations.is_breaking(ref, ""):
        values["hold"] = f"{config.migrations.hold_seconds:g}"
        steps.insert([s[0] for s in steps].index("backup"), ("hold", strategy.hold_text()))
    for number, (name, text) in enumerate(steps, 1):
        click.echo(f"{number}. {name:<8} {text.format(**values)}")
    click.echo(strategy.on_failure())
