"""The files of a repository, at a commit or in a working directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from slipway.errors import UsageError

# Directories that hold what an install or a build made, never the app's own sources.
SKIPPED_DIRS = frozenset(
    {".git", "node_modules", ".venv", "venv", "__pycache__", ".next", ".mypy_cache", ".tox"}
)


class Tree(Protocol):
    """Read-only access to a repository's files by their path from its root ('/'-separated)."""

    def read(self, path: str) -> str | None:
        """The file's text, or None when there is no such file."""

    def paths(self) -> list[str]:
        """Every file's path, from the repository's root."""


# More files than any app's repository has (installs and builds are skipped): a
# directory like ``/`` or a home directory, whose reading would never end.
MAX_FILES = 50_000


class DirTree:
    """A working directory as a :class:`Tree` (what ``slipway init`` reads)."""

    def __init__(self, root: Path, max_files: int | None = None) -> None:
        self.root = root
        self.max_files = max_files or MAX_FILES

    def read(self, path: str) -> str | None:
        target = self.root / path
        if not target.is_file():
            return None
        try:
            return target.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def paths(self) -> list[str]:
        found: list[str] = []
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
            base = Path(folder).relative_to(self.root)
            found += [(base / name).as_posix() for name in sorted(files)]
            if len(found) > self.max_files:
                raise UsageError(
                    f"{self.root} holds more than {self.max_files:,} files besides installs"
                    " and builds: it does not look like an app's repository",
                    hint="run slipway init in the app's repository (its root directory)",
                )
        return found


class DictTree:
    """Files held in memory as a :class:`Tree` (tests, and files already read)."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = dict(files)

    def read(self, path: str) -> str | None:
        return self.files.get(path)

    def paths(self) -> list[str]:
        return sorted(self.files)
