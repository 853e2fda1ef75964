"""Reports on GitHub: one PR comment per pull request (created once, then updated on
each push, found by a hidden marker), and the coverage of a pushed commit published as
a commit status so a later PR can compare against its base branch."""

from __future__ import annotations

import re

from slipway.gates import Report, markdown
from slipway.github.api import GitHub

MARKER = "<!-- slipway:gates -->"
COVERAGE_CONTEXT = "slipway/coverage"
_COVERAGE_RE = re.compile(r"coverage ([0-9]+(?:\.[0-9]+)?)%")


def publish_coverage(gh: GitHub, sha: str, report: Report) -> None:
    if report.coverage is None:
        return
    state = "success" if report.ok else "failure"
    gh.create_status(sha, state, COVERAGE_CONTEXT, f"coverage {report.coverage}%")


def base_coverage(gh: GitHub, sha: str) -> float | None:
    """The coverage CI published on ``sha`` (the PR's base), if any."""
    for status in gh.combined_status(sha).get("statuses", []):
        if status.get("context") == COVERAGE_CONTEXT:
            match = _COVERAGE_RE.search(status.get("description") or "")
            if match:
                return float(match[1])
    return None


def upsert_comment(gh: GitHub, pr: int, report: Report, base_sha: str | None) -> tuple[str, int]:
    """Create the PR's gates comment, or update the one already there: ("created"|"updated", id)."""
    base = base_coverage(gh, base_sha) if base_sha else None
    body = f"{MARKER}\n{markdown(report, base)}"
    for comment in gh.issue_comments(pr):
        if MARKER in (comment.get("body") or ""):
            gh.update_comment(int(comment["id"]), body)
            return "updated", int(comment["id"])
    created = gh.create_comment(pr, body)
    return "created", int(created["id"])
