"""Which release this build plays.

The variant comes from ``CODEFRAME_MINI_VARIANT`` if set, else from the ``VARIANT`` file
next to this module (so a fixture git repository can hold one commit per variant).

Good variants: ``v1``, ``v2`` (adds a column with a default: additive), ``v3`` (drops
and recreates a table, as one CodeFRAME migration once did: destructive, data is lost),
``v2-rebuild`` (v2, then rebuilds the table copying every row, with a new NOT NULL
column older code cannot fill: breaking, nothing lost).
Broken variants, each a failure slipway must survive:
``crash`` (exits at start), ``health500`` (``/health`` answers 500), ``dbfail`` (the DB
health check fails), ``slow`` (listens only after ``CODEFRAME_MINI_SLOW_SECONDS``,
default 120), ``migration-error`` (a migration raises), ``ws-refused`` (WebSocket
refused), ``frontend-build-fail`` (``npm run build`` fails), ``late-fail`` (healthy
at first, then ``/health`` answers 500 once ``CODEFRAME_MINI_LATE_FAIL_FILE`` exists, or
after ``CODEFRAME_MINI_LATE_FAIL_SECONDS``,
default 4: a failure only the post-switch watch can catch), ``destructive-crash``
(runs v3's destructive migration, then exits, as CodeFRAME's backend did when its port
was busy: the schema changed and the release never served), ``fail-after`` (healthy,
but every other request answers 500 after ``CODEFRAME_MINI_FAIL_AFTER``, default 20) and
``sluggish`` (healthy, every other request ``CODEFRAME_MINI_DELAY_MS`` slower, default
300) and ``ws-drop`` (healthy, but ends every WebSocket session with 1011 after
``CODEFRAME_MINI_WS_DROP_SECONDS``, default 1.5): releases only a canary's analysis of
real traffic catches.
"""

from __future__ import annotations

import os
from pathlib import Path

GOOD = ("v1", "v2", "v3", "v2-rebuild")
BROKEN = (
    "crash",
    "health500",
    "dbfail",
    "slow",
    "migration-error",
    "ws-refused",
    "frontend-build-fail",
    "late-fail",
    "destructive-crash",
    "fail-after",
    "sluggish",
    "ws-drop",
)


def current() -> str:
    value = os.environ.get("CODEFRAME_MINI_VARIANT")
    if not value:
        value = (Path(__file__).with_name("VARIANT")).read_text(encoding="utf-8").strip()
    if value not in GOOD + BROKEN:
        raise SystemExit(f"codeframe-mini: unknown variant {value!r}")
    return value


def schema_level(variant: str) -> int:
    """How many migrations this variant ships. Broken variants build on v1."""
    if variant in ("v3", "destructive-crash"):
        return 3
    if variant in ("v2", "v2-rebuild"):
        return 2
    return 1
