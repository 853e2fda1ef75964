"""What ``slipway rollback --to X`` means, decided before anything is stopped.

``X`` may be a release id, a unique prefix of one, the tag or branch a release was
deployed from (``v0.1.0``), or a commit (7 or more hex digits). A tag or commit deployed
more than once means the newest kept release of it. Anything else (an unknown name, an
ambiguous prefix, a path such as ``../../outside``) is a usage error that names the kept
releases; the caller has changed nothing yet.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from slipway.errors import UsageError

# Release ids, refs and commits are made of these; "/" only inside refs (release ids
# never hold one, so a ref with "/" can never become a path).
_TARGET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]{0,199}")
_HEX_RE = re.compile(r"[0-9a-fA-F]{7,40}")


@dataclass(frozen=True)
class KeptRelease:
    """A release directory on the host and what its metadata says it was built from."""

    id: str
    ref: str = ""
    commit: str = ""

    def describe(self) -> str:
        source = ", ".join(x for x in (self.ref, self.commit[:10]) if x)
        return f"{self.id} ({source})" if source else self.id


@dataclass(frozen=True)
class Resolved:
    release: str
    how: str  # "release id" | "prefix" | "tag or branch" | "commit"

    def describe(self, asked: str) -> str:
        if self.how == "release id":
            return f"release {self.release}"
        return f"--to {asked} ({self.how}) is release {self.release}"


def resolve(asked: str, kept: Sequence[KeptRelease], env: str, option: str = "--to") -> Resolved:
    """The kept release ``asked`` (given as ``option``) names, or a UsageError naming
    the kept ones."""
    if not _TARGET_RE.fullmatch(asked) or ".." in asked:
        raise UsageError(
            f"{option} {asked!r} is not a release id, tag or commit",
            hint=_kept_hint(kept),
        )
    newest_first = sorted(kept, key=lambda r: r.id, reverse=True)
    exact = [r for r in newest_first if r.id == asked]
    if exact:
        return Resolved(exact[0].id, "release id")
    by_ref = [r for r in newest_first if r.ref == asked]
    if by_ref:
        return Resolved(by_ref[0].id, "tag or branch")
    if _HEX_RE.fullmatch(asked):
        by_commit = [r for r in newest_first if r.commit.lower().startswith(asked.lower())]
        if by_commit:
            return Resolved(by_commit[0].id, "commit")
    by_prefix = [r for r in newest_first if r.id.startswith(asked)]
    if len(by_prefix) == 1:
        return Resolved(by_prefix[0].id, "prefix")
    if len(by_prefix) > 1:
        names = ", ".join(r.describe() for r in by_prefix)
        raise UsageError(
            f"{option} {asked!r} matches {len(by_prefix)} releases of {env}: {names}",
            hint="give more of the release id",
        )
    raise UsageError(f"no release of {env} matches {option} {asked!r}", hint=_kept_hint(kept))


def _kept_hint(kept: Sequence[KeptRelease]) -> str:
    if not kept:
        return "no releases are kept on this host"
    return "releases kept: " + "; ".join(r.describe() for r in sorted(kept, key=lambda r: r.id))
