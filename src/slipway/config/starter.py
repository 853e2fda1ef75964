"""``slipway init``: a configuration that fits the app in front of it.

The repository is read statically (:mod:`slipway.project`): the FastAPI application
object and its routes, the health route and the JSON it returns, WebSocket routes, the
SQLite path and the variable that sets it, the Python dependency source, the frontend's
package manager, its Next.js build-time variables and ``output: "standalone"``. Each
inferred value is written with a comment saying where it came from; what could not be
inferred is a ``TODO(slipway)`` comment that ``slipway check`` lists. Why statically:
importing the app would run its code (and need its dependencies) on the machine of
someone who has not decided to trust it yet.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from slipway.config.deep import next_route_exists
from slipway.errors import SlipwayError, UsageError
from slipway.project import fastapi, node, python
from slipway.project.tree import DirTree, Tree

TODO = "TODO(slipway)"
NO_DATABASE = "no SQLite path found in the backend"


@dataclass
class Backend:
    workdir: str
    start: list[str]
    origin: str  # where the app object was found, or why the start command is a guess
    deps: str  # the dependency source, described
    health_path: str = "/"
    expect_json: dict[str, str | int | bool] = field(default_factory=dict)
    health_origin: str = ""
    websocket: tuple[str, str | None] | None = None  # path, the reply it sends
    database_env: str = "DATABASE_PATH"
    database_value: str = "{path}"
    database_file: str = "state.db"
    database_origin: str = ""  # where the SQLite path was read; "" when it was not found
    port_env: str | None = None


@dataclass
class Frontend:
    workdir: str
    install: str  # the package manager's install, described
    build_env: dict[str, str]
    build_env_origin: str
    standalone: bool
    root_page: bool


@dataclass
class Detected:
    """What ``init`` learned from the repository it was run in."""

    name: str
    backend: Backend | None = None
    frontend: Frontend | None = None
    todos: list[str] = field(default_factory=list)


def project_name(root: Path) -> str:
    """From pyproject's ``[project].name`` (or Poetry's), else the directory's name."""
    name = root.resolve().name
    for candidate in (root / "pyproject.toml", root / "backend" / "pyproject.toml"):
        if not candidate.is_file():
            continue
        try:
            data = tomllib.loads(candidate.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{candidate}: not valid TOML: {exc}") from exc
        found = data.get("project", {}).get("name") or data.get("tool", {}).get("poetry", {}).get(
            "name"
        )
        if found and candidate.parent == root:
            name = str(found)
        break
    name = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "app"
    if not name[0].isalpha():
        name = "app-" + name
    return name[:40]


def detect_project(root: Path) -> Detected:
    """Read the repository at ``root`` (a working directory)."""
    tree = DirTree(root)
    detected = Detected(name=project_name(root))
    app = fastapi.find_app(tree)
    if app is None:
        detected.todos.append("no FastAPI app found: set processes.backend.start and workdir")
        detected.backend = _guessed_backend(tree, detected.name)
    else:
        detected.backend = _backend(tree, app, detected.todos)
    detected.frontend = _frontend(tree, detected.todos)
    return _printable(detected)


def _printable(detected: Detected) -> Detected:
    """What goes into comments, without control characters (a newline in a file's name
    would end the comment; TOML refuses the others there)."""
    detected.todos = [_comment(t) for t in detected.todos]
    if detected.backend is not None:
        b = detected.backend
        b.origin, b.health_origin = _comment(b.origin), _comment(b.health_origin)
        b.database_origin, b.deps = _comment(b.database_origin), _comment(b.deps)
    if detected.frontend is not None:
        f = detected.frontend
        f.build_env_origin, f.install = _comment(f.build_env_origin), _comment(f.install)
    return detected


def _backend(tree: Tree, app: fastapi.AppInfo, todos: list[str]) -> Backend:
    deps = python.detect_python(tree, app.workdir)
    described = "none found" if deps is None else deps.describe()
    if deps is None:
        todos.append(f"no dependency file in {app.workdir}: add a uv.lock or requirements")
    backend = Backend(
        workdir=app.workdir,
        start=_start(tree, app, deps, todos),
        origin=(
            f"`{app.attr} = FastAPI(...)` in {app.file}:{app.line}"
            + (f", made by {app.factory}()" if app.factory else "")
        ),
        deps=described,
    )
    _health(backend, app, todos)
    _database(backend, app, tree, todos)
    sockets = app.websockets()
    if sockets and not _serves_websockets(tree, deps):
        todos.append(
            f"{sockets[0].path} is a WebSocket route but the dependencies hold no WebSocket"
            " library for uvicorn (websockets or wsproto): add uvicorn[standard], then the"
            " [health.websocket] check"
        )
    elif sockets:
        reply = sockets[0].replies[0] if sockets[0].replies else None
        backend.websocket = (sockets[0].path, reply)
    return backend


def _serves_websockets(tree: Tree, deps: python.PythonDeps | None) -> bool:
    """uvicorn answers a WebSocket upgrade only with websockets or wsproto installed."""
    if deps is None:
        return False
    text = (tree.read(deps.file) or "").lower()
    return any(
        name in text
        for name in (
            '"websockets"',
            "websockets==",
            "wsproto",
            "uvicorn[standard]",
            'name = "websockets"',
        )
    )


def _guessed_backend(tree: Tree, name: str) -> Backend:
    """A backend to edit, valid as configuration: the conventional module path."""
    deps = python.detect_python(tree, ".")
    module = name.replace("-", "_") + ".main"
    return Backend(
        workdir=".",
        start=[
            "{python}",
            "-m",
            "uvicorn",
            f"{module}:app",
            "--host",
            "{host}",
            "--port",
            "{port}",
        ],
        origin=f"a guess ({TODO}: no FastAPI() call was found)",
        deps="none found" if deps is None else deps.describe(),
        health_path="/docs",
        health_origin="a guess: FastAPI serves /docs",
    )


def _start(
    tree: Tree, app: fastapi.AppInfo, deps: python.PythonDeps | None, todos: list[str]
) -> list[str]:
    text = (tree.read(deps.file) or "") if deps is not None else ""
    if "uvicorn" not in text.lower():
        todos.append("uvicorn is not among the backend's dependencies: check the start command")
    target = f"{app.module}:{app.factory or app.attr}"
    factory = ["--factory"] if app.factory else []
    return ["{python}", "-m", "uvicorn", target, *factory, "--host", "{host}", "--port", "{port}"]


def _health(backend: Backend, app: fastapi.AppInfo, todos: list[str]) -> None:
    route = app.health()
    if route is None:
        backend.health_path = "/docs"
        backend.health_origin = "no health route found; FastAPI serves /docs"
        todos.append("the backend has no health route: add one (GET /health) and check it")
        return
    backend.health_path = route.path
    backend.health_origin = f"{route.file}:{route.line}"
    backend.expect_json = {k: v for k, v in (route.returns or {}).items() if isinstance(k, str)}


_SQLITE_URL = re.compile(r"\b(sqlite(?:\+\w+)?):///")


def _url_scheme(tree: Tree, hint: fastapi.DatabaseHint) -> str | None:
    """The ``sqlite+driver`` scheme written where the default was found, if any (an
    async engine needs its driver kept: ``sqlite+aiosqlite``)."""
    lines = (tree.read(hint.file) or "").splitlines()
    near = "\n".join(lines[max(hint.line - 3, 0) : hint.line + 2])
    match = _SQLITE_URL.search(near)
    return match.group(1) if match else None


def _database(backend: Backend, app: fastapi.AppInfo, tree: Tree, todos: list[str]) -> None:
    hint = app.database
    if hint is None:
        todos.append("no SQLite path found: set processes.backend.database_env")
        return
    backend.database_origin = f"{hint.file}:{hint.line}"
    if hint.default:
        backend.database_file = hint.default.rsplit("/", 1)[-1]
    if hint.env:
        backend.database_env = hint.env
        scheme = _url_scheme(tree, hint)
        if scheme is None and hint.env.upper().endswith(("URL", "URI")):
            scheme = "sqlite"
        backend.database_value = f"{scheme}:///{{path}}" if scheme else "{path}"
    else:
        todos.append(
            f"{hint.file}:{hint.line} fixes the database path: read it from an environment"
            " variable so each environment gets its own file"
        )


def _frontend(tree: Tree, todos: list[str]) -> Frontend | None:
    workdir = _frontend_dir(tree)
    if workdir is None:
        others = [p for p in tree.paths() if p.count("/") <= 1 and p.endswith("package.json")]
        if others:
            todos.append(
                f"{others[0]} is not a Next.js app: add [processes.frontend] by hand if it runs"
            )
        return None
    deps = node.detect_node(tree, workdir)
    app = node.read_next(tree, workdir)
    if deps is None or app is None:
        todos.append(f"{workdir}/package.json is not a Next.js app: describe its process by hand")
        return None
    build_env = {
        var: _build_value(var)
        for var in sorted({*app.build_env, *app.public_env})
        if var not in ("NODE_ENV", "NEXT_TELEMETRY_DISABLED")
    }
    origin = f"read by {app.config}" if app.config else "used by the frontend's sources"
    return Frontend(
        workdir=workdir,
        install=" ".join(deps.install),
        build_env=build_env,
        build_env_origin=origin,
        standalone=app.standalone,
        root_page=next_route_exists(tree, workdir, "/"),
    )


def _frontend_dir(tree: Tree) -> str | None:
    """The directory of the Next.js app: web-ui/, frontend/, or the first with one."""
    found = [p.rsplit("/", 1)[0] for p in tree.paths() if p.endswith("/package.json")]
    found = [d for d in found if _is_next(tree, d)]
    for preferred in ("web-ui", "frontend", "web", "ui", "client"):
        if preferred in found:
            return preferred
    if _is_next(tree, "."):
        return "."
    return min(found, key=len) if found else None


def _is_next(tree: Tree, workdir: str) -> bool:
    """A Next.js app; a broken package.json elsewhere (a fixture, a vendored tool) is
    not the frontend and must not stop init."""
    try:
        return node.read_next(tree, workdir) is not None
    except SlipwayError:
        return False


def _build_value(var: str) -> str:
    """A build-time variable's value, from its name: Next fixes it into the build."""
    upper = var.upper()
    if "WS" in upper.split("_") or "WEBSOCKET" in upper:
        return "ws://{host}:{backend_port}/ws"
    if upper.endswith("PORT"):
        return "{backend_port}" if "BACKEND" in upper or "API" in upper else "{frontend_port}"
    if upper.endswith("HOST"):
        return "{host}"
    return "http://{host}:{backend_port}"


# --- writing ----------------------------------------------------------------------------


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml(value: object) -> str:
    """A TOML value. Strings are escaped by TOML's rules, not JSON's (JSON writes a
    character outside the BMP as a surrogate pair, which TOML refuses)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{_key(str(k))} = {_toml(v)}" for k, v in value.items()]
        return "{ " + ", ".join(items) + " }"
    raise TypeError(type(value))


def _key(key: str) -> str:
    """Bare where TOML allows it, quoted otherwise (a bare ``app.version`` would nest)."""
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _comment(text: str) -> str:
    """Text safe inside a comment: a newline in a file name would end it."""
    return "".join(c if c.isprintable() else "?" for c in text)


def render_starter(detected: Detected) -> str:
    """The configuration's text, commented. Parsed back before it is returned: what the
    app's files hold must never make a file slipway cannot read."""
    parts = [_head(detected)]
    if detected.backend is not None:
        parts.append(_backend_text(detected.backend))
    if detected.frontend is not None:
        parts.append(_frontend_text(detected.frontend))
    parts.append(_health_text(detected))
    parts.append(_environments_text(detected))
    lines = "\n".join(parts).split("\n")
    text = "\n".join(_comment(line) if line.lstrip().startswith("#") else line for line in lines)
    tomllib.loads(text)  # a bug here must fail loudly, not write a broken file
    return text


def _head(detected: Detected) -> str:
    lines = [
        f"# slipway.toml: how {detected.name} is built, started, checked and deployed.",
        "# Written by `slipway init` from what it read in the repository; each inferred",
        "# value says where it came from. Validate with `slipway check --deep`, try it",
        "# here with `slipway try`; `slipway schema` prints the full schema.",
    ]
    lines += [f"# {TODO}: {todo}" for todo in detected.todos]
    lines += [
        "",
        "[project]",
        f"name = {_toml(detected.name)}          # PM2 apps are named <name>-<env>-<process>",
        'repository = "."           # git repository to deploy from',
        "",
        "# Processes. Commands are argv lists: nothing here passes through a shell.",
        "# Placeholders: {port} (this process's port), {host} (bind address),",
        "# {python} (the release's virtualenv python).",
        "",
    ]
    return "\n".join(lines)


def _backend_text(b: Backend) -> str:
    lines = [
        "[processes.backend]",
        'kind = "python"',
        f"workdir = {_toml(b.workdir)}",
        f"# the app: {b.origin}",
        f"# dependencies: {b.deps}, read at each deploy's commit",
        f"start = {_toml(b.start)}",
        'port = "backend"',
    ]
    if b.port_env:
        lines.append(f"port_env = {_toml(b.port_env)}")
    lines += [
        f"database_env = {_toml(b.database_env)}   # {b.database_origin or NO_DATABASE}",
        f"database_value = {_toml(b.database_value)}",
        f"health_path = {_toml(b.health_path)}   # {b.health_origin}",
        "drain_seconds = 5",
        "",
    ]
    return "\n".join(lines)


def _frontend_text(f: Frontend) -> str:
    start = (
        ["node", ".next/standalone/server.js"]
        if f.standalone
        else ["node_modules/.bin/next", "start", "-H", "{host}", "-p", "{port}"]
    )
    lines = [
        "[processes.frontend]",
        'kind = "node"',
        f"workdir = {_toml(f.workdir)}",
        f"# installed with `{f.install}` (from its lock file)",
        _build_line(f),
        f"start = {_toml(start)}"
        + ('   # output: "standalone" in next.config' if f.standalone else ""),
        'port = "frontend"',
        'port_env = "PORT"',
    ]
    if f.standalone:
        lines.append('bind_env = "HOSTNAME"             # the standalone server binds HOSTNAME')
    lines.append('health_path = "/"')
    if f.build_env:
        lines += [
            f"# Next.js fixes these at BUILD time ({f.build_env_origin}). {{backend_port}} is the",
            "# environment's public backend port, the same for both colours.",
            f"build_env = {_toml(f.build_env)}",
        ]
    lines.append("")
    return "\n".join(lines)


def _build_line(f: Frontend) -> str:
    tool = f.install.split()[0]
    return f"build = {_toml([tool, 'run', 'build'])}"


def _health_text(detected: Detected) -> str:
    lines = [
        "# Health checks: `basic` runs on staging, `comprehensive` on production.",
        "[health]",
        "passes = 3",
        "interval_seconds = 1",
        "deadline_seconds = 60",
        "timeout_seconds = 5",
        "",
    ]
    b, f = detected.backend, detected.frontend
    for level in ("basic", "comprehensive"):
        if b is not None:
            lines += [f"[[health.{level}]]", 'name = "api"', f"path = {_toml(b.health_path)}"]
            if b.expect_json:
                lines.append(
                    f"expect_json = {_toml(b.expect_json)}   # what {b.health_origin} returns"
                )
            lines.append("")
        if f is not None:
            lines += [
                f"[[health.{level}]]",
                'name = "frontend"',
                'process = "frontend"',
                'path = "/"',
            ]
            if not f.root_page:
                lines.insert(
                    -1, f"# {TODO}: no page at / was found in {f.workdir}: check a page it has"
                )
            if level == "comprehensive":
                lines.append('expect_text = "<html"')
            lines.append("")
    if b is not None and b.websocket is not None:
        path, reply = b.websocket
        lines += ["[health.websocket]", f"path = {_toml(path)}"]
        if reply is None:
            lines.append(f"# {TODO}: say what {path} answers to `send` (expect_text)")
        else:
            lines.append(f"expect_text = {_toml(reply)}   # a reply its handler sends")
        lines.append("")
    if b is not None and b.database_origin:
        lines += [
            "# A read-only query of the SQLite file (comprehensive): uncomment once the app",
            "# creates its database when it starts (a check of a file not made yet fails).",
            "# [health.sqlite]",
            "",
        ]
    return "\n".join(lines)


def _environments_text(detected: Detected) -> str:
    db = detected.backend.database_file if detected.backend is not None else "state.db"
    name = detected.name
    return "\n".join(
        [
            "# Environments: development, staging and production carry the design's",
            "# defaults (ports, PM2, checks, strategy); say what differs.",
            "[environments.development]",
            f"database = {_toml(db)}",
            "",
            "[environments.staging]",
            'hosts = ["local"]                   # or ["deploy@staging.example.com:22"]',
            f"root = {_toml('/srv/' + name)}",
            f"database = {_toml('staging/' + db)}",
            "required_env = []",
            "",
            "[environments.production]",
            'hosts = ["local"]',
            f"root = {_toml('/srv/' + name)}",
            f"database = {_toml('production/' + db)}",
            "required_env = []",
            "",
            "[environments.production.ssh]",
            '# key = "~/.ssh/slipway_deploy"     # private key; default: the SSH agent',
            '# known_hosts = "~/.ssh/known_hosts" # host keys are always verified',
            "",
        ]
    )


def write_starter(root: Path, *, force: bool = False) -> tuple[Path, Detected]:
    """Write ``slipway.toml`` in ``root``; refuse to overwrite unless ``force``."""
    target = root / "slipway.toml"
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", hint="pass --force to overwrite it")
    detected = detect_project(root)
    target.write_text(render_starter(detected), encoding="utf-8")
    return target, detected
