"""Deployment records and the append-only audit log, kept on each host in SQLite.

The database sits under ``<root>/<env>/.slipway/records.db`` (mode 0600) and is written
through the host helper so local and SSH hosts behave the same. Every text that enters
a record has already passed through the deploy's Masker.
"""

from __future__ import annotations

import time
from typing import Any

from slipway.state.host import Layout, call
from slipway.transports.base import Transport


def save(
    transport: Transport,
    layout: Layout,
    *,
    deployment: dict[str, Any] | None = None,
    audit: list[dict[str, Any]] | None = None,
) -> None:
    call(transport, "record", records=layout.records, deployment=deployment, audit=audit or [])


def audit_event(actor: str, event: str, deployment_id: str | None, **detail: Any) -> dict[str, Any]:
    return {
        "at": time.time(),
        "actor": actor,
        "event": event,
        "deployment_id": deployment_id,
        "detail": detail,
    }


def deployments(transport: Transport, layout: Layout, limit: int = 20) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = call(
        transport, "query", records=layout.records, table="deployments", limit=limit
    )["rows"]
    return rows


def audit_log(transport: Transport, layout: Layout, limit: int = 100) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = call(
        transport, "query", records=layout.records, table="audit", limit=limit
    )["rows"]
    return rows
