"""The local transport: commands run as subprocesses of the deployer, no shell."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from slipway.errors import TransportError
from slipway.transports.base import Handle, Transport


def _pump(stdout: IO[str] | None, lines: queue.Queue[str | None]) -> None:
    assert stdout is not None
    for line in stdout:
        lines.put(line.rstrip("\n"))
    lines.put(None)


class LocalHandle(Handle):
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._proc = proc
        self._lines: queue.Queue[str | None] = queue.Queue()
        # The reader holds the pipe, never this handle: a handle nobody keeps is
        # collected, its stdin closes and the command sees end of input.
        threading.Thread(target=_pump, args=(proc.stdout, self._lines), daemon=True).start()

    def readline(self, timeout: float) -> str | None:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def exit_code(self, timeout: float) -> int | None:
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def write(self, text: str) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(text)
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise TransportError(f"the command's stdin is closed: {exc}") from exc

    def close(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class LocalTransport(Transport):
    name = "local"

    def _run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None,
        cwd: str | None,
        stdin: bytes | None,
        timeout: float,
    ) -> tuple[int, str, str]:
        full_env = {**os.environ, **(env or {})}
        try:
            proc = subprocess.run(
                list(argv),
                input=stdin,
                capture_output=True,
                env=full_env,
                cwd=cwd,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode(errors="replace")
            return 124, out, f"timed out after {timeout:.0f}s"
        except FileNotFoundError:
            return 127, "", f"{argv[0]}: command not found"
        return (
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )

    def spawn(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Handle:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        except OSError as exc:
            raise TransportError(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
        return LocalHandle(proc)

    def put(self, local: Path, remote: str, *, mode: int = 0o644) -> None:
        self.put_bytes(local.read_bytes(), remote, mode=mode)

    def put_text(self, text: str, remote: str, *, mode: int = 0o644) -> None:
        self.put_bytes(text.encode(), remote, mode=mode)

    def put_bytes(self, data: bytes, remote: str, *, mode: int) -> None:
        target = Path(remote)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            try:
                os.write(fd, data)
                os.fchmod(fd, mode)
                os.fsync(fd)  # a journal entry must survive a reboot, not only a kill
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except OSError as exc:
            # On a read-only or full filesystem the clean-up fails too: report the cause.
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise TransportError(f"cannot write {remote}: {exc.strerror or exc}") from exc

    def tunnel(self, port: int) -> int:
        return port

    def close(self) -> None:
        self.close_channel()
