"""The one exception tree of slipway.

Every error slipway raises on purpose derives from :class:`SlipwayError`. Third-party
errors are caught at the boundary and re-raised as one of these (``raise ... from exc``)
so the CLI can print one clear line plus a hint, and map each class to a documented
exit code, instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class SlipwayError(Exception):
    """Base of every slipway error. ``hint`` tells the user what to do next."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file, located by its dotted path."""

    location: str
    message: str
    hint: str | None = None

    def render(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(SlipwayError):
    """The configuration is missing, unreadable or invalid. Holds every issue found."""

    exit_code = 2

    def __init__(self, source: str, issues: Sequence[ConfigIssue], *, hint: str | None = None):
        self.source = source
        self.issues = list(issues)
        count = len(self.issues)
        noun = "error" if count == 1 else "errors"
        lines = [f"{source}: {count} configuration {noun}"]
        lines += [f"  - {issue.render()}" for issue in self.issues]
        super().__init__("\n".join(lines), hint=hint)


class UsageError(SlipwayError):
    """The command was called with arguments that cannot work (unknown environment, ...)."""

    exit_code = 2


class CommandFailed(SlipwayError):
    """A command on a host exited non-zero (or timed out). Shows command, code and output."""

    def __init__(self, command: str, exited: int, tail: str, *, hint: str | None = None):
        self.command = command
        self.exited = exited
        self.tail = tail
        detail = f"\n{tail}" if tail else ""
        super().__init__(f"command failed (exit {exited}): {command}{detail}", hint=hint)


class TransportError(SlipwayError):
    """The host could not be reached, or the connection broke (SSH auth, host key, ...)."""


class LockHeld(SlipwayError):
    """Another deploy holds the environment's lock."""

    exit_code = 3


class LockLost(SlipwayError):
    """A deploy's lock was released by force (``slipway lock --release --force``): the
    run stopped without touching anything more; the next command recovers it."""


class DeployFailed(SlipwayError):
    """A deploy failed at a step; ``rolled_back`` says whether the previous release serves."""

    def __init__(self, step: str, cause: str, *, rolled_back: bool, hint: str | None = None):
        self.step = step
        self.cause = cause
        self.rolled_back = rolled_back
        state = "rolled back" if rolled_back else "ROLLBACK INCOMPLETE"
        super().__init__(f"deploy failed at step '{step}' ({state}): {cause}", hint=hint)


class HealthCheckFailed(SlipwayError):
    """A health gate did not reach its consecutive passes before the deadline."""


class RouterError(SlipwayError):
    """A router could not be started, or a switch was refused or not confirmed in time."""


class BackupError(SlipwayError):
    """A backup could not be taken, decrypted, verified or restored."""


class HoldExpired(SlipwayError):
    """A breaking deploy held requests at the proxy past its deadline (it rolls back)."""


class RehearsalFailed(SlipwayError):
    """The release's backend exited or never answered on a copy of the database, before
    anything live changed (it would not have started live either)."""


class DeployRefused(SlipwayError):
    """The strategy cannot deploy this release as asked (a canary whose migrations the
    live release cannot share). Raised before the lock when what is declared says so
    (exit 2, nothing changed); after the rehearsal it fails the deploy (exit 1)."""

    exit_code = 2


class DataLossRefused(SlipwayError):
    """The migration rehearsal found tables that would lose rows, and the deployer did
    not allow it (``--allow-data-loss``). Nothing live changed."""
