"""``slipway init``: write a starter configuration (and, with --github, the workflows)."""

from __future__ import annotations

from pathlib import Path

import click

from slipway.config import load_config
from slipway.config.starter import detect_project, write_starter
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
    type=click.Path(file_okay=False, exists=True),
    default=".",
    help="Repository root (default: current directory).",
)
def command(force: bool, github: bool, slipway_spec: str | None, directory: str) -> None:
    """Write a commented slipway.toml for a CodeFRAME-shaped repository.

    Detects the project name and backend module from pyproject.toml and the Next.js
    frontend from web-ui/package.json. Edit hosts and root, then run `slipway check`.

    With --github, write .github/workflows/ci-tests.yml, deploy-staging.yml and
    deploy-production.yml from the repository's slipway.toml (written first if
    missing). Each workflow step is a slipway command; see the README for the secrets,
    the `production` environment's reviewers and branch protection to set on GitHub.
    """
    root = Path(directory)
    if github:
        config_path = root / "slipway.toml"
        if not config_path.exists():
            click.echo(f"wrote {write_starter(root, force=False)}")
        config = load_config(config_path).config
        for path in workflows.write(config, root, force=force, slipway_spec=slipway_spec):
            click.echo(f"wrote {path}")
        return
    target = write_starter(root, force=force)
    click.echo(f"wrote {target}")
    if not detect_project(root).has_frontend:
        click.echo("note: no web-ui/package.json found: remove [processes.frontend] if unused")
    click.echo("next: edit hosts and root, then run `slipway check`")
