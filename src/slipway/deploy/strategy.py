"""The Strategy protocol: how a release replaces the live one, and how that is undone.

A strategy is one module (``restart``, ``bluegreen``) with one class, registered in
:data:`slipway.deploy.strategies.STRATEGIES`. The deploy flow
(:mod:`slipway.deploy.engine`) runs the strategy-neutral steps (upload, link, install,
build, backup) itself and asks the strategy for the rest; a failed deploy, a recovered
journal and ``slipway rollback`` all go back through the same strategy methods, so one
list of phases serves deploy, undo and rollback (as Capistrano's one phase list does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from slipway.config.model import EnvironmentConfig
    from slipway.deploy.context import HostContext
    from slipway.deploy.run import RunState
    from slipway.health.gate import GateReport

Step = tuple[str, Callable[[], None]]


class Strategy(Protocol):
    name: str

    def plan(self, env: EnvironmentConfig) -> list[tuple[str, str]]:
        """``slipway plan``: the steps after the backup, as (name, text) templates."""

    def plan_values(self, env: EnvironmentConfig) -> dict[str, str]:
        """Values the plan's texts use beyond the common ones."""

    def on_failure(self) -> str:
        """``slipway plan``: what happens when a step fails."""

    def hold_text(self) -> str:
        """``slipway plan``: the hold step's text, for a release with breaking migrations."""

    def build_color(self, ctx: HostContext) -> str | None:
        """The colour a new release is built and started for (None: the public ports)."""

    def refuse_up_front(self, ctx: HostContext, breaking: bool, rehearse: bool) -> None:
        """Before the lock and any upload: raise :class:`~slipway.errors.DeployRefused`
        when what is already declared (``breaking``, ``rehearse``) rules this strategy
        out for the release."""

    def hold(self, ctx: HostContext, state: RunState) -> None:
        """The hold point of a release with breaking migrations: from here to the end of
        ``activate`` nothing writes to the database."""

    def activate(
        self, ctx: HostContext, release: str, previous: str | None, commit: str, state: RunState
    ) -> list[Step]:
        """The steps that make ``release`` live: start, health, (switch, watch), promote.
        Each journals before it changes live state (``ctx.checkpoint``)."""

    def recover(
        self, ctx: HostContext, previous: str | None, state: RunState, deployment_id: str
    ) -> tuple[bool, str]:
        """Undo ``activate`` as far as ``state`` says it got (idempotent). Returns
        (the previous release serves, note)."""

    def roll_forward(
        self,
        ctx: HostContext,
        release: str,
        previous: str | None,
        state: RunState,
        color: str | None,
    ) -> GateReport:
        """Finish a promote that had begun (``current`` already names ``release``), then
        gate what serves."""

    def rollback_to(
        self, ctx: HostContext, release: str, current: str | None, restore_db: bool, state: RunState
    ) -> tuple[list[str], str]:
        """``slipway rollback`` to ``release`` (validated). Returns (notes, summary)."""

    def start_live(self, ctx: HostContext) -> bool:
        """Start the live release again where it serves (after a backup restore stopped
        every writer); True when it passed its gate."""

    def protected(self, ctx: HostContext) -> set[str]:
        """Releases that must never be pruned besides current and previous."""
