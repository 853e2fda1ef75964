"""The per-environment deploy lock on a host.

An ``flock`` held by a process whose stdin is this deployer (a pipe locally, an SSH
channel remotely): when the deployer exits, is killed with SIGKILL, or loses its
connection, the holder sees end-of-input, exits, and the kernel frees the lock. So no
stale lock blocks the next deploy (Kamal's ``mkdir`` lock did, for weeks), and a lock
that is really held is never broken. ``lock.json`` beside it says who holds it; it is
informational and rewritten by each holder.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

from slipway.commands import host as cmd
from slipway.errors import LockHeld, SlipwayError, UsageError
from slipway.state.host import Layout, read_text
from slipway.transports.base import Handle, Transport

PROBE_GRACE_SECONDS = 1.0
# The longest --lock-wait: a day (1e308 once overflowed a queue's timeout).
MAX_WAIT_SECONDS = 86400
# The detached job that stops a blue-green colour (a standby's end, or the colour an
# instant rollback left) labels the lock with this reason; commands wait for it.
DRAIN_REASON = "drain"
DRAIN_PATIENCE_SECONDS = 120.0


@dataclass(frozen=True)
class LockOwner:
    owner: str
    host: str
    pid: int
    ref: str
    reason: str
    started_at: float
    holder_pid: int = 0  # the process on the host whose life is the lock

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started_at))
        return f"{self.owner}@{self.host} (pid {self.pid}) since {when}: {self.reason} {self.ref}"


def read_owner(transport: Transport, layout: Layout) -> LockOwner | None:
    text = read_text(transport, layout.lock_info)
    if text is None:
        return None
    try:
        data: dict[str, Any] = json.loads(text)
        return LockOwner(**data)
    except (json.JSONDecodeError, TypeError):
        return None


def is_held(transport: Transport, layout: Layout) -> bool:
    """True when some process holds the lock right now (probe without taking it)."""
    probe = transport.run(
        ["flock", "-n", "-E", str(cmd.LOCK_BUSY_EXIT), layout.lock_file, "true"], check=False
    )
    return probe.exited == cmd.LOCK_BUSY_EXIT


class DeployLock:
    def __init__(self, transport: Transport, layout: Layout) -> None:
        self.transport = transport
        self.layout = layout
        self._handle: Handle | None = None

    def acquire(self, *, actor: str, ref: str, reason: str, wait: float = 0) -> LockOwner:
        if not 0 <= wait <= MAX_WAIT_SECONDS:  # NaN, inf and negatives too
            raise UsageError(
                f"invalid lock wait {wait!r}: it must be 0 to {MAX_WAIT_SECONDS} seconds"
            )
        self.transport.run(cmd.mkdir_p(self.layout.state_dir))
        # A probe (`slipway status`, `slipway lock`) holds the lock for a few ms: never
        # refuse a deploy because it met one.
        wait = max(wait, PROBE_GRACE_SECONDS)
        held = self._hold(wait)
        if not isinstance(held, tuple) and held is not None and held.reason == DRAIN_REASON:
            # The job stopping an old colour holds it for one drain: wait, not refuse.
            held = self._hold(max(wait, DRAIN_PATIENCE_SECONDS))
        if not isinstance(held, tuple):
            who = held.describe() if held else "an unknown deploy"
            raise LockHeld(
                f"environment {self.layout.env} is locked by {who}",
                hint="wait for it, pass --lock-wait SECONDS, or inspect with `slipway lock`",
            )
        self._handle, line = held
        try:
            return self._write_owner(line, actor, ref, reason)
        except BaseException:
            self.release()  # never keep a lock we could not label
            raise

    def _hold(self, wait: float) -> tuple[Handle, str] | LockOwner | None:
        """Start a lock holder: (its handle, its "locked" line) once it holds the lock,
        else the owner (None if unknown) of a lock that stayed busy ``wait`` seconds."""
        handle = self.transport.spawn(cmd.lock_holder(self.layout.lock_file, wait))
        line = handle.readline(timeout=wait + 30) or ""
        if line.startswith("locked "):
            return handle, line
        code = handle.exit_code(timeout=5)
        handle.close()
        if code == cmd.LOCK_BUSY_EXIT:
            return self._owner_soon()
        raise SlipwayError(f"could not take the deploy lock (flock exited {code})")

    def _owner_soon(self, patience: float = 2.0) -> LockOwner | None:
        """The holder's label; a holder that has just taken the lock writes it a moment
        later, so a missing label is re-read for a short while before "unknown"."""
        deadline = time.monotonic() + patience
        while True:
            owner = read_owner(self.transport, self.layout)
            if owner is not None or time.monotonic() >= deadline:
                return owner
            time.sleep(0.1)

    def _write_owner(self, line: str, actor: str, ref: str, reason: str) -> LockOwner:
        holder_pid = int(line.split()[1])
        owner = LockOwner(
            actor, socket.gethostname(), os.getpid(), ref, reason, time.time(), holder_pid
        )
        self.transport.put_text(json.dumps(asdict(owner)), self.layout.lock_info, mode=0o600)
        return owner

    def lost(self) -> bool:
        """True when the holder process has ended while this deploy still runs (a forced
        release): the lock may already belong to another command."""
        return self._handle is not None and self._handle.exit_code(timeout=0) is not None

    def release(self) -> None:
        if self._handle is not None:
            if not self.lost():  # a lost lock's label is the next holder's
                self.transport.run(cmd.remove_tree(self.layout.lock_info), check=False)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> DeployLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def force_release(transport: Transport, layout: Layout, timeout: float = 10) -> LockOwner | None:
    """End the process that holds the lock (a hung deployer); return who held it.

    Only for a deployer that is stuck but still connected: one that died has already
    released the lock by itself.
    """
    owner = read_owner(transport, layout)
    if not is_held(transport, layout):
        return None
    if owner is None or owner.holder_pid <= 0:
        raise SlipwayError(
            "the lock is held but lock.json does not say by which process",
            hint=f"find it with: fuser {layout.lock_file}",
        )
    transport.run(cmd.kill_process(owner.holder_pid), check=False)
    deadline = time.monotonic() + timeout
    while is_held(transport, layout):
        if time.monotonic() > deadline:
            raise SlipwayError(f"the lock is still held after stopping pid {owner.holder_pid}")
        time.sleep(0.1)
    transport.run(cmd.remove_tree(layout.lock_info), check=False)
    return owner
