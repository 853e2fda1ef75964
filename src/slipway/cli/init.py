"""``slipway init``: write a starter configuration (and, with --github, the workflows)."""

from __future__ import annotations

from pathlib import Path

import click

from slipway.cli.context import SafePath
from slipway.config import load_config
from slipway.config.starter import write_starter
from slipway.github import workflows


@click.command(name="init")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@click.option(
    "--github",
    is_flag=True,
    help="Write the GitHub Actions workflows (CI, staging, production) instead.",
)
@click.option(
    "--slipway-spec",
    default=None,
    help="What the workflows pip-install (default: slipway==<this version>; e.g. a"
    " git+https URL of your fork).",
)
@click.option(
    "--dir",
    "directory",
    type=SafePath(file_okay=False, exists=True),
    default=".",
    help="Repository root (default: current directory).",
)
def command(force: bool, github: bool, slipway_spec: str | None, directory: str) -> None:
    """Write a slipway.toml that fits the app in this repository.

    Reads the repository without running it: the FastAPI app object and its routes
    (health route and what it returns, WebSocket routes), the SQLite path and the
    variable that sets it, the Python dependency source (uv.lock, poetry.lock,
    requirements, pyproject), the frontend's package manager (npm, pnpm, yarn) and the
    variables next.config reads at build time. Each inferred value says where it came
    from; what could not be inferred is a TODO(slipway) comment that `slipway check`
    lists. Then: `slipway check --deep`, `slipway try`, and edit hosts and root.

    With --github, write .github/workflows/ci-tests.yml, deploy-staging.yml and
    deploy-production.yml from the repository's slipway.toml (written first if
    missing). Each workflow step is a slipway command; see the README for the secrets,
    the `production` environment's reviewers and branch protection to set on GitHub.
    """
    root = Path(directory)
    if github:
        config_path = root / "slipway.toml"
        if not config_path.exists():
            click.echo(f"wrote {write_starter(root, force=False)[0]}")
        config = load_config(config_path).config
        for path in workflows.write(config, root, force=force, slipway_spec=slipway_spec):
            click.echo(f"wrote {path}")
        return
    target, detected = write_starter(root, force=force)
    click.echo(f"wrote {target}")
    if detected.backend is not None:
        b = detected.backend
        click.echo(f"backend: {b.workdir}, {b.origin}; dependencies: {b.deps}")
        click.echo(f"  health check {b.health_path} ({b.health_origin})")
    if detected.frontend is not None:
        f = detected.frontend
        kind = "Next.js standalone" if f.standalone else "Next.js"
        click.echo(f"frontend: {f.workdir}, {kind}, installed with `{f.install}`")
    for todo in detected.todos:
        click.echo(f"todo: {todo}")
    click.echo("next: `slipway check --deep`, then `slipway try` to run it here")
