"""``slipway check [ENV] [--deep [--ref REF]]``: validate the configuration, and with
--deep, against the repository at a ref."""

from __future__ import annotations

from typing import Any

import click

from slipway.cli.context import echo_json, loaded_config, refuse_collisions
from slipway.config import LoadedConfig
from slipway.config.deep import DeepReport, deep_report, todo_lines
from slipway.config.summary import summary_data, summary_text
from slipway.deploy.source import resolve
from slipway.errors import ConfigError, UsageError


@click.command(name="check")
@click.argument("environment", required=False)
@click.option(
    "--deep",
    is_flag=True,
    help="Also check the configuration against the repository at --ref: files it names"
    " exist, lock files match their manifests, health checks hit routes the app has,"
    " next.config's build-time variables are set.",
)
@click.option(
    "--ref", default="HEAD", show_default=True, help="The commit --deep reads (branch, tag, sha)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def command(
    ctx: click.Context, environment: str | None, deep: bool, ref: str, as_json: bool
) -> None:
    """Validate the configuration and summarise ENVIRONMENT (default: all).

    Every problem is reported at once with its location, e.g.
    `environments.production.ports.backend: must be an integer from 1 to 65535`, then
    environments on one host that share a port or a database file (a deploy checks the
    same with the hosts it is given). The TODO(slipway) markers `slipway init` left are
    listed. Exit code 0 when valid, 2 when not.

    \b
    Examples:
      slipway check production
      slipway check --deep              # against HEAD
      slipway check --deep --ref v1.4.0 --json
    """
    loaded = loaded_config(ctx)
    if environment is not None:
        loaded.config.environment(environment)  # unknown name -> UsageError with the list
    refuse_collisions(loaded, environment)
    report = _deep(loaded, ref) if deep else None
    todos = _todos(loaded)
    if as_json:
        data = summary_data(loaded, environment)
        data["todo"] = [{"line": n, "text": t} for n, t in todos]
        if report is not None:
            data["deep"] = _report_data(report, ref)
        echo_json(data)
    else:
        click.echo(summary_text(loaded, environment), nl=False)
        for number, text in todos:
            click.echo(f"todo: {loaded.path}:{number}: {text}")
        if report is not None:
            _print_report(report, ref)
    if report is not None and report.errors:
        if as_json:
            ctx.exit(2)
        raise ConfigError(f"{loaded.path} at {ref}", report.errors)


def _deep(loaded: LoadedConfig, ref: str) -> DeepReport:
    repo = loaded.repository_path()
    if repo is None:
        raise UsageError("--deep reads a local repository; the configured one is a URL")
    return deep_report(loaded.config, resolve(repo, ref))


def _todos(loaded: LoadedConfig) -> list[tuple[int, str]]:
    try:
        return todo_lines(loaded.path.read_text(encoding="utf-8"))
    except OSError:
        return []


def _report_data(report: DeepReport, ref: str) -> dict[str, Any]:
    return {
        "ref": ref,
        "errors": [{"location": i.location, "message": i.message} for i in report.errors],
        "warnings": [{"location": i.location, "message": i.message} for i in report.warnings],
    }


def _print_report(report: DeepReport, ref: str) -> None:
    for issue in report.warnings:
        click.echo(f"warning: {issue.render()}")
    if not report.errors:
        click.echo(f"deep check at {ref}: the configuration fits the repository")
