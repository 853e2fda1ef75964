"""slipway.project.fastapi: what a FastAPI backend serves, read statically from its files."""

from __future__ import annotations

import time
from pathlib import Path
from textwrap import dedent

import pytest

from slipway.project.fastapi import AppInfo, DatabaseHint, Route, find_app, route_exists
from slipway.project.tree import DictTree, DirTree

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "codeframe-mini"


def read(files: dict[str, str], under: str = "") -> AppInfo:
    info = find_app(DictTree({path: dedent(text) for path, text in files.items()}), under)
    assert info is not None
    return info


def paths(info: AppInfo) -> list[str]:
    return [route.path for route in info.routes]


def route(info: AppInfo, path: str) -> Route:
    found = info.find(path)
    assert found is not None, f"{path} not in {paths(info)}"
    return found


# --- the app object and its own routes --------------------------------------------------


def test_decorators_and_calls_on_the_app() -> None:
    info = read({"main.py": """
            import fastapi

            app = fastapi.FastAPI(title="x")

            @app.get("/a")
            def a(): return {"ok": True}

            @app.post("/b")
            async def b(): ...

            @app.put("/c")
            def c(): ...

            @app.patch("/d")
            def d(): ...

            @app.delete("/e")
            def e(): ...

            @app.head("/f")
            def f(): ...

            @app.options("/g")
            def g(): ...

            @app.api_route("/h", methods=["get", "POST"])
            def h(): ...

            @app.api_route("/i")
            def i(): ...

            @app.websocket("/ws")
            async def ws(socket): ...

            def listed(): return "pong"

            async def stream(socket): await socket.send_text("hi")

            app.add_api_route("/listed", listed, methods=["PUT"])
            app.add_api_route(path="/plain", endpoint=listed)
            app.add_api_websocket_route("/stream", stream)
            """})
    methods = {r.path: r.methods for r in info.routes}
    assert methods == {
        "/a": ("GET",),
        "/b": ("POST",),
        "/c": ("PUT",),
        "/d": ("PATCH",),
        "/e": ("DELETE",),
        "/f": ("HEAD",),
        "/g": ("OPTIONS",),
        "/h": ("GET", "POST"),
        "/i": ("GET",),
        "/ws": ("WEBSOCKET",),
        "/listed": ("PUT",),
        "/plain": ("GET",),
        "/stream": ("WEBSOCKET",),
    }
    assert (info.workdir, info.module, info.attr, info.factory) == (".", "main", "app", None)
    assert (info.file, info.line) == ("main.py", 4)
    assert route(info, "/a").line == 7
    assert route(info, "/listed").returns_text == '"pong"'
    assert route(info, "/stream").replies == ("hi",)
    assert [r.path for r in info.websockets()] == ["/ws", "/stream"]


def test_no_app_is_none() -> None:
    tree = DictTree({"lib.py": "from fastapi import APIRouter\nrouter = APIRouter()\n"})
    assert find_app(tree) is None
    assert find_app(DictTree({})) is None


def test_several_apps_prefer_app_in_an_entry_file_on_the_shortest_path() -> None:
    files = {
        "svc/api/main.py": "from fastapi import FastAPI\napp = FastAPI()\n",
        "svc/main.py": "from fastapi import FastAPI\napp = FastAPI()\n",
        "svc/other.py": "from fastapi import FastAPI\napp = FastAPI()\n",
        "svc/server.py": "from fastapi import FastAPI\napi = FastAPI()\n",
        "tools/admin.py": "from fastapi import FastAPI\napp = FastAPI()\n",
    }
    assert read(files).file == "svc/main.py"


# --- routers, prefixes and imports ------------------------------------------------------


def test_routers_across_modules_with_prefixes_and_chained_includes() -> None:
    info = read(
        {
            "app/__init__.py": "",
            "app/main.py": """
            from fastapi import FastAPI
            from app.api.main import api_router
            import app.extra as extra

            API = "/api"
            app = FastAPI()
            app.include_router(api_router, prefix=API)
            app.include_router(extra.router)
            """,
            "app/api/__init__.py": "",
            "app/api/main.py": """
            from fastapi import APIRouter
            from .routes import utils
            from app.api.routes import items

            api_router = APIRouter()
            api_router.include_router(items.router, prefix="/items", tags=["items"])
            api_router.include_router(utils.router)
            """,
            "app/api/routes/__init__.py": "",
            "app/api/routes/items.py": """
            from fastapi import APIRouter
            router = APIRouter()

            @router.get("/")
            def list_items(): ...

            @router.get("/{item_id}")
            def get_item(item_id: int): ...
            """,
            "app/api/routes/utils.py": """
            from fastapi import APIRouter
            router = APIRouter(prefix="/utils", tags=["utils"])

            @router.get("/ping")
            def ping(): return "pong"
            """,
            "app/extra.py": """
            from fastapi import APIRouter
            router = APIRouter(prefix="/extra")

            @router.post("")
            def extra(): ...
            """,
        }
    )
    assert paths(info) == ["/api/items/", "/api/items/{item_id}", "/api/utils/ping", "/extra"]
    assert route(info, "/api/utils/ping").file == "app/api/routes/utils.py"
    assert route(info, "/extra").methods == ("POST",)


def test_prefixes_from_constants_fstrings_and_settings() -> None:
    info = read(
        {
            "app/__init__.py": "",
            "app/core/__init__.py": "",
            "app/core/config.py": """
            from functools import lru_cache
            from pydantic import Field
            from pydantic_settings import BaseSettings

            VERSION = "v2"

            class Base(BaseSettings):
                INHERITED: str = "/inherited"

            class Settings(Base):
                API_V1_STR: str = "/api/v1"
                FIELDED: str = Field(default="/fielded")
                PLAIN = "/plain-attr"
                UNKNOWN: str

            class Plain:
                PREFIX = f"/{VERSION}"

            settings = Settings()

            @lru_cache
            def get_settings() -> Settings:
                return Settings()
            """,
            "app/main.py": """
            import os
            from fastapi import FastAPI, APIRouter
            from app.core import config
            from app.core.config import settings, get_settings, Plain, VERSION

            router = APIRouter()

            @router.get("/x")
            def x(): ...

            ROOT = "/root"
            app = FastAPI()
            app.include_router(router, prefix=settings.API_V1_STR)
            app.include_router(router, prefix=config.settings.FIELDED)
            app.include_router(router, prefix=settings.INHERITED)
            app.include_router(router, prefix=settings.PLAIN)
            app.include_router(router, prefix=get_settings().API_V1_STR + "/call")
            app.include_router(router, prefix=Plain.PREFIX)
            app.include_router(router, prefix=f"{ROOT}/{VERSION}")
            app.include_router(router, prefix=os.getenv("API_PREFIX", "/env"))
            app.include_router(router, prefix=settings.UNKNOWN)
            app.include_router(router, prefix=settings.MISSING)
            app.include_router(router, prefix=some_call())
            """,
        }
    )
    assert paths(info) == [
        "/api/v1/x",
        "/fielded/x",
        "/inherited/x",
        "/plain-attr/x",
        "/api/v1/call/x",
        "/v2/x",
        "/root/v2/x",
        "/env/x",
    ]


def test_unresolved_prefixes_leave_their_routes_out() -> None:
    info = read({"main.py": """
            from fastapi import FastAPI, APIRouter
            from somewhere import PREFIX, make_router

            known = APIRouter()
            unknown_own = APIRouter(prefix=PREFIX)
            splatted = APIRouter(**options)
            built = make_router()

            @known.get("/k")
            def k(): ...

            @unknown_own.get("/u")
            def u(): ...

            @splatted.get("/s")
            def s(): ...

            @built.get("/b")
            def b(): ...

            @app.get(PREFIX + "/route")
            def r(): ...

            app = FastAPI()
            app.include_router(known, prefix=PREFIX)
            app.include_router(known)
            app.include_router(unknown_own)
            app.include_router(splatted)
            app.include_router(built)
            """})
    assert paths(info) == ["/k"]


def test_include_cycles_end() -> None:
    info = read({"main.py": """
            from fastapi import FastAPI, APIRouter
            a = APIRouter(prefix="/a")
            b = APIRouter(prefix="/b")
            a.include_router(b)
            b.include_router(a)

            @b.get("/x")
            def x(): ...

            app = FastAPI()
            app.include_router(a)
            """})
    assert paths(info) == ["/a/b/x"]


def test_full_stack_fastapi_template_layout() -> None:
    info = read(
        {
            "README.md": "# Full Stack FastAPI Template\n",
            "frontend/package.json": "{}",
            "backend/pyproject.toml": "[project]\nname = 'app'\n",
            "backend/app/__init__.py": "",
            "backend/app/main.py": """
            import sentry_sdk
            from fastapi import FastAPI
            from fastapi.routing import APIRoute
            from starlette.middleware.cors import CORSMiddleware

            from app.api.main import api_router
            from app.core.config import settings


            def custom_generate_unique_id(route: APIRoute) -> str:
                return f"{route.tags[0]}-{route.name}"


            app = FastAPI(
                title=settings.PROJECT_NAME,
                openapi_url=f"{settings.API_V1_STR}/openapi.json",
                generate_unique_id_function=custom_generate_unique_id,
            )

            if settings.all_cors_origins:
                app.add_middleware(CORSMiddleware, allow_origins=settings.all_cors_origins)

            app.include_router(api_router, prefix=settings.API_V1_STR)
            """,
            "backend/app/api/__init__.py": "",
            "backend/app/api/main.py": """
            from fastapi import APIRouter

            from app.api.routes import items, login, private, users, utils
            from app.core.config import settings

            api_router = APIRouter()
            api_router.include_router(login.router)
            api_router.include_router(users.router)
            api_router.include_router(utils.router)
            api_router.include_router(items.router)

            if settings.ENVIRONMENT == "local":
                api_router.include_router(private.router)
            """,
            "backend/app/api/routes/__init__.py": "",
            "backend/app/api/routes/utils.py": """
            from fastapi import APIRouter, Depends
            from pydantic.networks import EmailStr

            from app.api.deps import get_current_active_superuser
            from app.models import Message

            router = APIRouter(prefix="/utils", tags=["utils"])


            @router.post("/test-email/", dependencies=[Depends(get_current_active_superuser)], status_code=201)
            def test_email(email_to: EmailStr) -> Message:
                return Message(message="Test email sent")


            @router.get("/health-check/")
            async def health_check() -> bool:
                return True
            """,
            "backend/app/api/routes/items.py": """
            import uuid
            from fastapi import APIRouter
            router = APIRouter(prefix="/items", tags=["items"])

            @router.get("/")
            def read_items(): ...

            @router.get("/{id}")
            def read_item(id: uuid.UUID): ...
            """,
            "backend/app/api/routes/login.py": """
            from fastapi import APIRouter
            router = APIRouter(tags=["login"])

            @router.post("/login/access-token")
            def login_access_token(): ...
            """,
            "backend/app/api/routes/users.py": """
            from fastapi import APIRouter
            router = APIRouter(prefix="/users", tags=["users"])

            @router.get("/me")
            def read_user_me(): ...
            """,
            "backend/app/api/routes/private.py": """
            from fastapi import APIRouter
            router = APIRouter(tags=["private"], prefix="/private")

            @router.post("/users/")
            def create_user(): ...
            """,
            "backend/app/core/__init__.py": "",
            "backend/app/core/config.py": """
            import secrets
            from typing import Annotated, Any, Literal

            from pydantic import AnyUrl, BeforeValidator, PostgresDsn, computed_field
            from pydantic_settings import BaseSettings, SettingsConfigDict


            class Settings(BaseSettings):
                model_config = SettingsConfigDict(env_file="../.env", env_ignore_empty=True, extra="ignore")
                API_V1_STR: str = "/api/v1"
                SECRET_KEY: str = secrets.token_urlsafe(32)
                ENVIRONMENT: Literal["local", "staging", "production"] = "local"
                PROJECT_NAME: str
                POSTGRES_SERVER: str
                POSTGRES_PORT: int = 5432
                POSTGRES_DB: str = ""

                @computed_field  # type: ignore[prop-decorator]
                @property
                def SQLALCHEMY_DATABASE_URI(self) -> PostgresDsn:
                    return PostgresDsn.build(scheme="postgresql+psycopg", host=self.POSTGRES_SERVER)


            settings = Settings()  # type: ignore
            """,
            "backend/app/tests/__init__.py": "",
            "backend/app/tests/conftest.py": "from app.main import app\n",
            "backend/tests_pre_start.py": "",
        }
    )
    assert (info.workdir, info.module, info.attr) == ("backend", "app.main", "app")
    assert info.file == "backend/app/main.py"
    health = route(info, "/api/v1/utils/health-check/")
    assert (health.methods, health.returns_text, health.returns) == (("GET",), "true", None)
    assert health.file == "backend/app/api/routes/utils.py"
    assert info.health() == health
    assert "/api/v1/login/access-token" in paths(info)
    assert "/api/v1/items/{id}" in paths(info)
    assert info.database is None  # PostgreSQL: no SQLite file to protect


# --- the CodeFRAME layout ------------------------------------------------------------


def test_codeframe_like_flat_layout() -> None:
    info = read(
        {
            "pyproject.toml": "[project]\nname = 'codeframe-mini'\n",
            "codeframe_mini/__init__.py": "",
            "codeframe_mini/server.py": """
            import os
            from fastapi import FastAPI, WebSocket
            from codeframe_mini.version import VERSION

            DATABASE_PATH = os.environ.get("DATABASE_PATH", ".codeframe/state.db")
            app = FastAPI()

            @app.get("/health")
            def health():
                return {"status": "ok", "version": VERSION, "ready": True, "count": 3}

            @app.websocket("/ws")
            async def ws(ws: WebSocket):
                await ws.accept()
                while True:
                    await ws.receive_text()
                    await ws.send_text("pong")
            """,
            "codeframe_mini/version.py": "VERSION = '1.0'\n",
            "web-ui/package.json": "{}",
        }
    )
    assert (info.workdir, info.module, info.attr) == (".", "codeframe_mini.server", "app")
    health = info.health()
    assert health is not None and health.path == "/health"
    assert health.returns == {"status": "ok", "ready": True, "count": 3}
    assert health.returns_text is None  # the version is not a literal
    assert [(w.path, w.replies) for w in info.websockets()] == [("/ws", ("pong",))]
    assert info.database == DatabaseHint(
        ".codeframe/state.db", "DATABASE_PATH", "codeframe_mini/server.py", 6
    )


def test_the_codeframe_mini_example() -> None:
    info = find_app(DirTree(EXAMPLE))
    assert info is not None
    assert (info.workdir, info.module, info.attr) == (".", "codeframe_mini.server", "app")
    assert info.factory == "create_app"  # the app object is built inside create_app()
    health = info.health()
    assert health is not None and health.path == "/health"
    assert health.returns == {"status": "ok"}
    assert route_exists(info, "/api/health/db")
    assert route(info, "/api/health/db").returns == {"status": "ok"}
    assert route_exists(info, "/api/projects/7")
    (ws,) = info.websockets()
    assert ws.path == "/ws"
    assert '{"type":"subscribed","topic":"projects"}' in ws.replies
    assert info.database is not None
    assert (info.database.default, info.database.env) == (".codeframe/state.db", "DATABASE_PATH")


def test_factory_with_a_module_level_app() -> None:
    info = read(
        {
            "svc/__init__.py": """
            from fastapi import FastAPI

            def create_app() -> FastAPI:
                app = FastAPI()

                @app.get("/health")
                def health(): return {"status": "ok"}

                return app
            """,
            "svc/main.py": """
            from svc import create_app
            app = create_app()

            @app.get("/late")
            def late(): ...
            """,
        }
    )
    assert (info.module, info.attr, info.factory, info.file) == (
        "svc.main",
        "app",
        None,
        "svc/main.py",
    )
    assert paths(info) == ["/health", "/late"]
    health = info.health()
    assert health is not None and health.returns_text == '{"status":"ok"}'


# --- where to run from ----------------------------------------------------------------


def test_src_layout() -> None:
    info = read(
        {
            "pyproject.toml": "",
            "src/myapp/__init__.py": "",
            "src/myapp/main.py": "from fastapi import FastAPI\napp = FastAPI()\n",
        }
    )
    assert (info.workdir, info.module) == ("src", "myapp.main")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # A script beside its modules: run from its own directory.
        (
            {
                "api/main.py": "from routes import r\nfrom fastapi import FastAPI\napp = FastAPI()\n",
                "api/routes.py": "",
            },
            ("api", "main"),
        ),
        # A namespace package imported by its full name.
        (
            {
                "svc/api/main.py": "from api.routes import r\nfrom fastapi import FastAPI\napp = FastAPI()\n",
                "svc/api/routes.py": "",
            },
            ("svc", "api.main"),
        ),
        # Nothing to go by but the project file.
        (
            {"pyproject.toml": "", "api/main.py": "from fastapi import FastAPI\napp = FastAPI()\n"},
            (".", "api.main"),
        ),
        # Relative imports need the package above the file.
        (
            {
                "web/api/main.py": "from .routes import r\nfrom fastapi import FastAPI\napp = FastAPI()\n",
                "web/api/routes.py": "",
            },
            ("web", "api.main"),
        ),
        # A directory that is not a valid module name cannot be part of the module.
        (
            {
                "pyproject.toml": "",
                "my-api/main.py": "from fastapi import FastAPI\napp = FastAPI()\n",
            },
            ("my-api", "main"),
        ),
        # The app in a package's __init__.
        (
            {"backend/app/__init__.py": "from fastapi import FastAPI\napp = FastAPI()\n"},
            ("backend", "app"),
        ),
    ],
)
def test_workdir_is_where_the_module_imports(
    files: dict[str, str], expected: tuple[str, str]
) -> None:
    info = read(files)
    assert (info.workdir, info.module) == expected


def test_under_limits_the_search() -> None:
    files = {
        "main.py": "from fastapi import FastAPI\napp = FastAPI()\n",
        "backend/app/__init__.py": "",
        "backend/app/main.py": "from fastapi import FastAPI\napp = FastAPI()\n",
    }
    info = read(files, under="backend")
    assert (info.workdir, info.module, info.file) == ("backend", "app.main", "backend/app/main.py")


# --- what handlers return ---------------------------------------------------------------


def test_returns_and_returns_text() -> None:
    info = read({"main.py": """
            from fastapi import FastAPI, status
            from fastapi.responses import JSONResponse, PlainTextResponse

            app = FastAPI()

            @app.get("/true")
            def t() -> bool: return True

            @app.get("/str")
            def s(): return "ok"

            @app.get("/dict")
            def d(): return {"status": "ok", "n": 1, "up": True, "ratio": 0.5, "none": None}

            @app.get("/response")
            def r():
                if broken():
                    return JSONResponse({"status": "down"}, status_code=503)
                if degraded():
                    return JSONResponse({"status": "degraded"}, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)
                return JSONResponse(content={"status": "healthy"})

            @app.get("/named")
            def n():
                body = {"status": "ok", "at": now()}
                if bad():
                    body["status"] = "error"
                    return JSONResponse(body, status_code=500)
                return JSONResponse(body)

            @app.get("/text")
            def text(): return PlainTextResponse("OK")

            @app.get("/ambiguous")
            def a(flag: bool):
                if flag:
                    return {"status": "ok"}
                return {"status": "degraded"}

            @app.get("/computed")
            def c(): return {"status": compute()}

            @app.get("/partly")
            def p(flag: bool):
                if flag:
                    return {"status": "ok"}
                return make()

            @app.get("/nothing")
            def nothing(): pass

            @app.get("/nested")
            def nested():
                def inner(): return {"no": "pe"}
                return {"yes": "this"}
            """})

    def body(path: str) -> tuple[object, object]:
        found = route(info, path)
        return (found.returns, found.returns_text)

    assert body("/true") == (None, "true")
    assert body("/str") == (None, '"ok"')
    assert body("/dict") == (
        {"status": "ok", "n": 1, "up": True},
        '{"status":"ok","n":1,"up":true,"ratio":0.5,"none":null}',
    )
    assert body("/response") == ({"status": "healthy"}, '{"status":"healthy"}')
    assert body("/named") == ({"status": "ok"}, None)
    assert body("/text") == (None, "OK")
    assert body("/ambiguous") == (None, None)
    assert body("/computed") == (None, None)
    assert body("/partly") == (None, None)
    assert body("/nothing") == (None, None)
    assert body("/nested") == ({"yes": "this"}, '{"yes":"this"}')


def test_websocket_replies() -> None:
    info = read({"main.py": """
            from fastapi import FastAPI, WebSocket
            app = FastAPI()

            @app.websocket("/ws")
            async def ws(socket: WebSocket):
                await socket.accept()
                await socket.send_json({"type": "hello"})
                await socket.send_json({"type": "pong", "time": now()})
                await socket.send_text("pong")
                await socket.send_text("pong")
                await socket.send_text(f"{x}")
                return {"not": "a reply"}
            """})
    (ws,) = info.websockets()
    assert ws.replies == ('{"type":"hello"}', "pong")
    assert (ws.returns, ws.returns_text) == (None, None)


# --- finding routes -------------------------------------------------------------------


def _info(*routes: Route) -> AppInfo:
    return AppInfo(".", "main", "app", "main.py", 1, routes, None)


def _route(path: str, *methods: str) -> Route:
    return Route(path, methods or ("GET",), "main.py", 1, None, None, ())


def test_find_and_route_exists() -> None:
    info = _info(
        _route("/health"),
        _route("/api/items/"),
        _route("/api/items/{item_id}"),
        _route("/api/items/{item_id}/tags"),
        _route("/files/{rest:path}"),
        _route("/ws", "WEBSOCKET"),
    )
    assert info.find("/health") == info.routes[0]
    assert info.find("/health/") == info.routes[0]
    assert info.find("/api/items") == info.routes[1]
    assert info.find("/api/items/3") is None  # find is exact; route_exists matches templates
    assert route_exists(info, "/health?verbose=1")
    assert route_exists(info, "/api/items/3")
    assert route_exists(info, "/api/items/3/tags")
    assert route_exists(info, "/files/a/b/c.txt")
    assert route_exists(info, "/ws")
    assert not route_exists(info, "/files")
    assert not route_exists(info, "/api/items/3/other")
    assert not route_exists(info, "/nope")
    assert not route_exists(info, "/api")


def test_health_prefers_the_plainest_route() -> None:
    assert _info().health() is None
    info = _info(
        _route("/api/health/db"),
        _route("/healthz"),
        _route("/health", "POST"),
        _route("/health", "WEBSOCKET"),
        _route("/api/health"),
        _route("/api/{x}/health"),
    )
    assert info.health() == info.routes[1]
    info = _info(_route("/api/v1/services/health/detailed"), _route("/api/v1/health-check/"))
    assert info.health() == info.routes[1]
    assert _info(_route("/health/{x}")).health() == _route("/health/{x}")


# --- the database ---------------------------------------------------------------------


def _database(extra: dict[str, str]) -> DatabaseHint | None:
    files = {"main.py": "from fastapi import FastAPI\napp = FastAPI()\n", **extra}
    return read(files).database


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('import os\nP = os.getenv("DB_PATH", "data/app.db")\n', ("data/app.db", "DB_PATH")),
        ('import os\nP = os.environ["SQLITE_FILE"]\n', (None, "SQLITE_FILE")),
        (
            'from os import environ\nP = environ.get("DATABASE_PATH", "./x/state.db")\n',
            ("x/state.db", "DATABASE_PATH"),
        ),
        (
            'import os\nU = os.getenv("DATABASE_URL", "sqlite+aiosqlite:///./app.db")\n',
            ("app.db", "DATABASE_URL"),
        ),
        ('URL = "sqlite:///./app.db"\n', ("app.db", None)),
        ('import sqlite3\nconn = sqlite3.connect("store")\n', ("store", None)),
        (
            'from pydantic_settings import BaseSettings\nclass Settings(BaseSettings):\n    DATABASE_PATH: str = "data/app.db"\n',
            ("data/app.db", "DATABASE_PATH"),
        ),
        (
            'from pydantic_settings import BaseSettings, SettingsConfigDict\nclass Settings(BaseSettings):\n    model_config = SettingsConfigDict(env_prefix="APP_")\n    sqlite_path: str = "db/main.sqlite3"\n',
            ("db/main.sqlite3", "APP_SQLITE_PATH"),
        ),
        ('class Config:\n    DB_FILE = "var/data.db"\n', ("var/data.db", None)),
        # Not SQLite: nothing.
        (
            'import os\nH = os.getenv("DB_HOST", "localhost")\nU = os.getenv("DATABASE_URL", "postgresql://u@h/db")\n',
            None,
        ),
        ('import os\nU = os.environ["DATABASE_URL"]\nM = "sqlite:///:memory:"\n', None),
        ('import os\nK = os.getenv("SECRET_KEY", "x.db")\n', None),
    ],
)
def test_database_hints(source: str, expected: tuple[str | None, str | None] | None) -> None:
    hint = _database({"config.py": source})
    assert (hint and (hint.default, hint.env)) == expected


def test_env_with_default_beats_a_default_alone() -> None:
    hint = _database(
        {
            "a.py": 'import sqlite3\nsqlite3.connect("other.db")\nURL = "sqlite:///./app.db"\n',
            "z.py": 'import os\nPATH = os.environ.get("DATABASE_PATH", "real.db")\n',
        }
    )
    assert hint == DatabaseHint("real.db", "DATABASE_PATH", "z.py", 2)


# --- robustness -----------------------------------------------------------------------


def test_broken_files_tests_and_installed_packages_are_skipped() -> None:
    info = read(
        {
            "main.py": """
            from fastapi import FastAPI
            from broken import thing
            app = FastAPI()

            @app.get("/health")
            def health(): return "ok"
            """,
            "broken.py": "def (:\n",
            "also_broken.py": "app = FastAPI(\n",
            "tests/main.py": "from fastapi import FastAPI\napp = FastAPI()\n",
            "test_app.py": "from fastapi import FastAPI\napp = FastAPI()\n",
            "node_modules/pkg/main.py": "from fastapi import FastAPI\napp = FastAPI()\n",
            ".venv/lib/site-packages/fastapi/app.py": "app = FastAPI()\n",
            "tests/conftest.py": 'import os\nos.environ["DATABASE_PATH"] = "test.db"\n',
        }
    )
    assert (info.file, paths(info)) == ("main.py", ["/health"])
    assert info.database is None
    only_broken = DictTree({"main.py": "from fastapi import FastAPI\napp = FastAPI(\n"})
    assert find_app(only_broken) is None


def test_import_cycles_and_star_imports() -> None:
    info = read(
        {
            "pkg/__init__.py": "from pkg.a import *\n",
            "pkg/a.py": "from pkg.b import PREFIX\nfrom pkg import PREFIX as P2\n",
            "pkg/b.py": "from pkg.a import PREFIX\n",
            "pkg/c.py": "from pkg.d import *\n",
            "pkg/d.py": 'BASE = "/base"\n',
            "pkg/main.py": """
            from fastapi import FastAPI
            from pkg.a import PREFIX
            from pkg.c import BASE
            app = FastAPI()

            @app.get(PREFIX + "/x")
            def x(): ...

            @app.get(BASE + "/y")
            def y(): ...
            """,
        }
    )
    assert paths(info) == ["/base/y"]


def test_hundreds_of_files_read_quickly() -> None:
    files: dict[str, str] = {"app/__init__.py": "", "app/routes/__init__.py": ""}
    includes = []
    for n in range(150):
        files[f"app/routes/r{n}.py"] = (
            "from fastapi import APIRouter\n"
            f'router = APIRouter(prefix="/r{n}")\n'
            + "".join(
                f'\n@router.get("/e{k}")\ndef e{k}(x: int = 0) -> dict[str, str]:\n'
                f'    """Endpoint {k}."""\n    return {{"n": "{k}"}}\n'
                for k in range(15)
            )
        )
        includes.append(f"from app.routes import r{n}\napp.include_router(r{n}.router)\n")
    for n in range(200):
        files[f"app/models/m{n}.py"] = "".join(
            f"class M{k}:\n    a: int = {k}\n    def f(self) -> int:\n        return self.a * 2\n\n"
            for k in range(20)
        )
    files["app/main.py"] = "from fastapi import FastAPI\napp = FastAPI()\n" + "".join(includes)
    tree = DictTree(files)
    started = time.perf_counter()
    info = find_app(tree)
    elapsed = time.perf_counter() - started
    assert info is not None and len(info.routes) == 150 * 15
    assert route_exists(info, "/r149/e14")
    assert elapsed < 1.0, f"{elapsed:.2f}s for {len(files)} files"


def test_routes_added_to_an_app_imported_elsewhere_and_shadowed_names() -> None:
    info = read(
        {
            "site/__init__.py": "",
            "site/main.py": """
            from fastapi import FastAPI
            app = FastAPI()

            def register(app):
                @app.get("/not-this-app")
                def hidden(): ...

            from site import views  # noqa: E402 (registers the views)
            """,
            "site/views.py": """
            from site.main import app as application

            @application.get("/health")
            def health(): return {"ok": True}
            """,
        }
    )
    assert (info.module, paths(info)) == ("site.main", ["/health"])
