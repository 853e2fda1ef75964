"""Entry point: the root command group, global options and error handling.

Subcommands live one per module and are imported lazily (startup stays fast, and a
broken optional dependency only breaks the command that uses it).

Exit codes (also in ``slipway --help``):
  0  success
  1  the operation failed (a deploy failed and was rolled back, a check failed)
  2  bad usage or invalid configuration
  3  another deploy holds the environment's lock
  70  an internal error: a bug in slipway (--debug shows the traceback; please report it)
  130  interrupted
"""

from __future__ import annotations

import importlib
import sys
import traceback

import click

from slipway import __version__
from slipway.cli.context import SafePath
from slipway.errors import SlipwayError
from slipway.secrets import mask_everywhere

INTERNAL_ERROR = 70  # EX_SOFTWARE in sysexits.h

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, short help shown in `slipway --help`)
    "audit": ("slipway.cli.audit", "Show an environment's append-only audit log."),
    "backup": ("slipway.cli.backup", "Back up, list, verify, restore and prune the database."),
    "check": ("slipway.cli.check", "Validate the configuration and summarise each environment."),
    "dashboard": ("slipway.cli.dashboard", "Serve the read-only deployment dashboard."),
    "deploy": ("slipway.cli.deploy", "Deploy a git ref to an environment (rolls back on failure)."),
    "doctor": ("slipway.cli.doctor", "Check that an environment's hosts are ready for a deploy."),
    "setup": ("slipway.cli.setup", "Install what an environment's hosts lack, then check them."),
    "gates": ("slipway.cli.gates", "Run the app's quality gates (lint, types, tests, coverage)."),
    "github": ("slipway.cli.github", "Report to GitHub: the PR comment, the coverage status."),
    "health": ("slipway.cli.health", "Run an environment's health checks once."),
    "init": ("slipway.cli.init", "Write a slipway.toml that fits the app in this repository."),
    "status": ("slipway.cli.status", "Show the live release and recent deployments."),
    "lock": ("slipway.cli.lock", "Show who holds an environment's deploy lock."),
    "metrics": ("slipway.cli.metrics", "DORA deployment metrics from the records."),
    "monitor": ("slipway.cli.monitor", "Watch an environment's figures and alert on thresholds."),
    "notify": ("slipway.cli.notify", "Send a test notification to an environment's channels."),
    "preflight": ("slipway.cli.preflight", "Check that a tag may be deployed (CI, main, newer)."),
    "plan": ("slipway.cli.plan", "Print the steps a deploy would run, without running them."),
    "recover": ("slipway.cli.recover", "Finish a deploy or rollback that stopped half way."),
    "release": ("slipway.cli.release", "Create a GitHub Release with notes from the commits."),
    "releases": ("slipway.cli.releases", "List the releases kept on each host."),
    "rollback": ("slipway.cli.rollback", "Roll an environment back to an earlier release."),
    "schema": ("slipway.cli.schema", "Print the configuration's JSON Schema."),
    "try": ("slipway.cli.tryout", "Deploy this checkout here, on free ports, and run its checks."),
    "split": ("slipway.cli.split", "Run two kept releases side by side (A/B), then keep one."),
    "canary": ("slipway.cli.canary", "Show, promote or abort a running canary deploy."),
    "standby": ("slipway.cli.standby", "Show or stop the warm old colour of a blue-green deploy."),
}

EPILOG = """\b
Exit codes:
  0    success
  1    the operation failed (for a deploy: it was rolled back)
  2    bad usage or invalid configuration
  3    another deploy holds the environment's lock
  70   an internal error: a bug in slipway (--debug shows where)
  130  interrupted

\b
Examples:
  slipway check                 validate slipway.toml and show every environment
  slipway check production      show one environment
  slipway check --json          the same, for scripts
  slipway deploy staging --ref staging
  slipway rollback production   back to the previous good release
  slipway status production --json
"""


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when they run or show help."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[cmd_name][0])
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=SafePath(dir_okay=False),
    envvar="SLIPWAY_CONFIG",
    help="Configuration file (default: slipway.toml, or [tool.slipway] in pyproject.toml,"
    " found from the current directory upwards).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("--no-color", is_flag=True, envvar="NO_COLOR", help="Never use colours.")
@click.version_option(__version__, prog_name="slipway")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, debug: bool, no_color: bool) -> None:
    """slipway deploys FastAPI + Next.js + SQLite apps to your own servers:
    zero-downtime, database backed up first, health-gated, rolled back on failure.

    Run a command with --help to learn it, e.g. `slipway check --help`.
    """
    ctx.obj = {"config_path": config_path, "debug": debug, "no_color": no_color}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map errors to one readable line and a documented exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # With standalone_mode=False click returns a command's Exit code instead of
        # raising it; pass it on.
        result = cli.main(args=argv, prog_name="slipway", standalone_mode=False)
        if isinstance(result, int):
            return result
    except SlipwayError as exc:
        if debug:
            traceback.print_exc()
        _print_error(exc.message, exc.hint)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except Exception as exc:  # the last line: one readable error, never a traceback
        if debug:
            traceback.print_exc()
        _print_error(
            f"internal error: {type(exc).__name__}: {exc}",
            "this is a bug in slipway: run again with --debug for the traceback and report it",
        )
        return INTERNAL_ERROR
    return 0


def _print_error(message: str, hint: str | None) -> None:
    click.echo(f"error: {mask_everywhere(message)}", err=True)
    if hint:
        click.echo(f"hint: {mask_everywhere(hint)}", err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
