"""``slipway check --deep``: the configuration against the repository at a ref.

A configuration can be valid and still not fit the app: a requirements file that does
not exist, a lock that no longer matches its pyproject, a health check on a route the
app does not have, a variable next.config.js reads at build time that nothing sets.
Each of these used to surface half way through a deploy (or never: a check on a
missing route fails every gate). Everything here reads files at the commit through a
:class:`~slipway.project.tree.Tree`; nothing of the app is imported or run, except uv
itself, offline, to say whether a ``uv.lock`` is fresh.

The deploy runs :func:`lock_issues` before it takes the lock: a stale lock is refused
before anything changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from slipway.config.model import ProcessConfig, ProcessKind, SlipwayConfig
from slipway.errors import ConfigIssue, SlipwayError
from slipway.project import fastapi, node, python
from slipway.project.tree import Tree

# Variables a build always has (or that Next sets itself): never the user's to set.
BUILD_GIVEN = frozenset({"NODE_ENV", "NEXT_TELEMETRY_DISABLED", "PATH", "HOME", "CI", "PWD"})
TODO_MARK = "TODO(slipway)"


@dataclass
class DeepReport:
    """What ``check --deep`` found: errors (exit 2) and warnings (printed)."""

    errors: list[ConfigIssue] = field(default_factory=list)
    warnings: list[ConfigIssue] = field(default_factory=list)


def lock_issues(config: SlipwayConfig, tree: Tree) -> list[ConfigIssue]:
    """Every process's dependency source: present, and its lock fresh."""
    issues: list[ConfigIssue] = []
    for name, process in config.processes.items():
        where = f"processes.{name}"
        try:
            issues += [ConfigIssue(where, p) for p in _stale(tree, process)]
        except SlipwayError as exc:
            issues.append(ConfigIssue(where, exc.message, exc.hint))
    return issues


def _stale(tree: Tree, process: ProcessConfig) -> list[str]:
    if process.kind is ProcessKind.PYTHON:
        if process.install:
            return []  # its own command installs it: slipway reads no lock
        deps = python.detect_python(tree, process.workdir, process.requirements)
        if deps is None:
            return []
        if deps.kind in ("poetry-lock", "pyproject"):
            python.pinned_requirements(tree, deps)  # what cannot be pinned raises here
        return python.stale_problems(tree, deps)
    found = node.detect_node(tree, process.workdir)
    return node.stale_problems(tree, found) if found is not None else []


def install_plan(config: SlipwayConfig, tree: Tree) -> str:
    """What the install step does for each process at this commit, for ``slipway plan``."""
    parts = []
    for name, process in config.processes.items():
        parts.append(f"{name}: {_install_text(tree, process)}")
    return "; ".join(parts)


def _install_text(tree: Tree, process: ProcessConfig) -> str:
    if process.install:
        return f"its own command ({' '.join(process.install)})"
    try:
        if process.kind is ProcessKind.PYTHON:
            deps = python.detect_python(tree, process.workdir, process.requirements)
            if deps is None:
                return "no dependencies found"
            where = (
                "its own virtualenv (the project is a package)"
                if deps.package
                else "a virtualenv shared by releases of one lock"
            )
            return f"{where}, {deps.describe()}"
        found = node.detect_node(tree, process.workdir)
    except SlipwayError as exc:
        return f"cannot install: {exc.message}"
    if found is None:
        return "no package.json found"
    reuse = " (node_modules reused while the lock is unchanged)" if found.lock else ""
    return f"{' '.join(found.install)}{reuse}"


def unverified(issue: ConfigIssue) -> bool:
    """A lock whose freshness could not be told (no uv here, no fitting interpreter, a
    timeout): not known to be stale."""
    return issue.message.startswith("cannot check ")


def refuse_stale_locks(config: SlipwayConfig, tree: Tree, ref: str) -> list[str]:
    """Raise before a deploy changes anything when a lock file does not fit. A lock that
    could not be checked is returned as a warning instead: refusing it would block an
    emergency redeploy of a known-good release from a machine without uv."""
    found = lock_issues(config, tree)
    issues = [i for i in found if not unverified(i)]
    if issues:
        lines = "\n".join(f"  - {issue.render()}" for issue in issues)
        raise SlipwayError(
            f"{ref}: the release's dependencies cannot be installed as locked:\n{lines}",
            hint="regenerate the lock as said, commit it, and deploy that commit",
        )
    return [issue.render() for issue in found if unverified(issue)]


def deep_report(config: SlipwayConfig, tree: Tree) -> DeepReport:
    """Everything ``check --deep`` checks, at one commit."""
    report = DeepReport(errors=lock_issues(config, tree))
    paths = set(tree.paths())
    for name, process in config.processes.items():
        where = f"processes.{name}"
        if process.workdir != "." and not any(p.startswith(f"{process.workdir}/") for p in paths):
            report.errors.append(
                ConfigIssue(f"{where}.workdir", f"{process.workdir}/ is not in the repository")
            )
            continue
        if process.kind is ProcessKind.PYTHON:
            _python_warnings(report, tree, where, process)
        elif process.kind is ProcessKind.NODE:
            _check_next(report, tree, where, process)
    _check_routes(report, config, tree)
    return report


def _python_warnings(report: DeepReport, tree: Tree, where: str, process: ProcessConfig) -> None:
    try:
        deps = python.detect_python(tree, process.workdir, process.requirements)
    except SlipwayError:
        return  # already an error from lock_issues
    if deps is None:
        report.warnings.append(
            ConfigIssue(
                where,
                f"no dependencies found in {process.workdir}"
                " (uv.lock, poetry.lock, requirements, pyproject)",
            )
        )
        return
    report.warnings += [ConfigIssue(where, w) for w in deps.warnings]


def _check_next(report: DeepReport, tree: Tree, where: str, process: ProcessConfig) -> None:
    app = node.read_next(tree, process.workdir)
    if app is None:
        return
    given = set(process.build_env) | BUILD_GIVEN
    for var in app.build_env:
        if var not in given and not var.startswith("NEXT_PUBLIC_"):
            report.errors.append(
                ConfigIssue(
                    f"{where}.build_env",
                    f"{app.config} reads {var} at build time but build_env does not set it",
                    hint=f'add {var} = "..." (e.g. "{{backend_port}}") to build_env',
                )
            )
    for var in sorted(
        set(app.public_env) | {v for v in app.build_env if v.startswith("NEXT_PUBLIC_")}
    ):
        if var not in given:
            report.warnings.append(
                ConfigIssue(
                    f"{where}.build_env",
                    f"the frontend uses {var}, which build_env does not set"
                    " (it builds as undefined)",
                )
            )


def _check_routes(report: DeepReport, config: SlipwayConfig, tree: Tree) -> None:
    backend = config.processes.get("backend")
    frontend = config.processes.get("frontend")
    app = None
    if backend is not None and backend.kind is ProcessKind.PYTHON:
        app = fastapi.find_app(tree, backend.workdir if backend.workdir != "." else "")
        if app is None:
            report.warnings.append(
                ConfigIssue("processes.backend", "no FastAPI app found: its routes are not checked")
            )
    # The Next app's directory, read once (it scans every source for NEXT_PUBLIC_*).
    next_dir = (
        frontend.workdir
        if frontend is not None and node.read_next(tree, frontend.workdir) is not None
        else None
    )
    checks = [("health.basic", c) for c in config.health.basic]
    checks += [("health.comprehensive", c) for c in config.health.comprehensive]
    for level, check in checks:
        where = f"{level}[{check.name}]"
        if (
            check.process == "backend"
            and app is not None
            and not fastapi.route_exists(app, check.path)
        ):
            report.errors.append(_missing(where, check.path, "the backend", app.file))
        if (
            check.process == "frontend"
            and next_dir is not None
            and not next_route_exists(tree, next_dir, check.path)
        ):
            report.errors.append(_missing(where, check.path, "the Next.js app", next_dir))
    if (
        backend is not None
        and app is not None
        and not fastapi.route_exists(app, backend.health_path)
    ):
        report.errors.append(
            _missing("processes.backend.health_path", backend.health_path, "the backend", app.file)
        )
    socket = config.health.websocket
    if socket is not None and app is not None:
        paths = {r.path for r in app.websockets()}
        if socket.path not in paths:
            report.errors.append(
                ConfigIssue(
                    "health.websocket.path",
                    f"{socket.path} is not a WebSocket route of the backend",
                    hint=f"its WebSocket routes: {', '.join(sorted(paths)) or 'none'}",
                )
            )


def _missing(where: str, path: str, what: str, file: str) -> ConfigIssue:
    return ConfigIssue(where, f"{path} is not a route of {what} ({file})")


def next_route_exists(tree: Tree, workdir: str, path: str) -> bool:
    """Does the Next.js app answer ``path``: an app-router ``page``/``route`` file, a
    pages-router file, or a public file? Dynamic segments (``[id]``) match any segment."""
    path = path.split("?", 1)[0].strip("/")
    base = "" if workdir == "." else f"{workdir}/"
    candidates: list[str] = []
    for root in ("app", "src/app"):
        candidates.append(f"{root}/{path}/page" if path else f"{root}/page")
        candidates.append(f"{root}/{path}/route" if path else f"{root}/route")
    for root in ("pages", "src/pages"):
        candidates.append(f"{root}/{path}" if path else f"{root}/index")
        candidates.append(f"{root}/{path}/index")
    if path:
        candidates.append(f"public/{path}")
    patterns = [_route_pattern(base + c) for c in candidates]
    return any(p.fullmatch(name) for name in tree.paths() for p in patterns)


def _route_pattern(candidate: str) -> re.Pattern[str]:
    """``app/api/health/route`` matches ``app/api/health/route.ts``, ``app/(group)/api/...``
    and ``app/api/[name]/route.js``; a page file may end in any script extension."""
    parts = [rf"(?:{re.escape(part)}|\[[^/]+\])" for part in candidate.split("/")]
    body = "/(?:\\([^/]+\\)/)*".join(parts)
    ext = "" if "/public/" in f"/{candidate}" else r"\.(?:js|jsx|ts|tsx|mjs)"
    return re.compile(body + ext)


def todo_lines(text: str) -> list[tuple[int, str]]:
    """The ``TODO(slipway)`` markers ``slipway init`` left in a configuration file."""
    return [
        (number, line.split(TODO_MARK, 1)[1].strip(" :"))
        for number, line in enumerate(text.splitlines(), start=1)
        if TODO_MARK in line
    ]
