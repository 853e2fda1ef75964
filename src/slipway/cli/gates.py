"""``slipway gates``: the app's quality gates, the same locally and in CI."""

from __future__ import annotations

import json
from pathlib import Path

import click

from slipway import gates
from slipway.cli.context import SafePath, loaded_config


@click.command(name="gates")
@click.option("--base", default=None, help="Base ref for new-code coverage (e.g. origin/main).")
@click.option(
    "--summary",
    type=SafePath(dir_okay=False),
    default=None,
    help="Append the Markdown summary here (in Actions: $GITHUB_STEP_SUMMARY).",
)
@click.option("--annotations", is_flag=True, help="Print GitHub ::error annotations.")
@click.option("--output", type=SafePath(dir_okay=False), default=None, help="Write JSON here.")
@click.pass_context
def command(
    ctx: click.Context, base: str | None, summary: str | None, annotations: bool, output: str | None
) -> None:
    """Run [gates.commands] (format, lint, types, tests), build each frontend, audit the
    locked dependencies ([gates.security]: pip-audit, npm audit), then judge coverage:
    overall, critical paths, and new code since --base.

    Exit 0 when every gate passed, 1 when one failed.
    """
    loaded = loaded_config(ctx)
    report = gates.run(loaded, base)
    text = gates.markdown(report)
    click.echo(text, nl=False)
    if summary:
        with Path(summary).open("a", encoding="utf-8") as f:
            f.write(text)
    if annotations:
        for line in gates.error_annotations(report):
            click.echo(line)
    if output:
        Path(output).write_text(json.dumps(report.as_dict(), indent=2), encoding="utf-8")
    if not report.ok:
        raise click.exceptions.Exit(1)
