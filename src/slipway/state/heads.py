"""The audit chain's head as this machine last saw it: a copy kept off the host.

A host's audit log is hash-chained, so a changed or removed row breaks every hash after
it; but someone who can write the host's files could rewrite the whole chain, or cut
its tail. The deployer keeps the last head it saw for each environment on each host
(``$SLIPWAY_STATE_HOME``, else ``$XDG_STATE_HOME/slipway``, else
``~/.local/state/slipway``: ``audit-heads.json``, 0600), and ``slipway audit ENV
--verify`` checks that row is still there unchanged. Notifications carry it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any


def state_home() -> Path:
    explicit = os.environ.get("SLIPWAY_STATE_HOME")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "slipway"


def _file() -> Path:
    return state_home() / "audit-heads.json"


# A fleet's hosts remember their heads from several threads: one read-modify-write at a
# time (they share the file and its temporary name).
_WRITING = threading.Lock()


def key(host: str, base: str) -> str:
    """One environment on one host: the host's name and the environment's directory."""
    return f"{host}:{base}"


def _read() -> dict[str, Any]:
    try:
        data = json.loads(_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recall(name: str) -> dict[str, Any] | None:
    """The head last seen for ``name``, or None (never seen, or unreadable)."""
    head = _read().get(name)
    if isinstance(head, dict) and isinstance(head.get("id"), int) and head.get("hash"):
        return head
    return None


def remember(name: str, head: dict[str, Any]) -> bool:
    """Keep ``head`` for ``name``; False when this machine cannot write its state (a
    read-only home): the chain on the host still stands, only the copy is missing."""
    with _WRITING:
        data = _read()
        data[name] = {"id": int(head["id"]), "hash": str(head["hash"])}
        return _write(data)


def forget(name: str) -> None:
    """Drop the head of an environment that no longer exists (``slipway try --stop``)."""
    with _WRITING:
        data = _read()
        if data.pop(name, None) is not None:
            _write(data)


def _write(data: dict[str, Any]) -> bool:
    path = _file()
    temp = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()
        return False
    return True
