"""What installs a python process's dependencies, read from the repository at the ref.

Real apps pin their dependencies in a ``uv.lock``, a ``poetry.lock``, a pinned
requirements file, or nowhere (a ``pyproject.toml`` that lists ranges). slipway must know
which one before it deploys, because each installs differently on the host, and it must
catch a lock that no longer matches its ``pyproject.toml`` on the deployer's machine,
*before* anything live changes: on the host, ``uv sync --frozen`` would install the old
pins without a word, and a half-done deploy is worse than a refused one.

Nothing here imports or runs the app; the only program run is ``uv lock --check``, in a
temporary copy of the few files it reads, offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from slipway.errors import SlipwayError
from slipway.project.tree import Tree

PythonKind = Literal["uv-lock", "poetry-lock", "requirements", "pyproject"]

# Probed in this order when the config names no requirements file: the most exact pin wins.
DETECTION_ORDER: tuple[tuple[str, PythonKind], ...] = (
    ("uv.lock", "uv-lock"),
    ("poetry.lock", "poetry-lock"),
    ("requirements.lock", "requirements"),
    ("requirements.txt", "requirements"),
)
UV_TIMEOUT = 60.0  # seconds; an offline check of an unchanged lock takes well under one
SHOWN_UNPINNED = 5
# What ``uv lock --check --offline`` says of a lock that does not fit its project.
UV_STALE = (
    "needs to be updated",
    "No solution found",
)  # a warning lists this many names, then "..."


@dataclass(frozen=True)
class PythonDeps:
    """How one python process gets its dependencies, and what pins them."""

    kind: PythonKind
    workdir: str  # repo-relative directory of the process ("." for the root)
    file: str  # repo-relative path of the file that pins the dependencies
    package: bool  # the project's own code is an installable package, to install too
    warnings: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for ``slipway plan``: which file decides, and how it installs."""
        name = relative_to(self.file, self.workdir)
        how = {
            "uv-lock": "uv sync --frozen",
            "poetry-lock": "exported pins, uv pip install",
            "requirements": "uv pip install",
            "pyproject": "uv pip install",
        }[self.kind]
        label = f"{name} dependencies" if self.kind == "pyproject" else name
        return f"{label} ({how})"


# --- paths ----------------------------------------------------------------------------


def normalize_dir(workdir: str) -> str:
    """Config and callers write "", ".", "./backend" or "backend/": one spelling each."""
    clean = posixpath.normpath(workdir.strip() or ".")
    return "." if clean in ("", ".") else clean.removeprefix("./")


def join(workdir: str, name: str) -> str:
    """A repo-relative path; normalized so "../x" from a sub-directory still reads."""
    return posixpath.normpath(name if workdir == "." else f"{workdir}/{name}")


def relative_to(path: str, workdir: str) -> str:
    return path if workdir == "." else posixpath.relpath(path, workdir)


def where(workdir: str) -> str:
    """How a message says where to run a command."""
    return "at the repository's root" if workdir == "." else f"in {workdir}"


# --- detection ------------------------------------------------------------------------


def detect_python(tree: Tree, workdir: str, requirements: str | None = None) -> PythonDeps | None:
    """What pins the dependencies of the python process in ``workdir``; None when nothing
    declares any. The config's ``requirements`` (relative to ``workdir``) wins over what
    is found, so an app can keep several files and say which one deploys."""
    workdir = normalize_dir(workdir)
    pyproject = read_pyproject(tree, join(workdir, "pyproject.toml"))
    if requirements:
        return configured(tree, workdir, requirements, pyproject)
    for name, kind in DETECTION_ORDER:
        path = join(workdir, name)
        text = tree.read(path)
        if text is not None:
            return make_deps(kind, workdir, path, text, pyproject)
    if pyproject is not None and declares_dependencies(pyproject):
        path = join(workdir, "pyproject.toml")
        return make_deps("pyproject", workdir, path, tree.read(path) or "", pyproject)
    return None


def configured(
    tree: Tree, workdir: str, requirements: str, pyproject: dict[str, Any] | None
) -> PythonDeps:
    """The file the config names; its name says its kind (a lock or a requirements file)."""
    path = join(workdir, requirements)
    text = tree.read(path)
    if text is None:
        raise SlipwayError(
            f"{path}: the requirements file the config names does not exist at this commit",
            hint="commit it, or fix the process's `requirements` setting",
        )
    kinds: dict[str, PythonKind] = {
        "uv.lock": "uv-lock",
        "poetry.lock": "poetry-lock",
        "pyproject.toml": "pyproject",
    }
    kind = kinds.get(posixpath.basename(path), "requirements")
    if kind == "pyproject":
        pyproject = parse_toml(text)
    return make_deps(kind, workdir, path, text, pyproject)


def make_deps(
    kind: PythonKind, workdir: str, path: str, text: str, pyproject: dict[str, Any] | None
) -> PythonDeps:
    project = pyproject or {}
    if kind == "requirements":
        # The file decides everything; a local package installs only if it lists "-e .".
        unpinned = unpinned_requirements(requirement_lines(text))
        notes = unpinned_warning(path, unpinned, "pin each with ==, e.g. `uv pip compile`")
        return PythonDeps(kind, workdir, path, False, notes)
    notes = ()
    if kind == "pyproject":
        unpinned = unpinned_requirements(pyproject_requirements(project, path, strict=False))
        notes = unpinned_warning(path, unpinned, "commit a lock: `uv lock`")
    return PythonDeps(kind, workdir, path, is_package(project), notes)


def declares_dependencies(pyproject: dict[str, Any]) -> bool:
    if table(pyproject, "project").get("dependencies"):
        return True
    return bool(set(poetry_dependencies(pyproject)) - {"python"})


def is_package(pyproject: dict[str, Any]) -> bool:
    """Must the project's own code be installed? Yes when it can be built, unless its
    tool says it is an application only (Poetry's package-mode, uv's package = false)."""
    uv_package = table(pyproject, "tool", "uv").get("package")
    if isinstance(uv_package, bool):
        return uv_package
    poetry = table(pyproject, "tool", "poetry")
    if poetry.get("package-mode") is False:
        return False
    return "build-system" in pyproject or bool(poetry.get("packages"))


# --- TOML -----------------------------------------------------------------------------


def parse_toml(text: str) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def read_pyproject(tree: Tree, path: str) -> dict[str, Any] | None:
    """The parsed pyproject.toml, None when absent; an invalid one stops here, since every
    kind reads it (is the app a package? what does the lock pin against?)."""
    text = tree.read(path)
    if text is None:
        return None
    data = parse_toml(text)
    if data is None:
        raise SlipwayError(f"{path} is not valid TOML", hint="fix it and commit it")
    return data


def read_toml(tree: Tree, path: str) -> dict[str, Any] | None:
    text = tree.read(path)
    return None if text is None else parse_toml(text)


def table(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """A nested table, or {} when any level is missing or not a table."""
    found: Any = data
    for key in keys:
        found = found.get(key) if isinstance(found, dict) else None
    return found if isinstance(found, dict) else {}


def poetry_dependencies(pyproject: dict[str, Any]) -> dict[str, Any]:
    return table(pyproject, "tool", "poetry", "dependencies")


# --- pins -----------------------------------------------------------------------------


def requirement_lines(text: str) -> list[str]:
    """The requirements of a requirements file: comments, options and continuations gone."""
    joined = re.sub(r"\\\r?\n", " ", text)
    found: list[str] = []
    for raw in joined.splitlines():
        line = re.split(r"(?:^|\s)#", raw, maxsplit=1)[0].strip()
        if line and not line.startswith("-"):
            found.append(re.split(r"\s--?[a-z]", line, maxsplit=1)[0].strip())
    return found


PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*===?\s*[^\s,;*]+\s*$")


def is_pinned(requirement: str) -> bool:
    """Exactly one version (==, no wildcard), a direct URL, or a local path."""
    spec = requirement.split(";", 1)[0].strip()
    if "@" in spec or spec.startswith((".", "/", "file:")) or "://" in spec:
        return True
    return bool(PINNED.match(spec))


def unpinned_requirements(requirements: Iterable[str]) -> list[str]:
    return [r.split(";", 1)[0].strip() for r in requirements if not is_pinned(r)]


def unpinned_warning(path: str, unpinned: list[str], fix: str) -> tuple[str, ...]:
    if not unpinned:
        return ()
    shown = ", ".join(unpinned[:SHOWN_UNPINNED])
    more = ", ..." if len(unpinned) > SHOWN_UNPINNED else ""
    return (
        f'{path}: dependencies not pinned with "==": {shown}{more} '
        f"(each deploy may install different versions; {fix})",
    )


def pyproject_requirements(pyproject: dict[str, Any], path: str, *, strict: bool) -> list[str]:
    """The PEP 508 requirements a pyproject declares: [project].dependencies, else Poetry's
    own table translated. ``strict`` raises on a Poetry entry that has no PEP 508 form;
    otherwise it is left out (detection only counts what is unpinned)."""
    listed = table(pyproject, "project").get("dependencies")
    if isinstance(listed, list) and listed:
        return [str(item) for item in listed]
    found: list[str] = []
    for name, spec in poetry_dependencies(pyproject).items():
        if name == "python":
            continue
        try:
            line = poetry_requirement(name, spec)
        except ValueError as exc:
            if strict:
                folder = posixpath.dirname(path) or "."
                raise SlipwayError(
                    f"{path}: [tool.poetry.dependencies] {name}: {exc}",
                    hint=f"commit a poetry.lock (run `poetry lock` {where(folder)})",
                ) from exc
            continue
        if line:
            found.append(line)
    return found


# --- Poetry constraints as PEP 440 (pyproject without a lock) -------------------------

OPERATORS = ("===", "==", "!=", ">=", "<=", "~=", ">", "<")


def poetry_requirement(name: str, spec: Any) -> str | None:
    """One Poetry dependency as a PEP 508 line; None for an optional one (an extra's)."""
    if isinstance(spec, str):
        return name + poetry_constraint(spec)
    if not isinstance(spec, dict):
        raise ValueError("several constraints for one package have no single PEP 508 form")
    if spec.get("optional"):
        return None
    for source in ("git", "path", "url", "file"):
        if source in spec:
            raise ValueError(f"a {source} dependency has no version to install from an index")
    extras = spec.get("extras") or []
    line = name + (f"[{','.join(extras)}]" if extras else "")
    line += poetry_constraint(str(spec.get("version", "*")))
    markers = [f"({spec['markers']})"] if spec.get("markers") else []
    if spec.get("python"):
        markers += python_markers(str(spec["python"]))
    return f"{line} ; {' and '.join(markers)}" if markers else line


def python_markers(constraint: str) -> list[str]:
    """'^3.11' -> ['python_version >= "3.11"', 'python_version < "4"']."""
    markers: list[str] = []
    for part in filter(None, poetry_constraint(constraint).split(",")):
        found = re.match(r"^([<>=!~]+)(.+)$", part)
        if found:
            markers.append(f'python_version {found.group(1)} "{found.group(2)}"')
    return markers


def poetry_constraint(constraint: str) -> str:
    """Poetry's '^1.2', '~1.2.3', '1.2.3', '>=1,<2' or '*' as a PEP 440 specifier."""
    if "||" in constraint or "|" in constraint:
        raise ValueError(f"'{constraint}' (an 'or' constraint) has no PEP 440 form")
    specs = [one_constraint(part.strip()) for part in constraint.split(",")]
    return ",".join(s for s in specs if s)


def one_constraint(part: str) -> str:
    if part in ("", "*"):
        return ""
    if part.startswith("^"):
        return bounded(part[1:], caret=True)
    if part.startswith("~") and not part.startswith("~="):
        return bounded(part[1:], caret=False)
    if part.startswith(OPERATORS):
        return part.replace(" ", "")
    if re.match(r"^\d", part):
        return f"=={part}"
    raise ValueError(f"'{part}' is not a constraint slipway can translate")


def bounded(version: str, *, caret: bool) -> str:
    """^ keeps the first non-zero component, ~ the minor (Poetry's rules)."""
    release = re.match(r"\d+(?:\.\d+)*", version.strip())
    if release is None:
        raise ValueError(f"'{version}' is not a version")
    numbers = [int(n) for n in release.group(0).split(".")]
    if caret:
        nonzero = [i for i, n in enumerate(numbers) if n]
        index = nonzero[0] if nonzero else len(numbers) - 1
    else:
        index = 1 if len(numbers) > 1 else 0
    upper = [*numbers[:index], numbers[index] + 1]
    return f">={version.strip()},<{'.'.join(str(n) for n in upper)}"


# --- staleness ------------------------------------------------------------------------


def stale_problems(tree: Tree, deps: PythonDeps) -> list[str]:
    """Why the lock does not pin what pyproject.toml asks for; [] when it does (and for
    kinds without a lock). Each problem names both files and the command that fixes it."""
    if deps.kind == "uv-lock":
        return uv_problems(tree, deps)
    if deps.kind == "poetry-lock":
        return poetry_problems(tree, deps)
    return []


def stale_message(deps: PythonDeps, pyproject: str, command: str) -> str:
    return (
        f"{deps.file} does not match {pyproject} "
        f"(run `{command}` {where(deps.workdir)} and commit it)"
    )


def lock_dir(deps: PythonDeps) -> str:
    """The project a lock belongs to is the directory that holds it."""
    return posixpath.dirname(deps.file) or "."


# --- uv -------------------------------------------------------------------------------


def find_uv() -> str | None:
    """uv on PATH, else the one installed beside the running interpreter (slipway's venv)."""
    found = shutil.which("uv")
    if found:
        return found
    sibling = Path(sys.executable).parent / ("uv.exe" if os.name == "nt" else "uv")
    return str(sibling) if sibling.is_file() else None


def uv_problems(tree: Tree, deps: PythonDeps) -> list[str]:
    """Ask uv itself (``uv lock --check``), offline, on a copy of the files it reads:
    only uv knows how it normalizes requirements, sources and markers into its lock."""
    project = lock_dir(deps)
    pyproject = join(project, "pyproject.toml")
    if tree.read(pyproject) is None:
        return [f"{deps.file} has no {pyproject} beside it (uv needs both; commit it)"]
    uv = find_uv()
    if uv is None:
        return [
            f"cannot check {deps.file} against {pyproject}: uv is not installed here "
            "(install it: `pip install uv`)"
        ]
    with tempfile.TemporaryDirectory(prefix="slipway-uvlock-") as scratch:
        for path in uv_inputs(tree, project, deps.file):
            write_copy(tree, path, Path(scratch))
        return run_uv_check(uv, Path(scratch) / project, deps, pyproject)


def uv_inputs(tree: Tree, project: str, lock: str) -> list[str]:
    """What ``uv lock`` reads: the project's pyproject and lock, the .python-version
    files it would find, and the pyproject of each workspace member and path source."""
    found = [lock, join(project, ".python-version"), ".python-version"]
    found += [join(d, "pyproject.toml") for d in project_dirs(tree, project)]
    return sorted(set(found))


def project_dirs(tree: Tree, root: str) -> list[str]:
    """``root`` and every project it pulls in: workspace members and path sources."""
    seen: list[str] = []
    todo = [root]
    while todo:
        current = todo.pop()
        data = read_toml(tree, join(current, "pyproject.toml"))
        if current in seen or data is None:
            continue
        seen.append(current)
        todo += list(members(tree, current, data)) + list(path_sources(current, data))
    return seen


def members(tree: Tree, project: str, data: dict[str, Any]) -> Iterator[str]:
    workspace = table(data, "tool", "uv", "workspace")
    patterns = [str(p) for p in workspace.get("members", [])]
    excluded = [str(p) for p in workspace.get("exclude", [])]
    for path in tree.paths():
        if posixpath.basename(path) != "pyproject.toml":
            continue
        folder = posixpath.dirname(path) or "."
        inside = relative_to(folder, project)
        if inside.startswith("..") or inside == ".":
            continue
        if any(glob_match(inside, p) for p in patterns) and not any(
            glob_match(inside, p) for p in excluded
        ):
            yield folder


def glob_match(path: str, pattern: str) -> bool:
    """A glob whose '*' stays within one path segment, as uv's member globs do."""
    parts, wanted = path.split("/"), normalize_dir(pattern).split("/")
    return len(parts) == len(wanted) and all(
        fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True)
    )


def path_sources(project: str, data: dict[str, Any]) -> Iterator[str]:
    for source in table(data, "tool", "uv", "sources").values():
        entries = source if isinstance(source, list) else [source]
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                folder = join(project, entry["path"])
                if not folder.startswith("..") and not folder.endswith((".whl", ".gz", ".zip")):
                    yield folder


def write_copy(tree: Tree, path: str, scratch: Path) -> None:
    text = tree.read(path)
    if text is None or path.startswith(".."):
        return
    target = scratch / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def run_uv_check(uv: str, cwd: Path, deps: PythonDeps, pyproject: str) -> list[str]:
    """uv exits 0 when the lock satisfies the project. When it does not, offline, uv says
    the lock "needs to be updated", or it tries to resolve afresh and finds "No solution"
    (packages not in its cache): both mean stale. Anything else is uv unable to check
    (no interpreter fits requires-python, a member it cannot read), said as uv says it."""
    env = {**os.environ, "UV_NO_CONFIG": "1", "UV_PYTHON_DOWNLOADS": "never"}
    argv = [uv, "lock", "--check", "--offline", "--quiet", "--no-progress"]
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=UV_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return [f"cannot check {deps.file} against {pyproject}: `uv lock --check` timed out"]
    except OSError as exc:
        return [f"cannot check {deps.file} against {pyproject}: cannot run {uv}: {exc}"]
    if done.returncode == 0:
        return []
    if done.returncode == 1 and any(s in done.stderr for s in UV_STALE):
        return [stale_message(deps, pyproject, "uv lock")]
    return [
        f"cannot check {deps.file} against {pyproject}: uv says: {first_error(done.stderr)} "
        f"(run `uv lock --check` {where(deps.workdir)} to see why)"
    ]


def first_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["no output"])[0].removeprefix("error: ")


# --- Poetry ---------------------------------------------------------------------------

# Poetry's Locker: the pyproject keys its content-hash covers.
POETRY_LEGACY_KEYS = ("dependencies", "source", "extras", "dev-dependencies")
POETRY_KEYS = (*POETRY_LEGACY_KEYS, "group")
POETRY_PROJECT_KEYS = ("requires-python", "dependencies", "optional-dependencies")


def poetry_content_hash(pyproject: dict[str, Any], *, with_dependency_groups: bool = True) -> str:
    """Poetry 2.x's ``Locker._get_content_hash``, key for key (2.0 to 2.2 left
    ``[dependency-groups]`` out: ``with_dependency_groups=False``)."""
    project = table(pyproject, "project")
    groups = table(pyproject, "dependency-groups") if with_dependency_groups else {}
    poetry = table(pyproject, "tool", "poetry")
    relevant_project = {k: project[k] for k in POETRY_PROJECT_KEYS if project.get(k) is not None}
    relevant_poetry: dict[str, Any] = {}
    for key in POETRY_KEYS:
        data = poetry.get(key)
        if data is None and (key not in POETRY_LEGACY_KEYS or relevant_project or groups):
            continue
        relevant_poetry[key] = data  # a legacy key is kept even when absent (as null)
    content: dict[str, Any] = {}
    if relevant_project:
        content["project"] = relevant_project
    if groups:
        content["dependency-groups"] = groups
    if content:
        content["tool"] = {"poetry": relevant_poetry}
    else:
        content = relevant_poetry  # no [project] content: [tool.poetry]'s at top level
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def poetry1_content_hash(pyproject: dict[str, Any]) -> str:
    """Poetry 1.x hashed [tool.poetry]'s keys only, at top level, legacy keys always."""
    poetry = table(pyproject, "tool", "poetry")
    content = {k: poetry.get(k) for k in POETRY_KEYS if k in POETRY_LEGACY_KEYS or k in poetry}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def generated_by(lock_text: str) -> tuple[int, ...] | None:
    """The Poetry version in the lock's first line ("@generated by Poetry 2.1.3")."""
    first = lock_text.split("\n", 1)[0]
    found = re.search(r"Poetry (\d+(?:\.\d+)*)", first)
    return tuple(int(n) for n in found.group(1).split(".")) if found else None


def accepted_hashes(pyproject: dict[str, Any], lock_text: str) -> set[str]:
    """The hashes the Poetry that wrote the lock would compute (unknown writer: any)."""
    version = generated_by(lock_text)
    hashes = {poetry_content_hash(pyproject)}
    if version is None or version < (2, 3):
        hashes.add(poetry_content_hash(pyproject, with_dependency_groups=False))
    if version is None or version < (2,):
        hashes.add(poetry1_content_hash(pyproject))
    return hashes


def poetry_problems(tree: Tree, deps: PythonDeps) -> list[str]:
    """Compare the lock's content-hash with Poetry's own, over the pyproject at the ref."""
    pyproject_path = join(lock_dir(deps), "pyproject.toml")
    pyproject_text = tree.read(pyproject_path)
    lock_text = tree.read(deps.file) or ""
    if pyproject_text is None:
        return [f"{deps.file} has no {pyproject_path} beside it (Poetry needs both; commit it)"]
    pyproject, lock = parse_toml(pyproject_text), parse_toml(lock_text)
    if pyproject is None:
        return [f"{pyproject_path} is not valid TOML, so {deps.file} cannot be checked"]
    if lock is None:
        return [f"{deps.file} is not valid TOML (run `poetry lock` {where(deps.workdir)})"]
    recorded = table(lock, "metadata").get("content-hash")
    if recorded in accepted_hashes(pyproject, lock_text):
        return []
    return [stale_message(deps, pyproject_path, "poetry lock")]


# --- what to install ------------------------------------------------------------------


def pinned_requirements(tree: Tree, deps: PythonDeps) -> str:
    """Requirements text for ``uv pip install -r``: the main group of a poetry.lock (with
    hashes when every package has some: uv takes hashes for all or none), or the
    dependencies a pyproject lists. uv installs the other kinds from their own file."""
    if deps.kind == "poetry-lock":
        return poetry_export(tree, deps)
    if deps.kind == "pyproject":
        pyproject = read_toml(tree, deps.file) or {}
        return "".join(
            f"{line}\n" for line in pyproject_requirements(pyproject, deps.file, strict=True)
        )
    raise ValueError(f"{deps.kind} installs from {deps.file} itself, not from exported pins")


def poetry_export(tree: Tree, deps: PythonDeps) -> str:
    lock = parse_toml(tree.read(deps.file) or "")
    if lock is None:
        raise SlipwayError(f"{deps.file} is not valid TOML", hint="run `poetry lock` and commit it")
    pyproject = read_toml(tree, join(lock_dir(deps), "pyproject.toml")) or {}
    packages = [p for p in lock.get("package", []) if isinstance(p, dict) and "name" in p]
    selected = main_packages(packages, pyproject)
    legacy_files = table(lock, "metadata", "files")  # lock-version 1.x keeps hashes here
    hashes = [package_hashes(p, legacy_files) for p, _ in selected]
    indexes = sorted({p["source"]["url"] for p, _ in selected if source_type(p) == "legacy"})
    text = [f"--extra-index-url {url}\n" for url in indexes]
    with_hashes = all(hashes)
    for (package, markers), found in zip(selected, hashes, strict=True):
        line = poetry_line(package, markers, deps.file)
        extra = "".join(f" \\\n    --hash={h}" for h in found) if with_hashes else ""
        text.append(f"{line}{extra}\n")
    return "".join(text)


def main_packages(
    packages: list[dict[str, Any]], pyproject: dict[str, Any]
) -> list[tuple[dict[str, Any], str | None]]:
    """The packages a main-group install gets, each with its environment markers. Lock
    2.1 (Poetry 2) records both per package; older locks record neither, so Poetry (and
    this) walks the dependency graph from pyproject's main dependencies."""
    if any("groups" in p for p in packages):
        return [(p, group_markers(p)) for p in packages if is_main(p)]
    reached = walk(packages, root_edges(pyproject))
    return [(p, reached[canonical(p["name"])]) for p in packages if canonical(p["name"]) in reached]


def is_main(package: dict[str, Any]) -> bool:
    """Lock 2.1: 'main' among its groups. Optional packages come only with an extra."""
    return not package.get("optional") and "main" in list(package.get("groups", []))


def group_markers(package: dict[str, Any]) -> str | None:
    markers = package.get("markers")
    if isinstance(markers, dict):
        markers = markers.get("main")
    return str(markers) if markers else None


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# One way to reach a package: the markers of each edge on the path (all must hold),
# and the extras asked of it on the last edge.
Edge = tuple[str, frozenset[str], frozenset[str]]
MAX_PATHS = 8  # per package; past that it is installed everywhere (never too little)


def root_edges(pyproject: dict[str, Any]) -> list[Edge]:
    listed = table(pyproject, "project").get("dependencies")
    if isinstance(listed, list) and listed:
        return [e for e in (pep508_edge(str(item)) for item in listed) if e]
    edges: list[Edge] = []
    for name, spec in poetry_dependencies(pyproject).items():
        if name != "python":
            edges += lock_edges(name, spec, frozenset(), set())
    return edges


PEP508 = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?[^;]*(?:;(.*))?$")


def pep508_edge(requirement: str) -> Edge | None:
    found = PEP508.match(requirement)
    if found is None:
        return None
    extras = frozenset(e.strip() for e in (found.group(2) or "").split(",") if e.strip())
    marker = (found.group(3) or "").strip()
    return canonical(found.group(1)), frozenset([marker] if marker else []), extras


def lock_edges(name: str, spec: Any, path: frozenset[str], extras: set[str]) -> list[Edge]:
    """The edges one dependency entry makes (a list holds one entry per constraint); an
    optional one only when an extra that names it was asked for."""
    entries = spec if isinstance(spec, list) else [spec]
    edges: list[Edge] = []
    for entry in entries:
        entry = entry if isinstance(entry, dict) else {}
        if entry.get("optional") and canonical(name) not in extras:
            continue
        markers = [str(entry["markers"])] if entry.get("markers") else []
        if entry.get("python"):
            markers += python_markers(str(entry["python"]))
        asked = frozenset(str(e) for e in entry.get("extras", []))
        edges.append((canonical(name), path | frozenset(markers), asked))
    return edges


def extra_members(package: dict[str, Any], asked: frozenset[str]) -> set[str]:
    """The dependencies the asked extras of ``package`` add ("httptools (>=0.5)")."""
    extras = table(package, "extras")
    names = [str(item) for extra in asked for item in extras.get(extra, [])]
    return {canonical(re.split(r"[\s(\[;<>=!~]", n, maxsplit=1)[0]) for n in names}


def walk(packages: list[dict[str, Any]], roots: list[Edge]) -> dict[str, str | None]:
    """Every package reachable from ``roots``, with the markers under which it is."""
    by_name = {canonical(p["name"]): p for p in packages}
    paths: dict[str, set[frozenset[str]]] = {}
    seen: set[Edge] = set()
    todo = list(roots)
    while todo:
        edge = todo.pop()
        name, path, asked = edge
        if edge in seen or name not in by_name:
            continue
        seen.add(edge)
        known = paths.setdefault(name, set())
        known.add(path)
        if len(known) > MAX_PATHS:
            known.clear()
            known.add(frozenset())
        package = by_name[name]
        wanted = extra_members(package, asked)
        for child, spec in table(package, "dependencies").items():
            todo += lock_edges(child, spec, path, wanted)
    return {name: join_markers(found) for name, found in paths.items()}


def all_of(markers: list[str]) -> str:
    return markers[0] if len(markers) == 1 else " and ".join(f"({m})" for m in markers)


def join_markers(paths: set[frozenset[str]]) -> str | None:
    """None when some path needs no marker; else any path's markers, all of them."""
    if frozenset() in paths:
        return None
    alternatives = sorted(all_of(sorted(p)) for p in paths)
    if len(alternatives) == 1:
        return alternatives[0]
    return " or ".join(f"({a})" for a in alternatives)


def source_type(package: dict[str, Any]) -> str:
    source = package.get("source")
    return str(source.get("type", "")) if isinstance(source, dict) else ""


def poetry_line(package: dict[str, Any], markers: str | None, lock: str) -> str:
    name, version = package["name"], package["version"]
    source = table(package, "source")
    kind = source_type(package)
    if kind == "git":
        ref = source.get("resolved_reference") or source.get("reference")
        sub = f"#subdirectory={source['subdirectory']}" if source.get("subdirectory") else ""
        line = f"{name} @ git+{source['url']}@{ref}{sub}"
    elif kind == "url":
        line = f"{name} @ {source['url']}"
    elif kind in ("directory", "file"):
        raise SlipwayError(
            f"{lock}: {name} is pinned from a local {kind} ({source.get('url')})",
            hint="slipway installs registry, git and URL packages from poetry.lock",
        )
    else:
        line = f"{name}=={version}"
    return f"{line} ; {markers}" if markers else line


def package_hashes(package: dict[str, Any], legacy_files: dict[str, Any]) -> list[str]:
    files = package.get("files")
    if files is None:
        files = legacy_files.get(package["name"], [])
    return [str(f["hash"]) for f in files if isinstance(f, dict) and f.get("hash")]
