"""Python environments shared between releases whose dependencies are the same.

A release's ``.venv`` is a symlink to ``shared/venvs/<key>``, where the key hashes what
decides the environment's contents: every python process's lock file (its git object
id) and the ``.python-version`` files uv reads to pick the interpreter. A warm redeploy
whose lock did not change then costs one symlink instead of ``uv venv`` + ``uv pip
install`` (0.5 s for the example app, more for a real one). Capistrano shares its gem
bundle across releases the same way.

Why the environment is made at its final path rather than moved there: a virtualenv
holds absolute paths (script shebangs, ``activate``), so it cannot be renamed. A
marker file written last says it is complete; one without it (a deploy killed while
installing) is removed and made again. Nothing installs into a shared environment once
it is complete, so releases stay immutable. A lock naming a local path (``-e .``,
``file:``) installs the release's own code, which differs per release, and one that
pulls in other files (``-r``, ``-c``) changes without its own hash changing; a python
process with its own ``install`` or ``build`` command would install into the shared
environment: those releases keep their own environment, as before.

What installs a process is read from the repository at the commit
(:mod:`slipway.project.python`): a ``uv.lock`` is synced with ``uv sync --frozen``, a
``poetry.lock`` or a pyproject's pinned dependencies become a requirements file of pins
installed with ``uv pip``, a requirements file is installed as it is. A project that is
itself a package (its code installed into the environment) keeps its own environment.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from slipway.commands import build as build_cmd
from slipway.commands import host as cmd
from slipway.config.model import ProcessConfig, ProcessKind
from slipway.errors import SlipwayError
from slipway.project.python import (
    PythonDeps,
    detect_python,
    pinned_requirements,
    relative_to,
)
from slipway.state.host import read_link

if TYPE_CHECKING:
    from slipway.deploy.context import HostContext
    from slipway.deploy.source import Source

COMPLETE = ".slipway-complete"
VENVS = "venvs"


def python_processes(d: HostContext) -> list[ProcessConfig]:
    return [p for p in d.config.processes.values() if p.kind is ProcessKind.PYTHON]


# A uv.lock source that is a directory of the repository (a workspace member, a path
# dependency): uv installs it editable, pointing into the release that made the
# environment, so another release must never run from that environment.
_LOCAL_SOURCE = re.compile(r"^source = \{ (?:editable|directory|path) = ", re.MULTILINE)


def installs_local_code(text: str) -> bool:
    """Does a lock install from a path (the release's own code), or pull in another file
    (``-r``/``-c``) whose changes its own hash would not show?"""
    if _LOCAL_SOURCE.search(text):
        return True
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith(("-e", "--editable", ".", "/", "file:")) or "file:" in line:
            return True
        if line.startswith(("-r", "-c", "--requirement", "--constraint")):
            return True
    return False


def dependencies(source: Source, process: ProcessConfig) -> PythonDeps | None:
    """What installs ``process``, as the repository says at this commit."""
    return detect_python(source, process.workdir, process.requirements)


def venv_key(d: HostContext, source: Source) -> str | None:
    """What decides the environment's contents, hashed; None when it must not be shared."""
    parts: list[str] = []
    if any(p.install or p.build for p in python_processes(d)):
        return None  # its own commands would install into an environment others use
    for process in python_processes(d):
        pin = ".python-version" if process.workdir == "." else f"{process.workdir}/.python-version"
        parts.append(f"{process.workdir}\0{pin}\0{source.tree(pin)}")
        try:
            deps = dependencies(source, process)
        except SlipwayError:
            return None  # a missing lock: never shared (a deploy refuses it first)
        if deps is None:
            continue
        if deps.package:
            return None  # the environment holds the release's own code
        text = source.read(deps.file)
        if text is None or installs_local_code(text):
            return None
        if deps.kind == "requirements":  # the key releases had before lock detection
            parts.append(f"{relative_to(deps.file, deps.workdir)}\0{source.tree(deps.file)}")
            continue
        inputs = [deps.file, f"{deps.workdir}/pyproject.toml".removeprefix("./")]
        parts.append(f"{deps.kind}\0" + "\0".join(f"{f}={source.tree(f)}" for f in inputs))
    parts.append(source.tree(".python-version") or "")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def shared_path(d: HostContext, key: str) -> str:
    return f"{d.layout.shared}/{VENVS}/{key}"


def is_complete(d: HostContext, path: str) -> bool:
    """Marked complete, and its interpreter still exists (``test -e`` follows the
    ``bin/python`` symlink to the base Python, which an upgrade can remove)."""
    probe = ["test", "-e", f"{path}/{COMPLETE}", "-a", "-e", f"{path}/bin/python"]
    return d.transport.run(probe, check=False).ok


def create(d: HostContext, source: Source, release: str, path: str) -> None:
    """Make the environment at ``path`` (an incomplete one there is removed first)."""
    d.run(cmd.remove_tree(path))
    d.run(cmd.mkdir_p(path.rsplit("/", 1)[0]))
    make_at(d, source, release, path)
    d.run(["touch", "--", f"{path}/{COMPLETE}"])


def make_at(d: HostContext, source: Source, release: str, path: str) -> None:
    """``uv venv``, then each python process's dependencies installed into ``path``."""
    for name, process in d.config.processes.items():
        if process.kind is not ProcessKind.PYTHON:
            continue
        workdir = d.workdir(release, process)
        d.run(build_cmd.uv_venv(path), cwd=workdir)
        deps = None if process.install else dependencies(source, process)
        if deps is not None:  # else its own install command runs at the install step
            argv = install_argv(d, source, release, name, deps, path)
            # ``uv sync`` installs into "the project's environment": this one.
            d.run(argv, cwd=workdir, env_extra={"UV_PROJECT_ENVIRONMENT": path}, timeout=900)


def install_argv(
    d: HostContext, source: Source, release: str, name: str, deps: PythonDeps, venv: str
) -> list[str]:
    """The command that installs ``deps`` into ``venv``, run in the process's directory."""
    if deps.kind == "uv-lock":
        return build_cmd.uv_sync(venv, install_project=deps.package)
    if deps.kind == "requirements":
        return build_cmd.uv_install(venv, relative_to(deps.file, deps.workdir))
    pins = f"{d.layout.release(release)}/.slipway-pins-{name}.txt"
    d.transport.put_text(pinned_requirements(source, deps), pins)
    return build_cmd.uv_install(venv, pins)


def install(d: HostContext, source: Source, release: str) -> str:
    """The release's ``.venv``: linked to a shared environment when one fits (made if
    missing), else made inside the release. Returns what was done, for the output."""
    if not python_processes(d):
        return ""
    venv = f"{d.layout.release(release)}/.venv"
    key = venv_key(d, source)
    if key is None:
        make_at(d, source, release, venv)
        return "own environment (the lock installs the release's code)"
    path = shared_path(d, key)
    reused = is_complete(d, path)
    if not reused and key in linked(d, d.list_releases()):
        # Incomplete yet linked (its base Python went away): never remove what a
        # kept release runs from; this release gets its own.
        make_at(d, source, release, venv)
        return f"own environment (shared environment {key[:12]} is broken and in use)"
    if not reused:
        create(d, source, release, path)
    d.save_meta(release, venv=key)  # before the link: prune trusts either
    d.run(["ln", "-sfn", "--", path, venv])
    return (
        f"lock unchanged, shared environment {key[:12]} reused"
        if reused
        else (f"shared environment {key[:12]} made")
    )


def linked(d: HostContext, releases: list[str]) -> set[str]:
    """The shared environments ``releases`` use: named in their metadata or pointed at
    by their ``.venv`` symlink (either is enough to keep one)."""
    found: set[str] = set()
    prefix = f"{d.layout.shared}/{VENVS}/"
    for release in releases:
        key = d.release_meta(release).get("venv")
        if isinstance(key, str):
            found.add(key)
        target = read_link(d.transport, f"{d.layout.release(release)}/.venv")
        if target and target.startswith(prefix):
            found.add(target.removeprefix(prefix).split("/", 1)[0])
    return found


def prune(d: HostContext, kept: list[str]) -> list[str]:
    """Remove shared environments no kept release links to. The completion marker
    goes first, so one removed halfway (a kill, a reboot) is never taken as whole."""
    wanted = linked(d, kept)
    listing = d.transport.run(["ls", "-1", "--", f"{d.layout.shared}/{VENVS}"], check=False)
    if not listing.ok:
        return []
    doomed = [name for name in listing.stdout.split() if name and name not in wanted]
    for name in doomed:
        path = f"{d.layout.shared}/{VENVS}/{name}"
        d.run(["rm", "-f", "--", f"{path}/{COMPLETE}"])
        d.run(cmd.remove_tree(path))
    return doomed
