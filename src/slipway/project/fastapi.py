"""What a FastAPI backend serves, read from its sources without running them.

``slipway init`` writes health checks against routes that exist and expects what they
return; ``slipway check --deep`` checks that configured check paths exist. Importing the
app would run its code (database connections, settings that demand secrets) on the
operator's machine, so everything here is static: each Python file is parsed at most once
with :mod:`ast`, and names are followed through the repository's own imports. What cannot
be known without running the code (a prefix read from an unknown place, a body built at
run time) is left out rather than guessed: a wrong health check is worse than none.
"""

from __future__ import annotations

import ast
import json
import keyword
import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from slipway.project.tree import SKIPPED_DIRS, Tree

JsonScalar = str | int | bool

# Tests, fixtures and installed packages are not the app: an app object built in a test
# would otherwise compete with the real one.
_SKIPPED = SKIPPED_DIRS | {"tests", "test", "site-packages"}
_HTTP_VERBS = frozenset({"get", "post", "put", "patch", "delete", "head", "options", "trace"})
_DECORATORS = _HTTP_VERBS | {"api_route", "websocket"}
_REGISTERING_CALLS = frozenset({"include_router", "add_api_route", "add_api_websocket_route"})
_WEBSOCKET_VERBS = frozenset({"websocket", "add_api_websocket_route"})
_JSON_RESPONSES = frozenset({"JSONResponse", "ORJSONResponse", "UJSONResponse"})
_TEXT_RESPONSES = frozenset({"PlainTextResponse", "HTMLResponse", "Response"})
_APP_FILES = ("main.py", "server.py", "app.py", "asgi.py")
_PREFERRED_HEALTH = ("/health", "/healthz", "/api/health", "/api/healthz")
_BLOCK_FIELDS = frozenset({"body", "orelse", "finalbody", "handlers", "cases"})
_MAX_DEPTH = 25  # import chains and constant chains longer than this are cycles in practice

# Only files that can register routes are walked for them; the rest are parsed on demand
# when a name leads there. This keeps a repository of hundreds of files well under a second.
_WEB_TEXT = re.compile(
    r"FastAPI|APIRouter|include_router|add_api_route|add_api_websocket_route"
    r"|@\s*[\w.]+\.(?:get|post|put|patch|delete|head|options|trace|api_route|websocket)\s*\("
)
_DB_TEXT = re.compile(r"environ|getenv|sqlite|BaseSettings|\.(?:db|sqlite3?)[\"']", re.I)
_DB_NAME = re.compile(r"DB|DATABASE|SQLITE")
_PATHY_NAME = re.compile(r"PATH|FILE|SQLITE")
_SQLITE_URL = re.compile(r"sqlite(?:\+\w+)?:///(.*)", re.S)
_SQLITE_SUFFIX = re.compile(r"\.(?:db|db3|sqlite|sqlite3)$", re.I)


@dataclass(frozen=True)
class Route:
    """One path the app answers, with every router prefix applied."""

    path: str
    methods: tuple[str, ...]
    file: str
    line: int
    returns: dict[str, JsonScalar] | None = None
    returns_text: str | None = None
    replies: tuple[str, ...] = ()

    @property
    def websocket(self) -> bool:
        return "WEBSOCKET" in self.methods


@dataclass(frozen=True)
class DatabaseHint:
    """Where the app keeps its SQLite file: what backups and migrations must protect."""

    default: str | None
    env: str | None
    file: str
    line: int


@dataclass(frozen=True)
class AppInfo:
    """The FastAPI app of a repository and everything it serves."""

    workdir: str
    module: str
    attr: str
    file: str
    line: int
    routes: tuple[Route, ...]
    database: DatabaseHint | None
    # When the app object is built inside a function (``def create_app(): app = FastAPI()``)
    # and no module-level name holds it: that function, to run with ``uvicorn --factory``.
    factory: str | None = None

    def find(self, path: str) -> Route | None:
        """The route at exactly ``path``; FastAPI redirects a missing trailing slash, so a
        difference there still counts as the same route."""
        exact = next((r for r in self.routes if r.path == path), None)
        if exact is not None:
            return exact
        wanted = _without_slash(path)
        return next((r for r in self.routes if _without_slash(r.path) == wanted), None)

    def match(self, path: str) -> Route | None:
        """The route that would answer ``path``: like :meth:`find`, and ``{param}``
        segments match any value."""
        found = self.find(path)
        if found is not None:
            return found
        parts = _segments(path)
        return next((r for r in self.routes if _template_matches(_segments(r.path), parts)), None)

    def health(self) -> Route | None:
        """The route a health check should hit: a GET route about health, the plainest
        one (no parameters, the conventional names first, then the shortest)."""
        found = [r for r in self.routes if "GET" in r.methods and "health" in r.path.lower()]
        return min(found, key=_health_rank, default=None)

    def websockets(self) -> tuple[Route, ...]:
        return tuple(r for r in self.routes if r.websocket)


def find_app(tree: Tree, under: str = "") -> AppInfo | None:
    """The FastAPI app under ``under`` (a repository-relative directory), or None when no
    ``FastAPI()`` object is created there. With several, the one named ``app`` in a
    conventional entry file (main.py, server.py, app.py) on the shortest path wins."""
    reader = _Reader(tree, under)
    candidates = reader.candidates()
    if not candidates:
        return None
    return reader.app_info(min(candidates, key=_candidate_rank))


def route_exists(info: AppInfo, path: str) -> bool:
    """Whether a request for ``path`` (query string allowed) reaches one of the app's
    routes, so a configured check cannot silently hit a 404."""
    return info.match(urlsplit(path).path or "/") is not None


# --- matching -------------------------------------------------------------------------


def _without_slash(path: str) -> str:
    return path.rstrip("/") or "/"


def _segments(path: str) -> list[str]:
    return [part for part in path.strip("/").split("/") if part]


def _template_matches(template: list[str], parts: list[str]) -> bool:
    """FastAPI's path parameters: ``{x}`` is one segment, ``{x:path}`` the rest."""
    for index, piece in enumerate(template):
        if piece.startswith("{") and piece.endswith(":path}"):
            return len(parts) > index
        if index >= len(parts):
            return False
        is_param = piece.startswith("{") and piece.endswith("}")
        if not is_param and piece != parts[index]:
            return False
    return len(parts) == len(template)


def _health_rank(route: Route) -> tuple[bool, int, int, int, str]:
    path = _without_slash(route.path)
    preferred = (
        _PREFERRED_HEALTH.index(path) if path in _PREFERRED_HEALTH else len(_PREFERRED_HEALTH)
    )
    return ("{" in path, preferred, path.count("/"), len(path), path)


# --- what the reader works with -------------------------------------------------------


@dataclass(frozen=True)
class _Import:
    """A name bound by an import, resolved only when something asks for it."""

    module: str  # dotted module, "" for ``from . import x``
    level: int  # leading dots of a relative import
    attr: str | None  # the name taken from the module; None for ``import a.b``


_FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
# What a name is bound to: an expression, a def, a class, an import; None when it is bound
# to something not worth following (a parameter, a loop variable).
_Binding = ast.expr | _FunctionNode | ast.ClassDef | _Import | None
_Key = tuple[str, str]  # (file, qualified name): one router or app object


@dataclass(eq=False)
class _Scope:
    """The names visible in a module or in a function body."""

    file: str
    qual: str  # "" for a module, "create_app." inside ``def create_app``
    names: dict[str, _Binding]
    parent: _Scope | None = None
    stars: list[_Import] = field(default_factory=list)
    function: _FunctionNode | None = None  # the function whose body this is

    def imports(self) -> list[_Import]:
        return [b for b in [*self.names.values(), *self.stars] if isinstance(b, _Import)]


@dataclass(frozen=True)
class _Ref:
    """What a name turned out to mean."""

    kind: str  # "module" | "value" | "class" | "function"
    file: str
    qual: str
    node: ast.AST
    scope: _Scope

    @property
    def key(self) -> _Key:
        return (self.file, self.qual)


@dataclass(frozen=True)
class _Op:
    """A registration: a route decorator or call, or an ``include_router``."""

    verb: str
    call: ast.Call
    handler: _FunctionNode | None
    scope: _Scope


@dataclass(frozen=True)
class _Candidate:
    """A FastAPI object that could be the app, with the objects its routes hang on."""

    file: str
    line: int
    attr: str
    factory: str | None
    keys: tuple[_Key, ...]


def _candidate_rank(c: _Candidate) -> tuple[bool, bool, bool, int, int, str, int]:
    name = posixpath.basename(c.file)
    return (
        c.attr != "app",
        name not in _APP_FILES,
        c.factory is not None,
        c.file.count("/"),
        len(c.file),
        c.file,
        c.line,
    )


# --- syntax helpers -------------------------------------------------------------------


def _inside(path: str, under: str) -> bool:
    return not under or path == under or path.startswith(under + "/")


def _skipped(path: str) -> bool:
    """Test code and installed packages, which must never be mistaken for the app."""
    *dirs, name = path.split("/")
    is_test = name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"
    return is_test or any(d in _SKIPPED for d in dirs)


def _join(root: str, rel: str) -> str:
    return posixpath.join(root, rel) if root else rel


def _ancestors(directory: str, stop: str = "") -> list[str]:
    """``directory`` and each directory above it up to ``stop``, nearest first."""
    found = [directory]
    while directory and directory != stop:
        directory = posixpath.dirname(directory)
        found.append(directory)
    return found


def _dotted(file: str, root: str) -> str | None:
    """The module name of ``file`` when Python runs from ``root``; None if it cannot be."""
    rel = file[len(root) + 1 :] if root else file
    parts = rel.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    valid = parts and all(p.isidentifier() and not keyword.iskeyword(p) for p in parts)
    return ".".join(parts) if valid else None


def _flat(body: Iterable[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement of a block, inside if/try/with/for too, but not inside defs."""
    for stmt in body:
        yield stmt
        if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for block in _blocks(stmt):
                yield from _flat(block)


def _blocks(stmt: ast.stmt) -> Iterator[list[ast.stmt]]:
    for name in ("body", "orelse", "finalbody"):
        block = getattr(stmt, name, None)
        if isinstance(block, list):
            yield block
    for handler in getattr(stmt, "handlers", []):
        yield handler.body
    for case in getattr(stmt, "cases", []):
        yield case.body


def _header_nodes(stmt: ast.stmt) -> Iterator[ast.AST]:
    """The nodes of a statement outside its nested blocks (those are walked on their own,
    so a call in them must not be seen twice)."""
    for name, value in ast.iter_fields(stmt):
        if name in _BLOCK_FIELDS:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, ast.AST):
                yield from ast.walk(item)


def _bound(stmt: ast.stmt) -> Iterator[tuple[str, _Binding]]:
    """The names one statement binds, and to what ("*" for a star import)."""
    if isinstance(stmt, ast.Assign):
        for target in stmt.targets:
            if isinstance(target, ast.Name):
                yield target.id, stmt.value
    elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
        yield stmt.target.id, stmt.value
    elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        yield stmt.name, stmt
    elif isinstance(stmt, ast.Import):
        for alias in stmt.names:
            dotted = alias.name if alias.asname else alias.name.split(".")[0]
            yield alias.asname or dotted, _Import(dotted, 0, None)
    elif isinstance(stmt, ast.ImportFrom):
        for alias in stmt.names:
            attr = None if alias.name == "*" else alias.name
            yield alias.asname or alias.name, _Import(stmt.module or "", stmt.level, attr)


def _bindings(body: list[ast.stmt]) -> tuple[dict[str, _Binding], list[_Import]]:
    """A block's names (the first binding wins: ``app = Wrapper(app)`` keeps the app)."""
    names: dict[str, _Binding] = {}
    stars: list[_Import] = []
    for stmt in _flat(body):
        for name, value in _bound(stmt):
            if name == "*" and isinstance(value, _Import):
                stars.append(value)
            else:
                names.setdefault(name, value)
    return names, stars


def _own_nodes(fn: _FunctionNode) -> Iterator[ast.AST]:
    """The nodes of a function's body in source order, not those of functions in it."""
    nested = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef
    todo: list[ast.AST] = [s for s in reversed(fn.body) if not isinstance(s, nested)]
    while todo:
        node = todo.pop()
        yield node
        todo += reversed([c for c in ast.iter_child_nodes(node) if not isinstance(c, nested)])


def _statements(fn: _FunctionNode) -> Iterator[ast.stmt]:
    """A function's own statements (returns and assignments are statements, so this is
    enough for them and much cheaper than visiting every expression)."""
    nested = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    return (stmt for stmt in _flat(fn.body) if not isinstance(stmt, nested))


def _stored_names(stmt: ast.stmt) -> Iterator[str]:
    """Names a statement assigns (targets, loop variables, ``as`` names)."""
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, ast.AugAssign | ast.AnnAssign | ast.For | ast.AsyncFor):
        targets = [stmt.target]
    elif isinstance(stmt, ast.With | ast.AsyncWith):
        targets = [item.optional_vars for item in stmt.items if item.optional_vars]
    elif isinstance(stmt, ast.Try):
        yield from (handler.name for handler in stmt.handlers if handler.name)
    for target in targets:
        for node in ast.walk(target):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                yield node.id


def _callee(call: ast.Call) -> str | None:
    """The last name of what is called: ``FastAPI`` for ``fastapi.FastAPI(...)``."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def _built_by(expr: ast.AST, *names: str) -> bool:
    return isinstance(expr, ast.Call) and _callee(expr) in names


def _argument(call: ast.Call, index: int, name: str) -> ast.expr | None:
    if len(call.args) > index and not isinstance(call.args[index], ast.Starred):
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == name), None)


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _has_kwarg(call: ast.Call, name: str) -> bool:
    return any(k.arg == name for k in call.keywords)


def _splats(call: ast.Call) -> bool:
    """``**options`` may set anything, so nothing about the call is known for sure."""
    return any(k.arg is None for k in call.keywords)


def _const_str(expr: ast.AST | None) -> str | None:
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    return None


# --- the reader -----------------------------------------------------------------------


class _Reader:
    """One pass over a repository: each file read and parsed at most once."""

    def __init__(self, tree: Tree, under: str) -> None:
        self.tree = tree
        self.under = under.strip("/").removeprefix("./")
        self.all_paths = set(tree.paths())
        self.sources = sorted(
            p
            for p in self.all_paths
            if p.endswith(".py") and _inside(p, self.under) and not _skipped(p)
        )
        self.source_set = set(self.sources)
        self.dirs = {d for p in self.sources for d in _ancestors(posixpath.dirname(p))}
        self.texts: dict[str, str] = {}
        self.lines: dict[str, list[str]] = {}
        self.parsed: dict[str, _Scope | None] = {}
        self.trees: dict[str, ast.Module] = {}
        self.function_scopes: dict[ast.AST, _Scope] = {}
        self.class_names: dict[ast.AST, dict[str, _Binding]] = {}
        self.ops: dict[_Key, list[_Op]] = {}
        self.found: list[_Candidate] = []
        self.factories: list[tuple[_Ref, str]] = []

    # files and modules

    def text(self, path: str) -> str:
        if path not in self.texts:
            self.texts[path] = self.tree.read(path) or ""
        return self.texts[path]

    def module(self, path: str) -> _Scope | None:
        """The module scope of a file; None when it does not parse (skipped, not fatal)."""
        if path not in self.parsed:
            self.parsed[path] = None
            try:
                parsed = ast.parse(self.text(path), filename=path)
            except (SyntaxError, ValueError):
                return None
            names, stars = _bindings(parsed.body)
            self.trees[path] = parsed
            self.parsed[path] = _Scope(path, "", names, None, stars)
        return self.parsed[path]

    def package_root(self, directory: str) -> str:
        """The directory above the package chain (``__init__.py`` files) of ``directory``."""
        while directory and _join(directory, "__init__.py") in self.source_set:
            directory = posixpath.dirname(directory)
        return directory

    def roots(self, file: str) -> list[str]:
        """Where an absolute import in ``file`` may start: its package root first (how
        Python sees it), then each directory above it (namespace packages, scripts)."""
        directory = posixpath.dirname(file)
        return list(dict.fromkeys([self.package_root(directory), *_ancestors(directory)]))

    def find_module(self, root: str, dotted: str) -> str | None:
        rel = dotted.replace(".", "/")
        options = [_join(rel, "__init__.py"), rel + ".py"] if dotted else ["__init__.py"]
        return next((_join(root, o) for o in options if _join(root, o) in self.source_set), None)

    def module_file(self, file: str, dotted: str, level: int) -> str | None:
        if level:
            base = posixpath.dirname(file)
            for _ in range(level - 1):
                base = posixpath.dirname(base)
            return self.find_module(base, dotted)
        return next(filter(None, (self.find_module(r, dotted) for r in self.roots(file))), None)

    def module_ref(self, path: str | None) -> _Ref | None:
        scope = self.module(path) if path else None
        if path is None or scope is None:
            return None
        return _Ref("module", path, "", self.trees[path], scope)

    # names

    def lookup(self, scope: _Scope, name: str, depth: int = 0) -> _Ref | None:
        """What ``name`` means in ``scope``, following imports within the repository."""
        current: _Scope | None = scope
        module = scope
        while current is not None:
            if name in current.names:
                return self.ref(current, name, current.names[name], depth)
            module, current = current, current.parent
        for star in module.stars:
            target = self.module_ref(self.module_file(module.file, star.module, star.level))
            found = self.member(target, name, depth + 1) if target else None
            if found is not None:
                return found
        return None

    def ref(self, scope: _Scope, name: str, binding: _Binding, depth: int) -> _Ref | None:
        if binding is None or depth > _MAX_DEPTH:
            return None
        if isinstance(binding, _Import):
            return self.imported(scope.file, binding, depth + 1)
        kind = "value"
        if isinstance(binding, ast.ClassDef):
            kind = "class"
        elif isinstance(binding, ast.FunctionDef | ast.AsyncFunctionDef):
            kind = "function"
        return _Ref(kind, scope.file, scope.qual + name, binding, scope)

    def imported(self, file: str, imp: _Import, depth: int) -> _Ref | None:
        """``from m import x`` is x of module m, or else the submodule m.x."""
        target = self.module_ref(self.module_file(file, imp.module, imp.level))
        if imp.attr is None:
            return target
        found = self.member(target, imp.attr, depth)
        if found is not None:
            return found
        dotted = f"{imp.module}.{imp.attr}" if imp.module else imp.attr
        return self.module_ref(self.module_file(file, dotted, imp.level))

    def member(self, owner: _Ref | None, attr: str, depth: int) -> _Ref | None:
        """``owner.attr`` when owner is a module: a name in it, or a submodule."""
        if owner is None or owner.kind != "module" or depth > _MAX_DEPTH:
            return None
        if attr in owner.scope.names or owner.scope.stars:
            found = self.lookup(owner.scope, attr, depth)
            if found is not None:
                return found
        if not owner.file.endswith("__init__.py"):
            return None
        return self.module_ref(self.find_module(posixpath.dirname(owner.file), attr))

    def resolve(self, expr: ast.AST, scope: _Scope, depth: int = 0) -> _Ref | None:
        if depth > _MAX_DEPTH:
            return None
        if isinstance(expr, ast.Name):
            return self.lookup(scope, expr.id, depth)
        if isinstance(expr, ast.Attribute):
            owner = self.resolve(expr.value, scope, depth + 1)
            return self.member(owner, expr.attr, depth + 1)
        return None

    def function_scope(self, parent: _Scope, fn: _FunctionNode) -> _Scope:
        """A function's own names; parameters and loop variables shadow outer names."""
        if fn not in self.function_scopes:
            names, _ = _bindings(fn.body)
            params = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
            params += [a for a in (fn.args.vararg, fn.args.kwarg) if a is not None]
            for arg in params:
                names[arg.arg] = None
            for stmt in _statements(fn):
                for name in _stored_names(stmt):
                    names.setdefault(name, None)
            qual = f"{parent.qual}{fn.name}."
            self.function_scopes[fn] = _Scope(parent.file, qual, names, parent, [], fn)
        return self.function_scopes[fn]

    # constants

    def string(self, expr: ast.AST | None, scope: _Scope, depth: int = 0) -> str | None:
        """The string an expression always has: constants, names of constants, f-strings
        and sums of them, settings defaults. None when it depends on run time."""
        if expr is None or depth > _MAX_DEPTH:
            return None
        if isinstance(expr, ast.Constant):
            return _const_str(expr)
        if isinstance(expr, ast.JoinedStr):
            return self.fstring(expr, scope, depth)
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            left = self.string(expr.left, scope, depth + 1)
            right = self.string(expr.right, scope, depth + 1)
            return None if left is None or right is None else left + right
        if isinstance(expr, ast.Call):
            return self.call_default(expr, scope, depth)
        ref = self.resolve(expr, scope, depth + 1)
        if ref is not None:
            return self.string(ref.node, ref.scope, depth + 1) if ref.kind == "value" else None
        if isinstance(expr, ast.Attribute):
            return self.setting(expr, scope, depth + 1)
        return None

    def fstring(self, expr: ast.JoinedStr, scope: _Scope, depth: int) -> str | None:
        parts: list[str] = []
        for value in expr.values:
            if isinstance(value, ast.FormattedValue):
                plain = value.conversion == -1 and value.format_spec is None
                text = self.string(value.value, scope, depth + 1) if plain else None
            else:
                text = _const_str(value)
            if text is None:
                return None
            parts.append(text)
        return "".join(parts)

    def call_default(self, call: ast.Call, scope: _Scope, depth: int) -> str | None:
        """``Field("/api")``, ``os.getenv("PREFIX", "/api")``: the default, as for settings."""
        name = _callee(call)
        if name == "Field":
            return self.string(_argument(call, 0, "default"), scope, depth + 1)
        if name in ("getenv", "get") and _is_env_lookup(call):
            return self.string(_argument(call, 1, "default"), scope, depth + 1)
        return None

    def setting(self, expr: ast.Attribute, scope: _Scope, depth: int) -> str | None:
        """``settings.API_V1_STR``: the class default of the attribute."""
        cls = self.class_of(expr.value, scope, depth + 1)
        return self.class_attr(cls, expr.attr, depth + 1) if cls else None

    def class_of(self, expr: ast.AST, scope: _Scope, depth: int) -> _Ref | None:
        """The class of ``Settings``, ``settings = Settings()`` or ``get_settings()``."""
        if depth > _MAX_DEPTH:
            return None
        if isinstance(expr, ast.Call):
            return self.instance_class(expr, scope, depth + 1)
        ref = self.resolve(expr, scope, depth + 1)
        if ref is None:
            return None
        if ref.kind == "class":
            return ref
        if ref.kind == "value" and isinstance(ref.node, ast.Call):
            return self.instance_class(ref.node, ref.scope, depth + 1)
        return None

    def instance_class(self, call: ast.Call, scope: _Scope, depth: int) -> _Ref | None:
        made = self.resolve(call.func, scope, depth + 1)
        if made is None or depth > _MAX_DEPTH:
            return None
        if made.kind == "class":
            return made
        if made.kind != "function" or not isinstance(made.node, _FunctionNode):
            return None
        body = self.function_scope(made.scope, made.node)
        returned = [s.value for s in _statements(made.node) if isinstance(s, ast.Return)]
        calls = [r for r in returned if isinstance(r, ast.Call)]
        return self.instance_class(calls[0], body, depth + 1) if len(calls) == 1 else None

    def class_attr(self, cls: _Ref, attr: str, depth: int) -> str | None:
        if depth > _MAX_DEPTH or not isinstance(cls.node, ast.ClassDef):
            return None
        names = self.class_body(cls.node)
        if attr in names:
            value = names[attr]
            return self.string(value, cls.scope, depth + 1) if isinstance(value, ast.expr) else None
        for base in cls.node.bases:
            parent = self.resolve(base, cls.scope, depth + 1)
            found = self.class_attr(parent, attr, depth + 1) if parent else None
            if found is not None:
                return found
        return None

    def class_body(self, cls: ast.ClassDef) -> dict[str, _Binding]:
        if cls not in self.class_names:
            self.class_names[cls] = _bindings(cls.body)[0]
        return self.class_names[cls]

    # registrations

    def candidates(self) -> list[_Candidate]:
        """Walk every file that may create an app or register routes, once."""
        for path in self.sources:
            if _WEB_TEXT.search(self.text(path)):
                scope = self.module(path)
                if scope is not None:
                    self.walk(scope, self.trees[path].body)
        for fn_ref, attr in self.factories:
            self.found += self.factory_users(fn_ref, attr)
        return self.found

    def walk(self, scope: _Scope, body: list[ast.stmt]) -> None:
        """Record the apps and registrations of a module or function body."""
        self.note_apps(scope)
        self.walk_block(scope, body)

    def walk_block(self, scope: _Scope, body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in stmt.decorator_list:
                    self.decorator(scope, decorator, stmt)
                if self.may_register(scope.file, stmt):
                    self.walk(self.function_scope(scope, stmt), stmt.body)
            elif isinstance(stmt, ast.ClassDef):
                self.walk_block(scope, stmt.body)
            else:
                self.registering_calls(scope, stmt)
                for block in _blocks(stmt):
                    self.walk_block(scope, block)

    def may_register(self, file: str, fn: _FunctionNode) -> bool:
        """Whether a function's body mentions apps or routing at all: most handlers do not,
        and skipping them keeps large repositories fast."""
        lines = self.lines.get(file)
        if lines is None:
            lines = self.lines[file] = self.text(file).splitlines()
        body = "\n".join(lines[fn.body[0].lineno - 1 : fn.end_lineno or len(lines)])
        return bool(_WEB_TEXT.search(body))

    def note_apps(self, scope: _Scope) -> None:
        """``app = FastAPI(...)`` in this scope: a candidate (a factory when in a function)."""
        for name, binding in scope.names.items():
            if not isinstance(binding, ast.Call) or not _built_by(binding, "FastAPI"):
                continue
            factory = scope.qual.rstrip(".") or None
            key = (scope.file, scope.qual + name)
            self.found.append(_Candidate(scope.file, binding.lineno, name, factory, (key,)))
            parent, fn = scope.parent, scope.function
            if parent is not None and fn is not None and parent.names.get(fn.name) is fn:
                fn_ref = _Ref("function", parent.file, fn.name, fn, parent)
                self.factories.append((fn_ref, name))

    def decorator(self, scope: _Scope, decorator: ast.expr, fn: _FunctionNode) -> None:
        if not isinstance(decorator, ast.Call) or not isinstance(decorator.func, ast.Attribute):
            return
        if decorator.func.attr in _DECORATORS:
            self.register(scope, decorator.func, decorator, fn)

    def registering_calls(self, scope: _Scope, stmt: ast.stmt) -> None:
        for node in _header_nodes(stmt):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _REGISTERING_CALLS
            ):
                self.register(scope, node.func, node, None)

    def register(
        self, scope: _Scope, func: ast.Attribute, call: ast.Call, fn: _FunctionNode | None
    ) -> None:
        target = self.resolve(func.value, scope)
        if target is not None and target.kind == "value":
            self.ops.setdefault(target.key, []).append(_Op(func.attr, call, fn, scope))

    def factory_users(self, fn_ref: _Ref, local: str) -> list[_Candidate]:
        """Module-level ``app = create_app()`` anywhere: the app as uvicorn would load it."""
        if not isinstance(fn_ref.node, _FunctionNode) or not _returns_name(fn_ref.node, local):
            return []
        name = fn_ref.node.name
        pattern = re.compile(rf"\b{re.escape(name)}\s*\(")
        found: list[_Candidate] = []
        for path in self.sources:
            scope = self.module(path) if pattern.search(self.text(path)) else None
            if scope is not None:
                found += self.factory_calls(scope, fn_ref, local)
        return found

    def factory_calls(self, scope: _Scope, fn_ref: _Ref, local: str) -> list[_Candidate]:
        found: list[_Candidate] = []
        for attr, binding in scope.names.items():
            if not isinstance(binding, ast.Call):
                continue
            made = self.resolve(binding.func, scope)
            if made is not None and made.node is fn_ref.node:
                keys = ((fn_ref.file, f"{fn_ref.qual}.{local}"), (scope.file, attr))
                found.append(_Candidate(scope.file, binding.lineno, attr, None, keys))
        return found

    # routes

    def routes(self, keys: Iterable[_Key]) -> tuple[Route, ...]:
        found: dict[tuple[str, tuple[str, ...], str, int], Route] = {}
        for key in keys:
            for route in self.routes_of(key, "", frozenset()):
                found.setdefault((route.path, route.methods, route.file, route.line), route)
        return tuple(found.values())

    def routes_of(self, key: _Key, prefix: str, seen: frozenset[_Key]) -> Iterator[Route]:
        if key in seen:
            return
        for op in self.ops.get(key, []):
            if op.verb == "include_router":
                yield from self.included(op, prefix, seen | {key})
            else:
                route = self.route(op, prefix)
                if route is not None:
                    yield route

    def included(self, op: _Op, prefix: str, seen: frozenset[_Key]) -> Iterator[Route]:
        """Routes of an included router, under the include's and the router's prefixes;
        none at all when either prefix is unknown."""
        router_expr = _argument(op.call, 0, "router")
        target = self.resolve(router_expr, op.scope) if router_expr else None
        if target is None or target.kind != "value" or _splats(op.call):
            return
        extra = self.string(_keyword(op.call, "prefix"), op.scope)
        own = self.router_prefix(target)
        if own is None or (extra is None and _has_kwarg(op.call, "prefix")):
            return
        yield from self.routes_of(target.key, prefix + (extra or "") + own, seen)

    def router_prefix(self, router: _Ref) -> str | None:
        """The router's own prefix; None (unknown) unless it is built right there by
        ``APIRouter(...)`` (or a subclass named ...Router) with a known prefix."""
        call = router.node
        if not isinstance(call, ast.Call) or _splats(call):
            return None
        if not (_callee(call) or "").endswith("Router"):
            return None
        if not _has_kwarg(call, "prefix"):
            return ""
        return self.string(_keyword(call, "prefix"), router.scope)

    def route(self, op: _Op, prefix: str) -> Route | None:
        path = self.string(_argument(op.call, 0, "path"), op.scope)
        if path is None:
            return None
        methods = self.methods(op)
        handler, file = op.handler, op.scope.file
        if handler is None:
            endpoint = _argument(op.call, 1, "endpoint")
            ref = self.resolve(endpoint, op.scope) if endpoint else None
            if ref is not None and isinstance(ref.node, _FunctionNode):
                handler, file = ref.node, ref.file
        if handler is None:
            return Route(prefix + path, methods, file, op.call.lineno)
        returns, text = _returned(handler) if op.verb not in _WEBSOCKET_VERBS else (None, None)
        replies = _replies(handler) if op.verb in _WEBSOCKET_VERBS else ()
        return Route(prefix + path, methods, file, handler.lineno, returns, text, replies)

    def methods(self, op: _Op) -> tuple[str, ...]:
        if op.verb in _HTTP_VERBS:
            return (op.verb.upper(),)
        if op.verb in _WEBSOCKET_VERBS:
            return ("WEBSOCKET",)
        listed = _keyword(op.call, "methods")
        if listed is None:
            return ("GET",)
        if not isinstance(listed, ast.List | ast.Tuple | ast.Set):
            return ()
        return tuple(m.upper() for m in map(_const_str, listed.elts) if m)

    # the app

    def app_info(self, candidate: _Candidate) -> AppInfo:
        workdir = self.workdir(candidate.file)
        module = _dotted(candidate.file, workdir) or ""
        return AppInfo(
            workdir=workdir or ".",
            module=module,
            attr=candidate.attr,
            file=candidate.file,
            line=candidate.line,
            routes=self.routes(candidate.keys),
            database=self.database(workdir, candidate.file),
            factory=candidate.factory,
        )

    def workdir(self, file: str) -> str:
        """Where to run so that the app's module imports: above its package chain, or for
        a file outside any package, where its own imports resolve (the nearest such
        directory holding pyproject.toml first)."""
        directory = posixpath.dirname(file)
        if _join(directory, "__init__.py") in self.source_set:
            root = self.package_root(directory)
            if _dotted(file, root):
                return root
        scope = self.module(file)
        imports = scope.imports() if scope else []
        valid = [r for r in _ancestors(directory, self.under) if self.runs_from(file, r, imports)]
        projects = [r for r in valid if _join(r, "pyproject.toml") in self.all_paths]
        return (projects or valid or [directory])[0]

    def runs_from(self, file: str, root: str, imports: list[_Import]) -> bool:
        """Whether ``file`` imports as a module when Python starts in ``root``: its name is
        valid there, its relative imports stay inside packages (``from ..x`` needs two
        levels), and each of its absolute imports of this repository's modules resolves."""
        module = _dotted(file, root)
        if module is None:
            return False
        if module.count(".") < max((i.level for i in imports), default=0):
            return False
        here = _ancestors(posixpath.dirname(file), self.under)
        ours = [
            i.module
            for i in imports
            if i.level == 0 and any(self.importable(r, i.module.split(".")[0]) for r in here)
        ]
        return all(self.importable(root, dotted) for dotted in ours)

    def importable(self, root: str, dotted: str) -> bool:
        """A module or a namespace package (a directory) ``dotted`` under ``root``."""
        path = _join(root, dotted.replace(".", "/"))
        return self.find_module(root, dotted) is not None or path in self.dirs

    def database(self, workdir: str, app_file: str) -> DatabaseHint | None:
        """The best hint of the SQLite file: an environment variable with a default beats
        a bare default, which beats a bare variable; nearer the app breaks ties."""
        scored: list[tuple[int, bool, str, int, DatabaseHint]] = []
        for path in self.sources:
            if not _inside(path, workdir) or not _DB_TEXT.search(self.text(path)):
                continue
            scope = self.module(path)
            if scope is None:
                continue
            for score, hint in _db_hints(self.trees[path], path):
                scored.append((-score, path != app_file, path, hint.line, hint))
        return min(scored, key=lambda s: s[:4])[4] if scored else None


# --- what handlers return -------------------------------------------------------------

_Body = tuple[dict[str, JsonScalar] | None, str | None]
_UNKNOWN: _Body = (None, None)


def _returns_name(fn: _FunctionNode, name: str) -> bool:
    return any(
        isinstance(n, ast.Return) and isinstance(n.value, ast.Name) and n.value.id == name
        for n in _statements(fn)
    )


def _returned(fn: _FunctionNode) -> _Body:
    """What the handler returns on success, when every successful return plainly says the
    same thing. Returns with an error status (``JSONResponse(..., status_code=503)``) are
    the failure path a health check should not expect, so they are left out."""
    statements = list(_statements(fn))
    local = _single_assignments(statements)
    bodies = [_response_body(s.value, local) for s in statements if isinstance(s, ast.Return)]
    successes = [b for b in bodies if b is not None]
    if not successes or any(b != successes[0] for b in successes):
        return _UNKNOWN
    return successes[0]


def _single_assignments(statements: list[ast.stmt]) -> dict[str, ast.expr]:
    """Local names assigned exactly once, so a returned name means that value."""
    counts: dict[str, int] = {}
    values: dict[str, ast.expr] = {}
    for stmt in statements:
        for name in _stored_names(stmt):
            counts[name] = counts.get(name, 0) + 1
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            if isinstance(target, ast.Name):
                values[target.id] = stmt.value
    return {name: value for name, value in values.items() if counts.get(name) == 1}


def _response_body(expr: ast.expr | None, local: dict[str, ast.expr]) -> _Body | None:
    """The body one ``return`` sends; None when it is an error response."""
    if expr is None:
        return _UNKNOWN
    if isinstance(expr, ast.Call) and _callee(expr) in _JSON_RESPONSES | _TEXT_RESPONSES:
        if _error_status(_argument(expr, 1, "status_code")):
            return None
        content = _argument(expr, 0, "content")
        if _callee(expr) in _TEXT_RESPONSES:
            return (None, _const_str(content))
        return _json_body(content, local)
    return _json_body(expr, local)


def _error_status(expr: ast.expr | None) -> bool:
    """``503`` or ``status.HTTP_503_SERVICE_UNAVAILABLE``."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, int):
        return expr.value >= 400
    digits = re.match(r"HTTP_(\d{3})_", expr.attr) if isinstance(expr, ast.Attribute) else None
    return digits is not None and int(digits.group(1)) >= 400


def _json_body(expr: ast.expr | None, local: dict[str, ast.expr]) -> _Body:
    """Literal values only: a name's value may change per release (a version) or per call,
    and a check that expects it would fail for the wrong reason."""
    via_name = isinstance(expr, ast.Name) and expr.id in local
    if isinstance(expr, ast.Name) and via_name:
        expr = local[expr.id]
    if isinstance(expr, ast.Dict):
        return _dict_body(expr, exact=not via_name)
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str | int | float | bool):
        return (None, _json_text(expr.value))
    if isinstance(expr, ast.Constant) and expr.value is None:
        return (None, "null")
    return _UNKNOWN


def _dict_body(expr: ast.Dict, exact: bool) -> _Body:
    """The constant items of a dict literal; its exact JSON text only when every item is
    constant and nothing could have changed it since (it is returned as written)."""
    kept: dict[str, JsonScalar] = {}
    everything: dict[str, object] = {}
    for key, value in zip(expr.keys, expr.values, strict=True):
        name = _const_str(key)
        if name is None or not isinstance(value, ast.Constant):
            exact = False
            continue
        everything[name] = value.value
        if isinstance(value.value, str | int | bool):
            kept[name] = value.value
    text = _json_text(everything) if exact and _jsonable(everything) else None
    return (kept or None, text)


def _jsonable(value: dict[str, object]) -> bool:
    return all(v is None or isinstance(v, str | int | float | bool) for v in value.values())


def _json_text(value: object) -> str:
    """As FastAPI's JSONResponse and Starlette's send_json render it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _replies(fn: _FunctionNode) -> tuple[str, ...]:
    """Messages a websocket handler sends that are known before it runs."""
    found: list[str] = []
    for node in _own_nodes(fn):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        sent = node.args[0] if node.args else None
        if node.func.attr == "send_text" and _const_str(sent) is not None:
            found.append(str(_const_str(sent)))
        elif node.func.attr == "send_json" and isinstance(sent, ast.Dict):
            text = _dict_body(sent, exact=True)[1]
            if text is not None:
                found.append(text)
    return tuple(dict.fromkeys(found))


# --- where the database lives ---------------------------------------------------------


def _is_env_lookup(call: ast.Call) -> bool:
    """``os.environ.get(...)``, ``environ.get(...)``, ``os.getenv(...)``, ``getenv(...)``."""
    func = call.func
    if _callee(call) == "getenv":
        return True
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "get"
        and _last_name(func.value) == "environ"
    )


def _last_name(expr: ast.expr) -> str | None:
    if isinstance(expr, ast.Name):
        return expr.id
    return expr.attr if isinstance(expr, ast.Attribute) else None


def _db_hints(module: ast.Module, file: str) -> Iterator[tuple[int, DatabaseHint]]:
    for node in ast.walk(module):
        if isinstance(node, ast.Call):
            yield from _call_hints(node, file)
        elif isinstance(node, ast.Subscript) and _last_name(node.value) == "environ":
            yield from _scored(_const_str(node.slice), None, file, node.lineno)
        elif isinstance(node, ast.ClassDef):
            yield from _settings_hints(node, file)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            for name, value in _bound(node):
                raw = _const_str(value) if isinstance(value, ast.expr) else None
                yield from _scored(None, raw, file, node.lineno, named=name.upper())
        elif isinstance(node, ast.Constant) and _SQLITE_URL.match(_const_str(node) or ""):
            yield from _scored(None, _const_str(node), file, node.lineno, sqlite=True)


def _call_hints(call: ast.Call, file: str) -> Iterator[tuple[int, DatabaseHint]]:
    if _is_env_lookup(call):
        name = _const_str(_argument(call, 0, "key"))
        default = _const_str(_argument(call, 1, "default"))
        yield from _scored(name, default, file, call.lineno)
    elif (
        _callee(call) == "connect"
        and isinstance(call.func, ast.Attribute)
        and _last_name(call.func.value) in ("sqlite3", "aiosqlite")
    ):
        raw = _const_str(_argument(call, 0, "database"))
        yield from _scored(None, raw, file, call.lineno, sqlite=True)


def _settings_hints(cls: ast.ClassDef, file: str) -> Iterator[tuple[int, DatabaseHint]]:
    """Fields like ``DATABASE_PATH: str = "data/app.db"`` of a pydantic settings class,
    which is also read from the environment variable of the same name."""
    if not any("Settings" in (_last_name(b) or "") for b in cls.bases):
        return
    prefix = _env_prefix(cls)
    for stmt in cls.body:
        for name, value in _bound(stmt):
            if isinstance(value, ast.Call) and _built_by(value, "Field"):
                value = _argument(value, 0, "default")
            raw = _const_str(value) if isinstance(value, ast.expr) else None
            if raw is not None:
                yield from _scored((prefix + name).upper(), raw, file, stmt.lineno)


def _env_prefix(cls: ast.ClassDef) -> str:
    """``model_config = SettingsConfigDict(env_prefix="APP_")`` or ``class Config``."""
    names = _bindings(cls.body)[0]
    config = names.get("model_config")
    if isinstance(config, ast.Call):
        return _const_str(_keyword(config, "env_prefix")) or ""
    inner = names.get("Config")
    if isinstance(inner, ast.ClassDef):
        value = _bindings(inner.body)[0].get("env_prefix")
        return (_const_str(value) if isinstance(value, ast.expr) else None) or ""
    return ""


def _scored(
    env: str | None,
    raw: str | None,
    file: str,
    line: int,
    named: str | None = None,
    sqlite: bool = False,
) -> Iterator[tuple[int, DatabaseHint]]:
    """A hint and how much to trust it. Nothing when it is not about a SQLite file: a
    ``DB_HOST``, a ``postgresql://`` URL, a name with no database in it. A value counts
    when it surely is SQLite (a URL, ``sqlite3.connect``, a .db/.sqlite file) or the name
    says it is a path (``DATABASE_PATH``, ``SQLITE_FILE``)."""
    name = env or named
    if name is not None and not _DB_NAME.search(name):
        return
    pathy = name is not None and bool(_PATHY_NAME.search(name))
    default = _sqlite_path(raw) if raw is not None else None
    if raw is not None and (default is None or not (sqlite or pathy or _looks_sqlite(raw))):
        return
    if env is not None and default is not None:
        yield 3, DatabaseHint(default, env, file, line)
    elif default is not None:
        yield 2, DatabaseHint(default, None, file, line)
    elif env is not None and pathy:
        yield 1, DatabaseHint(None, env, file, line)


def _looks_sqlite(raw: str) -> bool:
    path = raw.split("?", 1)[0]
    return bool(_SQLITE_URL.match(raw)) or bool(_SQLITE_SUFFIX.search(path))


def _sqlite_path(raw: str) -> str | None:
    """``sqlite+aiosqlite:///./data/app.db?mode=rwc`` → ``data/app.db``; None for memory
    databases and for URLs of other databases."""
    url = _SQLITE_URL.match(raw)
    if url is None and "://" in raw:
        return None
    path = (url.group(1) if url else raw).split("?", 1)[0]
    while path.startswith("./"):
        path = path[2:]
    if path in ("", ":memory:") or path.startswith("file::memory:"):
        return None
    return path
