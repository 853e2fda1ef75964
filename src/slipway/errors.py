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
