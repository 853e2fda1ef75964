"""The deploy journal: what a deploy (or rollback) under way has changed, kept on the host.

A deploy writes ``<env>/.slipway/journal.json`` (mode 0600, atomically: temp file and
rename) when it starts, before each step, and whenever it is about to change live state
(stop or start processes, switch traffic, hold requests, restore the database, move
``current``). Each write holds the run's undo information (:class:`RunState`) as if the
change about to be made had already happened, so undoing from it is always safe: every
undo action is idempotent (stopping stopped processes, switching to the colour already
served). When the run ends, by success or by a handled failure, the journal is removed
after the record is final.

A journal found by a command that has just taken the environment's lock therefore
belongs to a run that stopped without finishing (SIGKILL, a lost connection, a forced
lock release). That command completes it first (:mod:`slipway.deploy.recovery`):

- ``current`` already names the run's release: it had been promoted, so the run is
  rolled *forward* (the colours file and the standby are brought in line);
- processes were touched: the strategy's own undo runs, exactly as after a failure at
  that step (traffic back on the colour that served, or the previous release started
  from its own run spec and gated; the database restored only if the old code cannot live
  with it);
- nothing live changed: there is nothing to undo.

Then the record is finalised as ``interrupted`` with the step, an incident report is
written, the recovery is audited and notified, and the journal removed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slipway.commands import host as cmd
from slipway.deploy.run import RunState
from slipway.state.host import Layout, read_text
from slipway.transports.base import Transport

VERSION = 1


def path_of(layout: Layout) -> str:
    return f"{layout.state_dir}/journal.json"


@dataclass
class Journal:
    """The journal of one run, written through ``transport``."""

    transport: Transport
    layout: Layout
    data: dict[str, Any] = field(default_factory=dict)
    # Called before every write: raises when the run lost its lock, so a run ended by
    # a forced release never overwrites the journal of the command that took over.
    guard: Callable[[], None] = field(default=lambda: None)

    @classmethod
    def begin(
        cls,
        transport: Transport,
        layout: Layout,
        *,
        kind: str,
        strategy: str,
        row: dict[str, Any],
        build_color: str | None,
        guard: Callable[[], None] = lambda: None,
    ) -> Journal:
        journal = cls(transport, layout, guard=guard)
        journal.data = {
            "version": VERSION,
            "kind": kind,  # deploy | rollback
            "strategy": strategy,
            "row": row,
            "build_color": build_color,
            "state": RunState().to_journal(),
            "steps": [],
        }
        journal.write()
        return journal

    @property
    def step(self) -> str:
        return last_step(self.data)

    def intent(self, step: str, state: RunState | None = None, **assume: Any) -> None:
        """About to run ``step`` (or to change live state inside it); ``assume`` holds
        state fields as they will be once the change is made."""
        entry = {"step": step, "at": round(time.time(), 3), "done": False}
        steps: list[dict[str, Any]] = self.data["steps"]
        if steps and steps[-1]["step"] == step and not steps[-1]["done"]:
            steps[-1] = {**steps[-1], **entry}
        else:
            steps.append(entry)
        if state is not None:
            self.data["state"] = {**state.to_journal(), **assume}
        self.write()

    def done(self, step: str, state: RunState | None = None) -> None:
        steps: list[dict[str, Any]] = self.data["steps"]
        if steps and steps[-1]["step"] == step:
            steps[-1]["done"] = True
        if state is not None:
            self.data["state"] = state.to_journal()
        self.write()

    def note(self, **values: Any) -> None:
        """Extra facts for an undo (``build_color``, a rollback's set-aside backup)."""
        self.data.update(values)
        self.write()

    def write(self) -> None:
        self.guard()
        self.transport.put_text(json.dumps(self.data), path_of(self.layout), mode=0o600)

    def close(self) -> None:
        """The run ended and its record is final: nothing is left to recover."""
        self.guard()
        self.transport.run(cmd.remove_tree(path_of(self.layout)), check=False)


def read(transport: Transport, layout: Layout) -> dict[str, Any] | None:
    """The journal left on the host, if any. An unreadable one (a torn write cannot
    happen, the file is renamed into place; a hand-edited one can) is reported as such
    so the caller refuses to guess."""
    text = read_text(transport, path_of(layout))
    if text is None:
        return None
    try:
        data: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError:
        return {"unreadable": True}
    return data if isinstance(data, dict) else {"unreadable": True}


def last_step(data: dict[str, Any]) -> str:
    steps = data.get("steps") or []
    return str(steps[-1]["step"]) if steps else "prepare"
