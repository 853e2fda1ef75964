"""``slipway dashboard``: serve the read-only deployment dashboard."""

from __future__ import annotations

import click

from slipway.cli.context import loaded_config
from slipway.dashboard.data import Sessions, overview
from slipway.dashboard.server import make_token, needs_token, serve
from slipway.metrics.dora import parse_since


@click.command(name="dashboard")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token",
    envvar="SLIPWAY_DASHBOARD_TOKEN",
    default=None,
    help="Required on non-local addresses (generated when not given).",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests whose Host header is NAME (repeatable; e.g. the name a"
    " reverse proxy forwards). Others are refused (DNS rebinding defence).",
)
@click.option("--since", default="30d", show_default=True, help="Metrics window.")
@click.pass_context
def command(
    ctx: click.Context,
    host: str,
    port: int,
    token: str | None,
    allow_hosts: tuple[str, ...],
    since: str,
) -> None:
    """Serve a read-only page: per environment the live release, health, lock, last
    deploys, DORA figures with weekly trend charts and the latest backups.

    It reads the same records as the CLI and never changes anything. Works offline
    (no CDN). Bound to 127.0.0.1 unless --host says otherwise; then a token is needed.
    Requests must name this server in their Host header (its address, localhost,
    127.0.0.1 or [::1] with the port) or a name given with --allow-host.
    """
    loaded = loaded_config(ctx)
    window = parse_since(since)
    if needs_token(host) and not token:
        token = make_token()
    sessions = Sessions(loaded)
    server = serve(
        lambda: overview(loaded, window, sessions=sessions),
        host,
        port,
        token,
        allow_hosts=allow_hosts,
        quick=lambda: overview(loaded, window, run_checks=False, sessions=sessions),
    )
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{server.port}/"
    click.echo(f"dashboard on {address}" + (f"?token={token}" if token else ""))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sessions.close()
