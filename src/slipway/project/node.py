"""A node process's package manager and lock, and what a Next.js app needs at build time.

The frontend installs with whatever its repository uses (npm, pnpm or yarn, told by the
``packageManager`` field or by the lock file present), and with that tool's "install
exactly the lock" flag, so a deploy never resolves versions afresh on the host. A lock
that no longer matches package.json would make that install fail half-way through a
deploy; it is caught here first, on the deployer's machine, by reading both files.

Next.js reads environment variables while it builds (``next.config.*`` and every
``NEXT_PUBLIC_*`` name are baked into the bundle): slipway must know them to give the
build the right values, so they are read from the sources, never by running them.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from slipway.errors import SlipwayError
from slipway.project.tree import SKIPPED_DIRS, Tree

Manager = Literal["npm", "pnpm", "yarn"]

# When several locks sit side by side, the more specific tool's wins: a stray
# package-lock.json is what running `npm install` by mistake leaves behind.
LOCKS: tuple[tuple[str, Manager], ...] = (
    ("pnpm-lock.yaml", "pnpm"),
    ("yarn.lock", "yarn"),
    ("package-lock.json", "npm"),
    ("npm-shrinkwrap.json", "npm"),
)
FROZEN: dict[str, tuple[str, ...]] = {
    "npm": ("npm", "ci", "--no-audit", "--no-fund"),
    "pnpm": ("pnpm", "install", "--frozen-lockfile"),
    "yarn": ("yarn", "install", "--frozen-lockfile", "--non-interactive"),
    "berry": ("yarn", "install", "--immutable"),
}
UNLOCKED: dict[str, tuple[str, ...]] = {
    "npm": ("npm", "install", "--no-audit", "--no-fund"),
    "pnpm": ("pnpm", "install", "--no-frozen-lockfile"),
    "yarn": ("yarn", "install", "--non-interactive"),
    "berry": ("yarn", "install"),
}
LOCK_NAMES = {"npm": "package-lock.json", "pnpm": "pnpm-lock.yaml", "yarn": "yarn.lock"}
DEPENDENCY_KEYS = ("dependencies", "devDependencies", "optionalDependencies")


@dataclass(frozen=True)
class NodeDeps:
    """How one node process installs its packages."""

    manager: Manager
    workdir: str
    lock: str | None  # repo-relative lock file; None when none is committed
    install: tuple[str, ...]  # argv, run in the workdir
    warnings: tuple[str, ...] = ()


# --- paths and files ------------------------------------------------------------------


def normalize_dir(workdir: str) -> str:
    clean = posixpath.normpath(workdir.strip() or ".")
    return "." if clean in ("", ".") else clean.removeprefix("./")


def join(workdir: str, name: str) -> str:
    return name if workdir == "." else f"{workdir}/{name}"


def where(workdir: str) -> str:
    return "at the repository's root" if workdir == "." else f"in {workdir}"


def ancestors(workdir: str) -> Iterator[str]:
    """``workdir``, then each directory above it up to the repository's root."""
    current = workdir
    while True:
        yield current
        if current == ".":
            return
        current = posixpath.dirname(current) or "."


def exists(tree: Tree, path: str) -> bool:
    return tree.read(path) is not None  # an empty file is there too


def read_json(tree: Tree, path: str) -> dict[str, Any] | None:
    """A JSON object, None when absent; invalid JSON is the app's error, said here."""
    text = tree.read(path)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SlipwayError(f"{path} is not valid JSON: {exc}", hint="fix it and commit") from exc
    return data if isinstance(data, dict) else {}


def section(data: dict[str, Any], key: str) -> dict[str, str]:
    found = data.get(key)
    if not isinstance(found, dict):
        return {}
    return {str(k): str(v) for k, v in found.items()}


# --- detection ------------------------------------------------------------------------


def detect_node(tree: Tree, workdir: str) -> NodeDeps | None:
    """The package manager, lock and install command of the node process in ``workdir``;
    None without a package.json. ``packageManager`` ("pnpm@9.1.0") wins over the locks."""
    workdir = normalize_dir(workdir)
    package = read_json(tree, join(workdir, "package.json"))
    if package is None:
        return None
    declared = declared_manager(package)
    locks = find_locks(tree, workdir)
    warnings: list[str] = []
    if len(locks) > 1 and declared is None:
        names = ", ".join(path for path, _ in locks)
        warnings.append(f"several lock files ({names}): {locks[0][0]} decides; remove the others")
    chosen = choose_lock(locks, declared)
    manager: Manager = declared[0] if declared else (chosen[1] if chosen else "npm")
    lock = chosen[0] if chosen else None
    flavour = yarn_flavour(tree, lock, declared) if manager == "yarn" else manager
    if lock is None:
        warnings.append(no_lock_warning(workdir, manager))
        return NodeDeps(manager, workdir, None, UNLOCKED[flavour], tuple(warnings))
    return NodeDeps(manager, workdir, lock, FROZEN[flavour], tuple(warnings))


def declared_manager(package: dict[str, Any]) -> tuple[Manager, str] | None:
    """``packageManager``'s tool and version ("yarn@4.1.0+sha512..." -> yarn, 4.1.0)."""
    field = package.get("packageManager")
    if not isinstance(field, str) or "@" not in field:
        return None
    name, _, version = field.partition("@")
    managers: dict[str, Manager] = {"npm": "npm", "pnpm": "pnpm", "yarn": "yarn"}
    manager = managers.get(name.strip())
    return (manager, version.split("+", 1)[0]) if manager else None


def find_locks(tree: Tree, workdir: str) -> list[tuple[str, Manager]]:
    """The locks beside package.json, else those of the workspace root above it (a
    monorepo keeps one lock at its root)."""
    for folder in ancestors(workdir):
        if folder != workdir and not is_workspace_root(tree, folder):
            continue
        found = [(join(folder, n), m) for n, m in LOCKS if exists(tree, join(folder, n))]
        if found:
            return found
    return []


def is_workspace_root(tree: Tree, folder: str) -> bool:
    if tree.read(join(folder, "pnpm-workspace.yaml")) is not None:
        return True
    text = tree.read(join(folder, "package.json"))
    return text is not None and '"workspaces"' in text


def choose_lock(
    locks: list[tuple[str, Manager]], declared: tuple[Manager, str] | None
) -> tuple[str, Manager] | None:
    if declared is None:
        return locks[0] if locks else None
    return next((lock for lock in locks if lock[1] == declared[0]), None)


def yarn_flavour(tree: Tree, lock: str | None, declared: tuple[Manager, str] | None) -> str:
    """Yarn 1 ("yarn") and Yarn 2+ ("berry") take different flags; the lock tells which
    (v1 starts with "# yarn lockfile v1", berry has ``__metadata``), else the version."""
    text = tree.read(lock) if lock else None
    if text is not None:
        return "yarn" if "# yarn lockfile v1" in text[:500] else "berry"
    if declared is not None and declared[0] == "yarn" and not declared[1].startswith("1."):
        return "berry"
    return "yarn"


def no_lock_warning(workdir: str, manager: Manager) -> str:
    return (
        f"{join(workdir, 'package.json')} has no lock file: each deploy may install different "
        f"versions (run `{manager} install` {where(workdir)} and commit {LOCK_NAMES[manager]})"
    )


# --- staleness ------------------------------------------------------------------------


def stale_problems(tree: Tree, deps: NodeDeps) -> list[str]:
    """Does the lock still pin what package.json asks for? Read from both files, the way
    each tool records the request: best effort, [] for a format not understood."""
    if deps.lock is None:
        return []
    package = read_json(tree, join(deps.workdir, "package.json")) or {}
    text = tree.read(deps.lock) or ""
    importer = importer_key(deps)
    name = posixpath.basename(deps.lock)
    if name in ("package-lock.json", "npm-shrinkwrap.json"):
        fresh = npm_fresh(text, importer, package)
    elif name == "pnpm-lock.yaml":
        fresh = pnpm_fresh(text, importer, package)
    else:
        fresh = yarn_fresh(text, package)
    if fresh is False:
        return [
            f"{deps.lock} does not match {join(deps.workdir, 'package.json')} "
            f"(run `{deps.manager} install` {where(deps.workdir)} and commit it)"
        ]
    return []


def importer_key(deps: NodeDeps) -> str:
    """Where the lock records this package: "" (npm) or "." (pnpm) for the lock's own
    directory, else the package's path from there (a workspace member)."""
    assert deps.lock is not None
    folder = posixpath.dirname(deps.lock) or "."
    return "." if folder == deps.workdir else posixpath.relpath(deps.workdir, folder)


def npm_fresh(text: str, importer: str, package: dict[str, Any]) -> bool | None:
    """lockfileVersion 2 and 3 copy package.json's requests into ``packages[""]`` (or
    ``packages["<member path>"]``); version 1 has no such copy: None, cannot tell."""
    try:
        lock = json.loads(text)
    except json.JSONDecodeError:
        return False
    packages = lock.get("packages") if isinstance(lock, dict) else None
    if not isinstance(packages, dict):
        return None
    recorded = packages.get("" if importer == "." else importer)
    if not isinstance(recorded, dict):
        return False
    keys = (*DEPENDENCY_KEYS, "peerDependencies")
    return all(section(package, key) == section(recorded, key) for key in keys)


def pnpm_fresh(text: str, importer: str, package: dict[str, Any]) -> bool | None:
    """pnpm records each request's ``specifier`` under ``importers`` (lockfile 6 and
    later), or one ``specifiers`` map (lockfile 5)."""
    lock = parse_yaml(text)
    importers = lock.get("importers")
    recorded = importers.get(importer) if isinstance(importers, dict) else lock
    if not isinstance(recorded, dict):
        return False if isinstance(importers, dict) else None
    wanted = {key: section(package, key) for key in DEPENDENCY_KEYS}
    if isinstance(recorded.get("specifiers"), dict):
        merged = {name: spec for part in wanted.values() for name, spec in part.items()}
        return merged == section(recorded, "specifiers")
    if not any(key in lock for key in ("importers", "lockfileVersion")):
        return None
    return all(wanted[key] == pnpm_specifiers(recorded.get(key)) for key in DEPENDENCY_KEYS)


def pnpm_specifiers(entries: Any) -> dict[str, str]:
    if not isinstance(entries, dict):
        return {}
    return {
        str(name): str(entry.get("specifier"))
        for name, entry in entries.items()
        if isinstance(entry, dict)
    }


def yarn_fresh(text: str, package: dict[str, Any]) -> bool | None:
    """Every request ("name@spec") has an entry: yarn 1 keys entries by the request as
    written; yarn 2+ adds the "npm:" protocol to a plain range."""
    berry = "__metadata:" in text
    if not berry and "# yarn lockfile v1" not in text:
        return None
    entries = yarn_entries(text)
    for key in DEPENDENCY_KEYS:
        for name, spec in section(package, key).items():
            if berry and re.search(r"[:/#]", spec):
                continue  # a git, file or workspace request: berry rewrites it
            wanted = f"{name}@npm:{spec}" if berry else f"{name}@{spec}"
            if wanted not in entries:
                return False
    return True


def yarn_entries(text: str) -> set[str]:
    """The requests each entry's header line lists: '"a@^1", a@^1.2:' -> {a@^1, a@^1.2}."""
    found: set[str] = set()
    for line in text.splitlines():
        if not line or line[0] in " #\t" or not line.rstrip().endswith(":"):
            continue
        for part in line.rstrip()[:-1].split(","):
            found.add(unquote(part.strip()))
    return found


# --- a YAML subset (pnpm-lock.yaml): block mappings of scalars ------------------------


def parse_yaml(text: str) -> dict[str, Any]:
    """Nested block mappings with plain or quoted scalars: all a pnpm lock's
    ``importers`` need. Sequences and flow collections are kept as raw text, or skipped."""
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, root)]
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith(("#", "- ", "---")) or stripped == "-":
            continue
        split = split_key(stripped)
        if split is None:
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        while stack[-1][0] >= indent:
            stack.pop()
        key, value = split
        if value == "{}":
            stack[-1][1][key] = {}
        elif value == "":
            child: dict[str, Any] = {}
            stack[-1][1][key] = child
            stack.append((indent, child))
        else:
            stack[-1][1][key] = unquote(value)
    return root


def split_key(line: str) -> tuple[str, str] | None:
    """'key: value' -> (key, value); a quoted key may hold ': '."""
    if line[0] in "'\"":
        end = closing_quote(line)
        if end is None or not line[end + 1 :].startswith(":"):
            return None
        return unquote(line[: end + 1]), line[end + 2 :].strip()
    if line.endswith(":"):
        return line[:-1], ""
    key, sep, value = line.partition(": ")
    return (key, value.strip()) if sep else None


def closing_quote(line: str) -> int | None:
    quote, index = line[0], 1
    while index < len(line):
        if line[index] == "\\" and quote == '"':
            index += 2
            continue
        if line[index] == quote:
            if quote == "'" and line[index + 1 : index + 2] == "'":
                index += 2  # '' is a quote inside a single-quoted scalar
                continue
            return index
        index += 1
    return None


def unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except json.JSONDecodeError:
            return value[1:-1]
    return value


# --- Next.js --------------------------------------------------------------------------

NEXT_CONFIGS = ("next.config.js", "next.config.mjs", "next.config.ts", "next.config.cjs")
SOURCE_SUFFIXES = (".js", ".jsx", ".ts", ".tsx", ".mjs", ".cjs", ".mts", ".cts")
STANDALONE = re.compile(r"""\boutput\s*:\s*(['"`])standalone\1""")
ENV_DOT = re.compile(r"\bprocess\.env\.([A-Za-z_$][\w$]*)")
ENV_INDEX = re.compile(r"""\bprocess\.env\[\s*(['"`])([^'"`]+)\1\s*\]""")
ENV_DESTRUCTURED = re.compile(r"\{([^{}]*)\}\s*=\s*process\.env\b")
PUBLIC = re.compile(r"\bNEXT_PUBLIC_[A-Za-z0-9_]+")


@dataclass(frozen=True)
class NextInfo:
    """What a Next.js app needs from slipway at build time, read from its files."""

    config: str | None  # repo-relative next.config.* file
    standalone: bool  # output: "standalone": the build holds its own server.js
    build_env: tuple[str, ...]  # variables next.config reads, sorted
    public_env: tuple[str, ...]  # NEXT_PUBLIC_* names the sources use, sorted
    version: str | None  # the "next" request in package.json


def read_next(tree: Tree, workdir: str) -> NextInfo | None:
    """The Next.js settings of the app in ``workdir``; None when it does not depend on
    ``next``."""
    workdir = normalize_dir(workdir)
    package = read_json(tree, join(workdir, "package.json"))
    if package is None:
        return None
    version = next((v for k in DEPENDENCY_KEYS if (v := section(package, k).get("next"))), None)
    if version is None:
        return None
    config = next((join(workdir, n) for n in NEXT_CONFIGS if exists(tree, join(workdir, n))), None)
    code = strip_comments(tree.read(config) or "") if config else ""
    return NextInfo(
        config=config,
        standalone=bool(STANDALONE.search(code)),
        build_env=tuple(sorted(env_names(code))),
        public_env=tuple(sorted(public_names(tree, workdir))),
        version=version,
    )


def standalone_start() -> tuple[str, ...]:
    """How a standalone build starts; it listens on $PORT and binds $HOSTNAME."""
    return ("node", ".next/standalone/server.js")


def env_names(code: str) -> set[str]:
    """Variables read as process.env.X, process.env["X"] or const { X, Y } = process.env."""
    names = set(ENV_DOT.findall(code)) | {m[1] for m in ENV_INDEX.findall(code)}
    for group in ENV_DESTRUCTURED.findall(code):
        for item in group.split(","):
            name = re.split(r"[:=]", item, maxsplit=1)[0].strip()
            if re.fullmatch(r"[A-Za-z_$][\w$]*", name):
                names.add(name)
    return names


def public_names(tree: Tree, workdir: str) -> set[str]:
    found: set[str] = set()
    for path in source_files(tree, workdir):
        found |= set(PUBLIC.findall(strip_comments(tree.read(path) or "")))
    return found


def source_files(tree: Tree, workdir: str) -> Iterator[str]:
    """The app's own JavaScript and TypeScript, not what an install or a build made."""
    prefix = "" if workdir == "." else f"{workdir}/"
    for path in tree.paths():
        if not path.startswith(prefix) or not path.endswith(SOURCE_SUFFIXES):
            continue
        if any(part in SKIPPED_DIRS for part in path[len(prefix) :].split("/")[:-1]):
            continue
        yield path


def strip_comments(code: str) -> str:
    """JavaScript without its comments, strings kept ("http://x" is no comment), so a
    commented-out setting is not read as one."""
    out: list[str] = []
    index, quote = 0, ""
    while index < len(code):
        char, pair = code[index], code[index : index + 2]
        if quote:
            out.append(char)
            if char == "\\":
                out.append(code[index + 1 : index + 2])
                index += 1
            elif char == quote:
                quote = ""
        elif pair == "//":
            end = code.find("\n", index)
            index = len(code) if end < 0 else end
            continue
        elif pair == "/*":
            end = code.find("*/", index + 2)
            index = len(code) if end < 0 else end + 2
            continue
        else:
            out.append(char)
            quote = char if char in "'\"`" else ""
        index += 1
    return "".join(out)
