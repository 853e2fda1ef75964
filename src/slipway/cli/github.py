"""``slipway github ...``: report to GitHub (the PR comment, the coverage status)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from slipway.errors import UsageError
from slipway.gates import Report
from slipway.github import report as reports
from slipway.github.api import GitHub


def _load(path: str) -> Report:
    try:
        return Report.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"{path}: not a gates result (slipway gates --output): {exc}") from exc


@click.group(name="github")
def command() -> None:
    """Reports on GitHub; needs GITHUB_REPOSITORY and GITHUB_TOKEN (set in Actions)."""


@command.command(name="pr-comment")
@click.option("--pr", "pr", type=int, required=True, help="Pull request number.")
@click.option("--gates", "gates_file", required=True, help="JSON from slipway gates --output.")
@click.option("--base-sha", default=None, help="The PR base's commit, to compare coverage.")
def pr_comment(pr: int, gates_file: str, base_sha: str | None) -> None:
    """Create the PR's results comment, or update it (one comment per PR, not one per push)."""
    action, comment_id = reports.upsert_comment(GitHub.from_env(), pr, _load(gates_file), base_sha)
    click.echo(f"{action} comment {comment_id} on #{pr}")


@command.command(name="coverage-status")
@click.option("--gates", "gates_file", required=True, help="JSON from slipway gates --output.")
@click.option("--sha", default=None, help="Commit (default: $GITHUB_SHA).")
def coverage_status(gates_file: str, sha: str | None) -> None:
    """Publish the coverage of a commit as a status, for PRs to compare against."""
    commit = sha or os.environ.get("GITHUB_SHA")
    if not commit:
        raise UsageError("give --sha (or set GITHUB_SHA)")
    reports.publish_coverage(GitHub.from_env(), commit, _load(gates_file))
    click.echo(f"published coverage for {commit[:12]}")
