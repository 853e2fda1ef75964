"""Filesystem, archive and lock commands on a host."""

from __future__ import annotations

Argv = list[str]

# The lock holder: takes an flock (non-blocking, or waiting `wait` seconds), says
# "locked", then holds the lock while its stdin stays open. When the deployer dies or
# its SSH connection drops, stdin closes, `cat` exits and the kernel frees the lock: no
# stale lock to clear by hand, and a held lock is never broken.
LOCK_HOLDER_SCRIPT = 'echo "locked $$"; exec cat >/dev/null'
LOCK_BUSY_EXIT = 75


def mkdir_p(*paths: str) -> Argv:
    return ["mkdir", "-p", "--", *paths]


def chmod(mode: str, path: str) -> Argv:
    return ["chmod", mode, "--", path]


def remove_tree(path: str) -> Argv:
    return ["rm", "-rf", "--", path]


def extract_tar(archive: str, dest: str) -> Argv:
    return ["tar", "-x", "-f", archive, "-C", dest]


def symlink_temp(target: str, link: str) -> Argv:
    """First half of an atomic symlink switch: a new link beside the old one."""
    return ["ln", "-sfn", target, f"{link}.new"]


def rename_over(source: str, dest: str) -> Argv:
    """``mv -T``: rename(2) over the destination, atomic on one filesystem."""
    return ["mv", "-T", "--", source, dest]


def readlink(path: str) -> Argv:
    return ["readlink", "--", path]


def list_dir(path: str) -> Argv:
    return ["ls", "-1", "--", path]


def hardlink_copy(source: str, dest: str) -> Argv:
    """Copy a tree as hard links: an unchanged node_modules or build costs almost nothing."""
    return ["cp", "-al", "--", source, dest]


def lock_holder(lock_file: str, wait_seconds: float = 0) -> Argv:
    timing = ["-w", f"{wait_seconds:g}"] if wait_seconds > 0 else ["-n"]
    return [
        "flock",
        *timing,
        "-E",
        str(LOCK_BUSY_EXIT),
        lock_file,
        "sh",
        "-c",
        LOCK_HOLDER_SCRIPT,
    ]


def kill_process(pid: int) -> Argv:
    return ["kill", "-TERM", str(int(pid))]


def python_script(script: str) -> Argv:
    return ["python3", "-c", script]


def detached(log_file: str, argv: Argv) -> Argv:
    """Run ``argv`` in the background, outliving this command (and an SSH channel): its
    output goes to ``log_file``, so nothing keeps the caller's pipes open. ``argv`` is
    passed as positional parameters, never pasted into the shell text."""
    return ["sh", "-c", 'log=$1; shift; exec "$@" </dev/null >>"$log" 2>&1', "sh", log_file, *argv]
