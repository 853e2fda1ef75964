"""Deployment records and the append-only audit log, kept on each host in SQLite.

The database sits under ``<root>/<env>/.slipway/records.db`` (mode 0600) and is written
through the host helper so local and SSH hosts behave the same. Every text that enters
a record has already passed through the deploy's Masker; the helper strips unprintable
characters. Audit rows form a hash chain (each row's hash covers the previous one's),
and the row saved with a deployment vouches for that deployment row's content, so an
edit made behind slipway's back (triggers dropped, rows changed or removed) shows in
``slipway audit ENV --verify``. A records database that went missing or was emptied
is an error, never made again silently.
"""

from __future__ import annotations

import json
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
    call(
        transport,
        "record",
        records=layout.records,
        current=layout.current,
        deployment=deployment,
        audit=audit or [],
    )


def audit_event(actor: str, event: str, deployment_id: str | None, **detail: Any) -> dict[str, Any]:
    return {
        "at": time.time(),
        "actor": actor,
        "event": event,
        "deployment_id": deployment_id,
        "detail": detail,
    }


def _query(transport: Transport, layout: Layout, table: str, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` rows of ``table`` (none before the first deploy)."""
    answer = call(
        transport, "query", records=layout.records, current=layout.current, table=table, limit=limit
    )
    rows: list[dict[str, Any]] = answer["rows"]
    return rows


# Columns stored as JSON text: returned as what they hold, so `--json` output and the
# dashboard carry structured steps, not a JSON string inside the JSON.
JSON_COLUMNS = ("steps", "rehearsal")


def deployments(transport: Transport, layout: Layout, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` deployment rows, newest first, ``steps`` and ``rehearsal``
    decoded (a list of steps; the rehearsal's class and changes, or None)."""
    return [_decoded(row) for row in _query(transport, layout, "deployments", limit)]


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    for column in JSON_COLUMNS:
        value = row.get(column)
        if isinstance(value, str):
            try:
                row[column] = json.loads(value)
            except ValueError:
                row[column] = None if column == "rehearsal" else []
    return row


def audit_log(transport: Transport, layout: Layout, limit: int = 100) -> list[dict[str, Any]]:
    return _query(transport, layout, "audit", limit)


def verify(transport: Transport, layout: Layout, *heads: dict[str, Any] | None) -> dict[str, Any]:
    """Walk the audit log's hash chain on the host: ``ok``, ``rows``, ``problems`` (the
    first break, and every deployment row no audit row vouches for) and ``head``, the
    last row's id and hash. Each of ``heads`` given (None ones are skipped): that row
    must still be there unchanged, checked in the same walk."""
    return call(
        transport,
        "audit_verify",
        records=layout.records,
        current=layout.current,
        heads=[h for h in heads if h],
    )


def new_log(transport: Transport, layout: Layout, actor: str, reason: str) -> str | None:
    """Move an unusable records database aside and start a new log; where the old went."""
    answer = call(transport, "records_new", records=layout.records, actor=actor, reason=reason)
    previous: str | None = answer["previous"]
    return previous


def head(transport: Transport, layout: Layout) -> dict[str, Any] | None:
    """The audit log's last row as ``{"id", "hash"}`` (None while it is empty)."""
    rows = audit_log(transport, layout, 1)
    if not rows or not rows[0].get("hash"):
        return None
    return {"id": rows[0]["id"], "hash": rows[0]["hash"]}
