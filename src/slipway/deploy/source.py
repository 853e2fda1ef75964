"""The git side of a deploy, run on the deployer: resolve a ref, archive the commit.

A release is built from ``git archive`` of the resolved commit, made locally and
uploaded. Why: the host needs no git, no repository credentials and no network, and the
release holds exactly the commit that was resolved (a ``git pull`` on the host can race
a push). The cost is one upload per deploy, small for an app's source.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from slipway.errors import SlipwayError, UsageError

# A git ref as a user types it: branch, tag, sha, HEAD~1. No leading '-', no '..',
# no spaces or shell characters.
_REF_RE = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/@^~-]{1,200}$")


def check_ref(ref: str) -> str:
    if not _REF_RE.fullmatch(ref):
        raise UsageError(
            f"invalid git ref {ref!r}",
            hint="use a branch, tag or commit (letters, digits, '.', '_', '-', '/', '^', '~')",
        )
    return ref


def _git(repo: Path, *args: str) -> str:
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise SlipwayError("git is not installed on this machine") from exc
    if result.returncode != 0:
        raise SlipwayError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


@dataclass(frozen=True)
class Source:
    repo: Path
    ref: str
    commit: str
    message: str
    committed_at: float

    def tree(self, path: str) -> str | None:
        """The git object id of ``path`` at this commit (None if absent): a content hash."""
        return _object_id(self.repo, self.commit, path)

    def read(self, path: str) -> str | None:
        """The text of the file ``path`` at this commit (None if absent)."""
        return _text(self.repo, self.commit, path)

    def files(self) -> list[tuple[str, str]]:
        """Every file at this commit as (path, git object id)."""
        return list(_listing(self.repo, self.commit))

    def paths(self) -> list[str]:
        """Every file's path at this commit (with :meth:`read`, a ``project.tree.Tree``)."""
        return [path for path, _ in self.files()]

    def archive(self) -> Path:
        fd, name = tempfile.mkstemp(prefix="slipway-", suffix=".tar")
        os.close(fd)
        _git(self.repo, "archive", "--format=tar", "-o", name, self.commit)
        return Path(name)


# A commit never changes, so what git says of one is kept: a deploy reads the same lock,
# manifest and package files at several steps (the stale-lock check, install, build, the
# rehearsal's inputs), each read otherwise two git processes.
@functools.lru_cache(maxsize=4096)
def _object_id(repo: Path, commit: str, path: str) -> str | None:
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{commit}:{path}")
    except SlipwayError:
        return None


@functools.lru_cache(maxsize=1024)
def _text(repo: Path, commit: str, path: str) -> str | None:
    if _object_id(repo, commit, path) is None:
        return None
    return _git(repo, "show", f"{commit}:{path}")


@functools.lru_cache(maxsize=16)
def _listing(repo: Path, commit: str) -> tuple[tuple[str, str], ...]:
    found = []
    for line in _git(repo, "ls-tree", "-r", "--full-tree", commit).splitlines():
        meta, path = line.split("\t", 1)
        found.append((path, meta.split()[2]))
    return tuple(found)


def working_tree_commit(repo: Path) -> str | None:
    """The working tree's tracked changes as a commit object (``git stash create``
    writes one and changes nothing else: no stash entry, no index), or None when the
    tree is clean."""
    try:
        made = _git(repo, "stash", "create")
    except SlipwayError as exc:
        raise UsageError(f"{repo} is not a git repository with a commit", hint=str(exc)) from exc
    return made or None


def resolve(repo: Path, ref: str) -> Source:
    check_ref(ref)
    try:
        commit = _git(repo, "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}")
    except SlipwayError as exc:
        raise UsageError(f"cannot resolve {ref!r} in {repo}", hint=str(exc)) from exc
    message = _git(repo, "log", "-1", "--format=%s", commit)
    committed_at = float(_git(repo, "log", "-1", "--format=%ct", commit))
    return Source(repo, ref, commit, message, committed_at)


def release_id(source: Source, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{source.commit[:8]}"
