"""The transport interface and the result of running a command (shaped like Invoke's)."""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from slipway.errors import CommandFailed
from slipway.secrets import Masker

DEFAULT_TIMEOUT = 600.0


@dataclass(frozen=True)
class Result:
    """What a finished command left behind. ``command`` is masked (it is shown in
    errors); ``stdout`` and ``stderr`` are the host's raw output, because slipway parses
    them: mask them (``transport.masker``) before anyone reads them."""

    command: str
    exited: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exited == 0

    def tail(self, lines: int = 15) -> str:
        """The last lines of output (stderr after stdout), for error messages."""
        text = (self.stdout.rstrip() + "\n" + self.stderr.rstrip()).strip()
        return "\n".join(text.splitlines()[-lines:])


class Handle(ABC):
    """A long-running command (e.g. the lock holder) whose life the caller controls."""

    @abstractmethod
    def readline(self, timeout: float) -> str | None:
        """One line of stdout, or None at end of output / timeout."""

    @abstractmethod
    def exit_code(self, timeout: float) -> int | None:
        """The exit code once finished, waiting at most ``timeout`` (0: a poll that never
        blocks); None if still running."""

    @abstractmethod
    def write(self, text: str) -> None:
        """Send ``text`` to the command's stdin (flushed)."""

    @abstractmethod
    def close(self) -> None:
        """End the command (closing its stdin; killing it if needed)."""


class Channel(Protocol):
    """A resident helper on the host answering requests (``slipway.state.agent``)."""

    def request(self, request: dict[str, Any], timeout: float) -> dict[str, Any]: ...

    def close(self) -> None: ...


class Transport(ABC):
    """Runs argv lists on one host. Never builds a command from a string."""

    name: str

    def __init__(self, masker: Masker | None = None) -> None:
        self.masker = masker or Masker()
        # The host's resident helper, once a context has said where it lives.
        self.channel: Channel | None = None

    def close_channel(self) -> None:
        """Stop the resident helper (its stdin closes; it exits)."""
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.close()

    @abstractmethod
    def _run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None,
        cwd: str | None,
        stdin: bytes | None,
        timeout: float,
    ) -> tuple[int, str, str]:
        """Run and return (exit code, stdout, stderr); 124 on timeout."""

    @abstractmethod
    def spawn(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Handle:
        """Start a long-running command with a stdin pipe held open by this process."""

    @abstractmethod
    def put(self, local: Path, remote: str, *, mode: int = 0o644) -> None:
        """Copy a local file to the host."""

    @abstractmethod
    def put_text(self, text: str, remote: str, *, mode: int = 0o644) -> None:
        """Write ``text`` to a file on the host, atomically (temp + rename)."""

    @abstractmethod
    def tunnel(self, port: int) -> int:
        """A local port that reaches 127.0.0.1:``port`` on the host."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and tunnels."""

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
    ) -> Result:
        """Run ``argv``; raise CommandFailed (its text masked) when ``check`` and it fails.

        The result's output is not masked: an env value such as ``false`` or ``null``
        must never change what slipway reads back from a host."""
        if not argv:
            raise ValueError("empty command")
        command = self.masker(shlex.join(argv))
        code, out, err = self._run(argv, env=env, cwd=cwd, stdin=stdin, timeout=timeout)
        result = Result(command, code, out, err)
        if check and not result.ok:
            raise CommandFailed(command, code, self.masker(result.tail()))
        return result

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
