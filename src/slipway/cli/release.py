"""``slipway release create vX.Y.Z``: a GitHub Release with notes from the commits."""

from __future__ import annotations

import click

from slipway.cli.context import echo_json, loaded_config
from slipway.errors import UsageError
from slipway.github import release
from slipway.github.api import GitHub


@click.group(name="release")
def command() -> None:
    """GitHub Releases for version tags."""


@command.command(name="create")
@click.argument("tag")
@click.option("--dry-run", is_flag=True, help="Print the notes; create nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the created release as JSON.")
@click.pass_context
def create(ctx: click.Context, tag: str, dry_run: bool, as_json: bool) -> None:
    """Create the GitHub Release of TAG; its notes list the commits since the previous
    version tag. Needs GITHUB_REPOSITORY and GITHUB_TOKEN."""
    loaded = loaded_config(ctx)
    repo = loaded.repository_path()
    if repo is None:
        raise UsageError("release needs the repository as a local clone")
    if dry_run:
        click.echo(release.notes(repo, tag), nl=False)
        return
    created = release.create(GitHub.from_env(), repo, tag)
    if as_json:
        echo_json(created)
    else:
        click.echo(f"created release {tag}: {created.get('html_url', '')}".rstrip(": "))
