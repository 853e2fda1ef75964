"""``slipway init``: write a starter configuration for the repository in the current dir."""

from __future__ import annotations

from pathlib import Path

import click

from slipway.config.starter import detect_project, write_starter


@click.command(name="init")
@click.option("--force", is_flag=True, help="Overwrite an existing slipway.toml.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, exists=True),
    default=".",
    help="Repository root (default: current directory).",
)
def command(force: bool, directory: str) -> None:
    """Write a commented slipway.toml for a CodeFRAME-shaped repository.

    Detects the project name and backend module from pyproject.toml and the Next.js
    frontend from web-ui/package.json. Edit hosts and root, then run `slipway check`.
    """
    root = Path(directory)
    target = write_starter(root, force=force)
    click.echo(f"wrote {target}")
    if not detect_project(root).has_frontend:
        click.echo("note: no web-ui/package.json found: remove [processes.frontend] if unused")
    click.echo("next: edit hosts and root, then run `slipway check`")
