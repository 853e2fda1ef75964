"""``slipway release create vX.Y.Z``: a GitHub Release whose notes are the commits since
the previous version tag (from the local clone, so the notes match what was tested)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from slipway.errors import UsageError
from slipway.github.api import GitHub
from slipway.github.preflight import tag_commit, version


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def previous_tag(repo: Path, tag: str) -> str | None:
    """The newest version tag older than ``tag`` (by version, not by date)."""
    current = version(tag)
    older = [
        (v, name)
        for name in _git(repo, "tag", "--list", "v*").split()
        if (v := version(name)) is not None and current is not None and v < current
    ]
    return max(older)[1] if older else None


def notes(repo: Path, tag: str) -> str:
    previous = previous_tag(repo, tag)
    span = f"{previous}..{tag}" if previous else tag
    log = _git(repo, "log", "--no-merges", "--format=%h%x09%s%x09%an", span)
    lines = []
    for entry in log.splitlines():
        sha, subject, author = ([*entry.split("\t"), "", ""])[:3]
        lines.append(f"- {subject} ({sha}, {author})")
    heading = f"## Changes since {previous}" if previous else "## Changes"
    return "\n".join([heading, "", *(lines or ["- no commits"])]) + "\n"


def create(gh: GitHub, repo: Path, tag: str) -> dict[str, object]:
    if version(tag) is None:
        raise UsageError(f"{tag!r} is not a version tag like v1.2.3")
    if tag_commit(repo, tag) is None:
        raise UsageError(f"tag {tag} does not exist here", hint=f"git tag {tag} && git push --tags")
    return gh.create_release(tag, tag, notes(repo, tag))
