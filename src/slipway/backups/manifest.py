"""What a backup is (its manifest) and which backups retention keeps. Pure functions.

A manifest sits beside each backup file as ``<id>.json``: environment, release and
commit live when it was taken, schema version, size, row counts per table, SHA-256 of
the plaintext database, ``PRAGMA integrity_check``, creation time, reason, and whether
the file is encrypted (then also the SHA-256 of the encrypted file).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

REASONS = ("pre-deploy", "manual", "pre-restore")


def backup_id(reason: str, release: str | None, at: float) -> str:
    """``<UTC time>-<reason>[-<release>]``: sorts by time, says why at a glance."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(at))
    millis = int((at % 1) * 1000)
    suffix = f"-{release}" if release else ""
    return f"{stamp}.{millis:03d}-{reason}{suffix}"


def build(
    info: dict[str, Any],
    *,
    env: str,
    reason: str,
    release: str | None,
    commit: str | None,
    at: float,
    file: str,
) -> dict[str, Any]:
    """A manifest from the host helper's backup answer."""
    if reason not in REASONS:
        raise ValueError(f"unknown backup reason {reason!r}")
    return {
        "id": backup_id(reason, release, at),
        "env": env,
        "reason": reason,
        "release": release,
        "commit": commit,
        "created_at": at,
        "file": file,
        "encrypted": False,
        "size": info["size"],
        "sha256": info["sha256"],
        "schema_version": info.get("schema_version"),
        "tables": info.get("tables", {}),
        "schema": info.get("schema", {}),
        "integrity": info.get("integrity"),
        "check": info.get("check", "integrity_check"),
        "schema_hash": info.get("schema_hash"),
        "migrations": info.get("migrations", []),
        "seconds": info.get("seconds"),
        "copy_seconds": info.get("copy_seconds"),
    }


@dataclass(frozen=True)
class RetentionPlan:
    keep: list[str]
    delete: list[str]
    reasons: dict[str, str]  # id -> why it is kept or deleted


def retention(
    manifests: list[dict[str, Any]], *, now: float, days: int, keep_last: int
) -> RetentionPlan:
    """Keep backups younger than ``days``, and at least the newest ``keep_last`` good
    ones; the newest good backup is never deleted whatever its age."""
    ordered = sorted(manifests, key=lambda m: m["created_at"], reverse=True)
    good = [m for m in ordered if m.get("integrity") == "ok"]
    protected = {m["id"] for m in good[:keep_last]}
    horizon = now - days * 86400
    keep: list[str] = []
    delete: list[str] = []
    reasons: dict[str, str] = {}
    for m in ordered:
        if m["id"] in protected:
            keep.append(m["id"])
            reasons[m["id"]] = f"one of the newest {keep_last} good backups"
        elif m["created_at"] >= horizon:
            keep.append(m["id"])
            reasons[m["id"]] = f"younger than {days} days"
        else:
            delete.append(m["id"])
            reasons[m["id"]] = f"older than {days} days"
    return RetentionPlan(keep, delete, reasons)
