"""``slipway monitor ENV``: sample an environment's figures, alert on thresholds."""

from __future__ import annotations

import time

import click

from slipway.cli.context import echo_json_line, loaded_config
from slipway.cli.hosts import host_session
from slipway.config import LoadedConfig
from slipway.monitor.prometheus import MetricsServer, listen
from slipway.monitor.run import Monitor, Report


@click.command(name="monitor")
@click.argument("environment")
@click.option("--once", is_flag=True, help="Take one sample and exit (for cron).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds between samples (> 0).",
)
@click.option("--count", type=int, default=None, help="Stop after this many samples.")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve Prometheus /metrics here.",
)
@click.option("--metrics-bind", default="127.0.0.1", show_default=True, help="Address for it.")
@click.option(
    "--metrics-token",
    envvar="SLIPWAY_METRICS_TOKEN",
    default=None,
    help="Bearer token /metrics requires (needed when --metrics-bind is not loopback).",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer /metrics requests whose Host header is NAME (repeatable).",
)
@click.option("--no-notify", is_flag=True, help="Record alerts but send no notification.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per sample.")
@click.pass_context
def command(
    ctx: click.Context,
    environment: str,
    once: bool,
    interval: float | None,
    count: int | None,
    metrics_port: int | None,
    metrics_bind: str,
    metrics_token: str | None,
    allow_hosts: tuple[str, ...],
    no_notify: bool,
    as_json: bool,
) -> None:
    """Sample ENVIRONMENT and alert when a threshold is crossed ([environments.X.monitor]).

    \b
    Alerts (defaults from the design):
      error_rate       API 5xx share > 5%        router access log (else probes)
      p95              p95 response time > 2s    router access log (else probes)
      websocket_drops  > 10% of probe connections dropped between samples
      database         a failed read-only query of the SQLite file or DB check
      disk             < 10% free where the environment or its backups live
    \b
    Each alert is announced once when it fires and once when it resolves (audit
    log, notifications), not on every sample; the state lives on the host, so
    `--once` from cron behaves the same. Multi-host environments: the first host.
    \b
    \b
    /metrics answers only requests whose Host header names this server (or a name
    given with --allow-host); off loopback it needs --metrics-token as a Bearer token.
    \b
    Exit codes: with --once, 0 when no alert is firing, 1 when one is;
    otherwise 0 when stopped by --count, 130 on Ctrl-C; 2 bad usage
    (including a metrics port in use).
    """
    loaded = loaded_config(ctx)
    # Bound before the host session: a busy port fails at once, with nothing to undo.
    server = (
        listen(metrics_bind, metrics_port, token=metrics_token, allow_hosts=allow_hosts)
        if metrics_port
        else None
    )
    try:
        report = _run(loaded, environment, server, not no_notify, interval, count, once, as_json)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    if once and report.firing:
        raise click.exceptions.Exit(1)


def _run(
    loaded: LoadedConfig,
    environment: str,
    server: MetricsServer | None,
    notify: bool,
    interval: float | None,
    count: int | None,
    once: bool,
    as_json: bool,
) -> Report:
    """Sample until --once or --count says stop; the last report."""
    session = host_session(loaded, environment)
    deployer = next(session)
    monitor = Monitor(deployer, notify=notify)
    if server is not None:
        server.start(monitor.metrics_text)
    pause = interval or deployer.env.monitor.interval_seconds
    taken = 0
    try:
        while True:
            report = monitor.step()
            taken += 1
            _show(report, as_json)
            if once or (count is not None and taken >= count):
                return report
            time.sleep(pause)
    finally:
        monitor.close()
        session.close()


def _show(report: Report, as_json: bool) -> None:
    if as_json:
        echo_json_line(report.as_dict())
        return
    s = report.sample
    when = time.strftime("%H:%M:%S", time.localtime(s.at))
    click.echo(f"{when}  traffic from {s.source}: {s.requests} requests, {s.errors} 5xx")
    for r in report.readings:
        mark = "FIRING" if r.firing else "ok"
        click.echo(
            f"  {mark:<7}{r.name:<16}{r.shown}  ({r.limit})"
            if r.limit
            else f"  {mark:<7}{r.name:<16}{r.shown}"
        )
    for t in report.changes:
        click.echo(f"  -> alert {t.name} {'fired' if t.firing else 'resolved'}")
