"""One deploy's state: what it changed so far, and how it reports progress and its end.

:class:`RunState` is what an undo needs to know (were processes swapped, was traffic
switched, which colour served before, which backup was taken). The journal saves it on
the host before each step that changes live state, so a deploy killed half way can be
undone by the next command exactly as if it had failed there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slipway.health.gate import GateReport
from slipway.routers.hold import HoldingProxy, HoldResult


@dataclass(frozen=True)
class StepEvent:
    """Progress for the CLI: a step started, finished, failed, or a note inside one."""

    step: str
    status: str  # start | ok | failed | info | warning
    seconds: float = 0.0
    detail: str = ""
    host: str = ""  # a fleet's member (empty for a one-host environment)


Emit = Callable[[StepEvent], None]


@dataclass
class Outcome:
    deployment_id: str
    release: str
    commit: str
    status: str  # succeeded | rolled_back | failed
    seconds: float
    steps: list[dict[str, Any]] = field(default_factory=list)
    health: str = ""
    hold: str = ""  # a breaking release's hold: how many requests waited, how long
    rehearsal: dict[str, Any] | None = None  # the migrations' class and changed tables


@dataclass(frozen=True)
class Recovery:
    """What completing an unfinished run did (``slipway recover``, or any command that
    found a journal after taking the lock)."""

    deployment_id: str
    kind: str  # deploy | rollback
    release: str
    step: str  # the step the run stopped in
    serving: bool  # something healthy serves now
    note: str


# The RunState fields an undo needs, saved in the journal (JSON-friendly values only).
JOURNALED = (
    "swapped",
    "switched",
    "old_color",
    "standby_before",
    "backup_path",
    "backup",
    "db_before",
    "restored",
)


@dataclass
class RunState:
    swapped: bool = False  # new processes were started (rollback has work to do)
    backup_path: str | None = None
    backup: dict[str, Any] | None = None  # the pre-deploy backup's manifest
    db_before: dict[str, Any] | None = None
    gate: GateReport | None = None
    old_color: str | None = None  # blue-green: the colour live before this deploy
    standby_before: dict[str, Any] | None = None  # blue-green: the warm standby it replaced
    switched: bool = False  # blue-green: traffic was moved to the new colour
    switch_seconds: float | None = None
    hold: HoldingProxy | None = None  # the holding proxy while requests wait
    hold_started: float = 0.0
    hold_result: HoldResult | None = None
    # A rollback put an older backup in place: undoing it always puts back the copy of
    # the database it set aside (``backup_path``), whatever the schema says.
    restored: bool = False
    # What the rehearsal found, for a strategy that must know before it starts (a
    # canary runs both releases on one database): the release holds (breaking or
    # destructive migrations), and whether a rehearsal was asked for at all.
    holds: bool = False
    rehearsed: bool = True
    # In a fleet, the host whose release holds when this one's does not (a frontend-only
    # host has no database to rehearse): a canary is all hosts or none.
    holds_on: str | None = None

    def to_journal(self) -> dict[str, Any]:
        saved = {name: getattr(self, name) for name in JOURNALED}
        holding = self.hold is not None and self.hold_result is None
        saved["holding"] = holding
        saved["hold_since"] = time.time() - (time.monotonic() - self.hold_started)
        return saved

    @classmethod
    def from_journal(cls, saved: dict[str, Any]) -> RunState:
        return cls(
            swapped=bool(saved.get("swapped")),
            switched=bool(saved.get("switched")),
            old_color=saved.get("old_color"),
            standby_before=saved.get("standby_before"),
            backup_path=saved.get("backup_path"),
            backup=saved.get("backup"),
            db_before=saved.get("db_before"),
            restored=bool(saved.get("restored")),
        )
