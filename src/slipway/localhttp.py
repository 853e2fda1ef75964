"""One HTTP client for slipway's own requests to the apps and routers it runs.

Building an httpx client loads the CA bundle (about 50 ms here), which would otherwise
dominate a health check's or a switch confirmation's latency. httpx clients are
thread-safe; no connection is kept alive, so each request sees the port as it is now
(a switch must never be confirmed by a connection opened before it).
"""

from __future__ import annotations

import httpx

_client: httpx.Client | None = None


def client() -> httpx.Client:
    global _client
    if _client is None:
        _client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))
    return _client
