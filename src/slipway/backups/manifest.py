"""What a backup is (its manifest) and which backups retention keeps. Pure functions.

A manifest sits beside each backup file as ``<id>.json``: environment, release and
commit live when it was taken, schema version, size, row counts per table, SHA-256 of
the plaintext database, ``PRAGMA integrity_check``, creation time, reason, and whether
the file is encrypted (then also the SHA-256 of the encrypted file).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

REASONS = ("pre-deploy", "manual", "pre-restore")
# A backup's id and file are plain names inside the backups directory: prune deletes
# what a manifest names, and a manifest is a file anyone with write access can edit.
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
_OPTIONAL_TEXT = (str, type(None))
FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "env": (str,),
    "reason": (str,),
    "release": _OPTIONAL_TEXT,
    "commit": _OPTIONAL_TEXT,
    "created_at": (int, float),
    "file": (str,),
    "encrypted": (bool,),
    "size": (int,),
    "sha256": (str,),
    "tables": (dict,),
}
# Checked when present: the code reading them allows their absence.
OPTIONAL_FIELDS: dict[str, tuple[type, ...]] = {
    "schema_version": (int, str, type(None)),
    "integrity": _OPTIONAL_TEXT,
}


def is_plain_name(name: object) -> bool:
    """A file name with no directory part, no leading dot and no ``..``."""
    return isinstance(name, str) and bool(PLAIN_NAME.fullmatch(name)) and ".." not in name


def is_backup_file(name: object) -> bool:
    """A backup's file: a plain name ending ``.db`` (``.db.age`` once sealed). Not
    necessarily its id's: a pre-deploy backup's id names the live release and its file
    the release being deployed."""
    return is_plain_name(name) and str(name).endswith((".db", ".db.age"))


def problems(manifest: object, json_name: str) -> list[str]:
    """What makes ``manifest`` (read from ``json_name``) unusable; empty when it is
    sound. A broken manifest is listed, never followed."""
    if not isinstance(manifest, dict):
        return [f"not a JSON object but {type(manifest).__name__}"]
    optional = {k: v for k, v in OPTIONAL_FIELDS.items() if k in manifest}
    found = [
        problem
        for name, types in {**FIELDS, **optional}.items()
        if (problem := _field_problem(manifest, name, types)) is not None
    ]
    if found:
        return found
    if not is_plain_name(manifest["id"]) or json_name != f"{manifest['id']}.json":
        found.append(f"id {manifest['id']!r} is not this file's name ({json_name})")
    if not is_backup_file(manifest["file"]):
        found.append(f"file {manifest['file']!r} is not a backup file name in this directory")
    if manifest["reason"] not in REASONS:
        found.append(f"reason {manifest['reason']!r} is not one of {', '.join(REASONS)}")
    if not math.isfinite(manifest["created_at"]):
        found.append("created_at is not a finite time")
    return found


def _field_problem(manifest: dict[str, Any], name: str, types: tuple[type, ...]) -> str | None:
    if name not in manifest:
        return f"no {name!r}"
    value = manifest[name]
    # bool is an int in Python; a time or size of `true` is still wrong.
    if isinstance(value, bool) and bool not in types:
        return f"{name!r} is a boolean"
    if not isinstance(value, types):
        return f"{name!r} is {type(value).__name__}"
    return None


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
