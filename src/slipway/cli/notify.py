"""``slipway notify test ENV``: send a test message to every channel of an environment."""

from __future__ import annotations

import getpass

import click

from slipway.cli.context import echo_json, loaded_config
from slipway.errors import UsageError
from slipway.notify import Notifier, message
from slipway.secrets import Masker


@click.group(name="notify")
def command() -> None:
    """Notifications to Slack, Discord or any Apprise service ([[notify]] in the config).

    \b
    Webhook URLs are secrets: each channel names an environment variable
    (url_env = "SLACK_WEBHOOK_URL") or a 0600 file (url_file), never the URL.
    Deploys, rollbacks and monitor alerts notify on their own; a failing or slow
    channel never fails a deploy (it is retried until timeout_seconds, then
    recorded in the audit log as notify.failed).
    """


@command.command(name="test")
@click.argument("environment")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def test(ctx: click.Context, environment: str, as_json: bool) -> None:
    """Send a test message to each of ENVIRONMENT's channels; exit 1 if one failed."""
    loaded = loaded_config(ctx)
    env = loaded.config.environment(environment)
    notifier = Notifier.for_env(loaded.config, environment, Masker())
    if not notifier.channels:
        raise UsageError(
            f"no notification channel is set up for {environment!r}",
            hint='add a [[notify]] table, e.g. kind = "slack", url_env = "SLACK_WEBHOOK_URL"',
        )
    url = env.url
    note = message.test_message(
        project=loaded.config.project.name, env=environment, actor=getpass.getuser(), url=url
    )
    deliveries = notifier.send(note)
    if as_json:
        echo_json([d.as_dict() for d in deliveries])
    else:
        for d in deliveries:
            mark = "sent" if d.ok else "FAILED"
            detail = f"{d.attempts} attempt(s), {d.seconds:.2f}s"
            click.echo(f"{mark:<6} {d.channel}  ({detail}){'  ' + d.error if d.error else ''}")
    if not all(d.ok for d in deliveries):
        raise click.exceptions.Exit(1)
