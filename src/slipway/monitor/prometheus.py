"""The monitor's figures in Prometheus' text exposition format (version 0.0.4), served
on ``--metrics-port`` so an existing Prometheus can scrape them.

Written by hand (a dozen lines of format); the tests parse it with prometheus_client's
reference parser. Served by :mod:`slipway.httpserve` (worker pool, header deadline,
Host allow-list); off loopback a bearer token is required.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import cast

from slipway.errors import UsageError
from slipway.httpserve import (
    HEADER_TIMEOUT,
    WORKERS,
    HardenedHandler,
    HardenedHTTPServer,
    bearer_matches,
    is_loopback,
)
from slipway.monitor.alerts import ALERTS
from slipway.monitor.sample import Sample

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}"


class Totals:
    """Counters accumulated over the monitor's life (Prometheus wants monotonic ones)."""

    def __init__(self) -> None:
        self.samples = 0
        self.requests = 0
        self.errors = 0
        self.ws_drops = 0
        self.db_failures = 0

    def add(self, sample: Sample) -> None:
        self.samples += 1
        self.requests += sample.requests
        self.errors += sample.errors
        self.ws_drops += sample.ws_drops
        self.db_failures += sample.db_failures


def render(env: str, sample: Sample, firing: set[str], totals: Totals) -> str:
    out: list[str] = []

    def metric(
        name: str, kind: str, help_text: str, rows: list[tuple[dict[str, str], float]]
    ) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in rows:
            out.append(f"{name}{_labels(env=env, **labels)} {value:g}")

    metric("slipway_monitor_samples_total", "counter", "Samples taken.", [({}, totals.samples)])
    metric(
        "slipway_http_requests_total",
        "counter",
        f"API requests seen ({sample.source}).",
        [({}, totals.requests)],
    )
    metric("slipway_http_errors_total", "counter", "API 5xx responses.", [({}, totals.errors)])
    if sample.error_percent() is not None:
        ratio = (sample.error_percent() or 0.0) / 100
        metric("slipway_http_error_ratio", "gauge", "5xx share, last window.", [({}, ratio)])
    if sample.p95_seconds is not None:
        metric(
            "slipway_http_p95_seconds",
            "gauge",
            "95th percentile response time, last window.",
            [({}, sample.p95_seconds)],
        )
    metric(
        "slipway_websocket_drops_total",
        "counter",
        "Probe WebSocket connections that dropped.",
        [({}, totals.ws_drops)],
    )
    metric(
        "slipway_database_probe_failures_total",
        "counter",
        "Failed database probes.",
        [({}, totals.db_failures)],
    )
    metric(
        "slipway_disk_free_ratio",
        "gauge",
        "Free share of the filesystem holding each path.",
        [({"path": path}, float(d["free_ratio"])) for path, d in sorted(sample.disks.items())],
    )
    metric(
        "slipway_check_up",
        "gauge",
        "1 if the health check passed in the last sample.",
        [({"check": c.name}, 1.0 if c.ok else 0.0) for c in sample.checks],
    )
    metric(
        "slipway_check_latency_seconds",
        "gauge",
        "Health check latency, last sample.",
        [({"check": c.name}, c.latency_ms / 1000) for c in sample.checks],
    )
    metric(
        "slipway_alert_firing",
        "gauge",
        "1 while the alert is firing.",
        [({"alert": name}, 1.0 if name in firing else 0.0) for name in ALERTS],
    )
    metric(
        "slipway_last_sample_timestamp_seconds",
        "gauge",
        "When the last sample was taken.",
        [({}, round(sample.at, 3))],
    )
    return "\n".join(out) + "\n"


class MetricsServer(HardenedHTTPServer):
    """The /metrics server; ``text`` is set by :meth:`start`, after binding, so the
    CLI can fail on a busy port before it opens a session to the host."""

    _text: Callable[[], str] | None = None

    def start(self, text: Callable[[], str]) -> None:
        """Serve ``text()`` at /metrics in a daemon thread; the caller shuts it down."""
        self._text = text
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def render_text(self) -> str:
        return self._text() if self._text is not None else ""


def _make_handler(token: str | None) -> type[HardenedHandler]:
    class Handler(HardenedHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_plain(404, "only /metrics here\n")
                return
            if token is not None and not bearer_matches(
                self.headers.get("Authorization", ""), token
            ):
                self.send_plain(401, "token required\n", {"WWW-Authenticate": "Bearer"})
                return
            body = cast(MetricsServer, self.server).render_text().encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def listen(
    bind: str,
    port: int,
    *,
    token: str | None = None,
    allow_hosts: Iterable[str] = (),
    workers: int = WORKERS,
    header_timeout: float = HEADER_TIMEOUT,
) -> MetricsServer:
    """Bind the metrics port (not serving yet: call ``start``).

    Off loopback the figures (release names, paths, error rates) would be readable by
    anyone on the network, so a token is then required; without one this refuses.
    """
    if token is None and not is_loopback(bind):
        raise UsageError(
            f"--metrics-bind {bind} is not a loopback address: a token is required",
            hint="pass --metrics-token (or SLIPWAY_METRICS_TOKEN); Prometheus sends it"
            " as `authorization: {credentials: ...}` in the scrape config",
        )
    return MetricsServer(
        bind,
        port,
        _make_handler(token),
        allow_hosts=allow_hosts,
        workers=workers,
        header_timeout=header_timeout,
    )


def serve(
    bind: str,
    port: int,
    text: Callable[[], str],
    *,
    token: str | None = None,
    allow_hosts: Iterable[str] = (),
) -> MetricsServer:
    """Serve ``text()`` at /metrics in a daemon thread; the caller shuts it down."""
    server = listen(bind, port, token=token, allow_hosts=allow_hosts)
    server.start(text)
    return server
