"""A small evaluator of GitHub Actions triggers, for testing generated workflows against
the design's trigger matrix (Appendix B) without GitHub.

It covers what the generated workflows use: ``push`` (branches / tags filters),
``pull_request`` (activity types, base-branch filter), ``workflow_dispatch``,
``workflow_run`` (chained on another workflow's completion, filtered on its head
branch), and job-level ``if:`` expressions with ``==``, ``!=``, ``&&``, ``||``, ``!``,
parentheses, string literals and ``github.*`` lookups. Filter globs follow GitHub's
rules for ``*`` (no ``/``), ``**`` and ``?``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PR_DEFAULT_TYPES = ("opened", "synchronize", "reopened")


@dataclass(frozen=True)
class Event:
    name: str  # push | pull_request | workflow_dispatch
    ref: str  # refs/heads/<b>, refs/tags/<t>, refs/pull/<n>/merge
    action: str | None = None  # pull_request activity
    base: str | None = None  # pull_request target branch
    head: str | None = None  # pull_request source branch


@dataclass
class Workflow:
    file: str
    name: str
    on: dict[str, Any]
    jobs: dict[str, Any] = field(default_factory=dict)


def load(directory: Path) -> list[Workflow]:
    found = []
    for path in sorted(directory.glob("*.yml")):
        data = yaml.safe_load(path.read_text())
        on = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as true
        if isinstance(on, str):
            on = {on: None}
        elif isinstance(on, list):
            on = {name: None for name in on}
        found.append(Workflow(path.name, data.get("name", path.stem), on, data.get("jobs", {})))
    return found


def glob_match(pattern: str, value: str) -> bool:
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            regex += ".*"
            i += 2
        elif pattern[i] == "*":
            regex += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            regex += "."
            i += 1
        else:
            regex += re.escape(pattern[i])
            i += 1
    return re.fullmatch(regex, value) is not None


def _filtered(spec: dict[str, Any] | None, key: str, value: str) -> bool:
    """True when ``value`` passes the ``key`` / ``key-ignore`` filters of ``spec``."""
    spec = spec or {}
    if key in spec:
        return any(glob_match(p, value) for p in spec[key])
    if f"{key}-ignore" in spec:
        return not any(glob_match(p, value) for p in spec[f"{key}-ignore"])
    return True


def triggered(w: Workflow, e: Event) -> bool:
    if e.name not in w.on:
        return False
    spec = w.on[e.name] or {}
    if e.name == "push":
        if e.ref.startswith("refs/heads/"):
            if "tags" in spec and "branches" not in spec:
                return False  # a tags-only filter ignores branch pushes
            return _filtered(spec, "branches", e.ref.removeprefix("refs/heads/"))
        if "branches" in spec and "tags" not in spec:
            return False  # a branches-only filter ignores tag pushes
        return _filtered(spec, "tags", e.ref.removeprefix("refs/tags/"))
    if e.name == "pull_request":
        types = spec.get("types", PR_DEFAULT_TYPES)
        return e.action in types and _filtered(spec, "branches", e.base or "")
    return e.name == "workflow_dispatch"


# --- job `if:` expressions -----------------------------------------------------------------

_TOKEN = re.compile(r"\s*(\(|\)|&&|\|\||==|!=|!|'(?:[^']|'')*'|[A-Za-z_][A-Za-z0-9_.\-]*(?:\(\))?)")


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    text = expression.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    tokens = []
    pos = 0
    while pos < len(text.rstrip()):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"cannot parse {text[pos:]!r}")
        tokens.append(match.group(1))
        pos = match.end()
    value, rest = _or(tokens, context)
    if rest:
        raise ValueError(f"unexpected {rest}")
    return value


def _or(t: list[str], c: dict[str, Any]) -> tuple[Any, list[str]]:
    left, t = _and(t, c)
    while t and t[0] == "||":
        right, t = _and(t[1:], c)
        left = left or right
    return left, t


def _and(t: list[str], c: dict[str, Any]) -> tuple[Any, list[str]]:
    left, t = _cmp(t, c)
    while t and t[0] == "&&":
        right, t = _cmp(t[1:], c)
        left = left and right
    return left, t


def _cmp(t: list[str], c: dict[str, Any]) -> tuple[Any, list[str]]:
    left, t = _unary(t, c)
    if t and t[0] in ("==", "!="):
        op = t[0]
        right, t = _unary(t[1:], c)
        same = str(left).lower() == str(right).lower()  # GitHub compares strings case-insensitively
        return (same if op == "==" else not same), t
    return left, t


def _unary(t: list[str], c: dict[str, Any]) -> tuple[Any, list[str]]:
    if t[0] == "!":
        value, rest = _unary(t[1:], c)
        return not value, rest
    if t[0] == "(":
        value, rest = _or(t[1:], c)
        return value, rest[1:]
    token, rest = t[0], t[1:]
    if token.startswith("'"):
        return token[1:-1].replace("''", "'"), rest
    if token.endswith("()"):
        return {"always()": True, "success()": True, "failure()": False}[token], rest
    value: Any = c
    for part in token.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value if value is not None else "", rest


def context_for(e: Event, run_of: Event | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {}
    if run_of is not None:
        event["workflow_run"] = {"conclusion": "success", "event": run_of.name}
    return {"github": {"event_name": e.name, "ref": e.ref, "event": event}}


def jobs_run(w: Workflow, ctx: dict[str, Any]) -> bool:
    return any("if" not in job or bool(evaluate(str(job["if"]), ctx)) for job in w.jobs.values())


def _head_branch(e: Event) -> str:
    if e.name == "pull_request":
        return e.head or ""
    return (
        e.ref.rsplit("/", 1)[-1]
        if e.ref.startswith("refs/tags/")
        else e.ref.removeprefix("refs/heads/")
    )


def started(workflows: list[Workflow], events: list[Event]) -> set[str]:
    """Names of the workflows whose jobs run for ``events`` (including chained runs)."""
    names: set[str] = set()
    for e in events:
        direct = [w for w in workflows if triggered(w, e) and jobs_run(w, context_for(e))]
        names |= {w.name for w in direct}
        for w in workflows:
            spec = w.on.get("workflow_run")
            if spec is None:
                continue
            upstream = [d for d in direct if d.name in spec.get("workflows", [])]
            if not upstream or "completed" not in spec.get("types", ["completed"]):
                continue
            if not _filtered(spec, "branches", _head_branch(e)):
                continue
            run_event = Event("workflow_run", e.ref)
            if jobs_run(w, context_for(run_event, run_of=e)):
                names.add(w.name)
    return names
