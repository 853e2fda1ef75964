"""Small repositories shaped like real FastAPI + Next.js + SQLite projects, for the
onboarding tests (`init`, `check --deep`, `try`, a real deploy with no hand edits).

Each shape differs where real projects differ: where the backend lives, how its
dependencies are locked (uv, Poetry, pinned requirements), which package manager the
frontend uses (npm, pnpm, yarn), whether Next builds standalone, what the health route
is called and returns, and which variable names the SQLite file. The lock files are
real ones, made by the real tools (tests/data/shapes/README.md,
tests/data/next-locks/), so a deploy installs exactly what they pin.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
NEXT_LOCKS = DATA / "next-locks"
PY_LOCKS = DATA / "shapes"

LAYOUT_JS = (
    "export default function RootLayout({ children }) {\n"
    "  return <html><body>{children}</body></html>;\n}\n"
)
PAGE_JS = (
    "export default function Page() {\n"
    "  return <main data-api={process.env.NEXT_PUBLIC_API_URL}>shape home</main>;\n}\n"
)

# A backend's database code, shared by the shapes: a table of notes, created on start.
DB_CODE = """
import os
import sqlite3

DB = os.environ.get("{env}", "{default}")


def connect() -> sqlite3.Connection:
    os.makedirs(os.path.dirname(os.path.abspath(DB)), exist_ok=True)
    conn = sqlite3.connect(DB)
    conn.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
    return conn
"""


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def copy_lock(root: Path, source: Path, dest: str) -> None:
    target = root / dest
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_file() and item.name != "README.md":
            shutil.copy(item, target / item.name)


def next_app(root: Path, workdir: str, manager: str, *, config: str) -> None:
    copy_lock(root, NEXT_LOCKS / manager, workdir)
    write(
        root,
        {
            f"{workdir}/next.config.js": config,
            f"{workdir}/app/layout.js": LAYOUT_JS,
            f"{workdir}/app/page.js": PAGE_JS,
        },
    )


def commit(root: Path) -> Path:
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "shape"],
    ):
        subprocess.run(["git", "-C", str(root), *args], check=True)
    return root


def uv_npm(root: Path) -> None:
    """uv.lock at the root, the app in a package, Next with rewrites that read
    BACKEND_PORT at build time, npm."""
    copy_lock(root, PY_LOCKS / "uv-ws-app", ".")
    write(
        root,
        {
            "notes/__init__.py": "",
            "notes/db.py": DB_CODE.format(env="DATABASE_PATH", default="data/notes.db"),
            "notes/main.py": (
                "from fastapi import FastAPI, WebSocket\n\nfrom notes import db\n\n"
                "app = FastAPI()\n\n\n"
                '@app.get("/health")\n'
                "def health():\n"
                "    db.connect().close()\n"
                '    return {"status": "healthy"}\n\n\n'
                '@app.websocket("/ws")\n'
                "async def ws(socket: WebSocket):\n"
                "    await socket.accept()\n"
                "    while True:\n"
                "        await socket.receive_text()\n"
                '        await socket.send_text("pong")\n'
            ),
        },
    )
    rewrites = (
        "module.exports = {\n  async rewrites() {\n    return [{ source: '/api/:path*',"
        " destination: `http://127.0.0.1:${process.env.BACKEND_PORT}/:path*` }];\n  },\n};\n"
    )
    next_app(root, "web", "npm", config=rewrites)


def poetry_pnpm(root: Path) -> None:
    """poetry.lock in backend/, routes under an APIRouter prefix, SQLITE_PATH, pnpm."""
    copy_lock(root, PY_LOCKS / "poetry-app", "backend")
    write(
        root,
        {
            "backend/service/__init__.py": "",
            "backend/service/db.py": DB_CODE.format(env="SQLITE_PATH", default="service.db"),
            "backend/service/routes.py": (
                "from fastapi import APIRouter\n\nfrom service import db\n\n"
                'router = APIRouter(prefix="/api")\n\n\n'
                '@router.get("/health")\n'
                "def health():\n"
                "    db.connect().close()\n"
                '    return {"ok": True, "service": "notes"}\n'
            ),
            "backend/service/main.py": (
                "from fastapi import FastAPI\n\nfrom service.routes import router\n\n"
                "app = FastAPI()\napp.include_router(router)\n"
            ),
        },
    )
    next_app(root, "frontend", "pnpm", config="module.exports = {};\n")


def requirements_yarn(root: Path) -> None:
    """Pinned requirements.txt and main.py at the root, yarn in web-ui/."""
    copy_lock(root, PY_LOCKS / "req-app", ".")
    write(
        root,
        {
            "db.py": DB_CODE.format(env="APP_DB", default="app.db"),
            "main.py": (
                "from fastapi import FastAPI\n\nimport db\n\napp = FastAPI()\n\n\n"
                '@app.get("/healthz")\n'
                "def healthz():\n"
                "    db.connect().close()\n"
                '    return {"status": "ok"}\n'
            ),
        },
    )
    next_app(root, "web-ui", "yarn", config="module.exports = { reactStrictMode: true };\n")


def next_standalone(root: Path) -> None:
    """A Next.js app built with output "standalone" beside a requirements backend."""
    copy_lock(root, PY_LOCKS / "req-app", "api")
    write(
        root,
        {
            "api/server/__init__.py": "",
            "api/server/app.py": (
                "import os\n\nfrom fastapi import FastAPI\n\napp = FastAPI()\n"
                'DATABASE = os.getenv("DATABASE_PATH", "state.db")\n\n\n'
                '@app.get("/api/health")\n'
                "def health():\n"
                '    return {"status": "ok"}\n'
            ),
        },
    )
    next_app(root, "web", "npm", config='module.exports = { output: "standalone" };\n')


def fastapi_template(root: Path) -> None:
    """The layout of the full-stack FastAPI template: backend/app/main.py, routers
    under settings.API_V1_STR, a health check that returns true; its frontend is a
    Vite app, not Next.js (init leaves it to the user)."""
    copy_lock(root, PY_LOCKS / "uv-app", "backend")
    write(
        root,
        {
            "backend/app/__init__.py": "",
            "backend/app/core/__init__.py": "",
            "backend/app/core/config.py": (
                "import os\n\nfrom pydantic import BaseModel\n\n\n"
                "class Settings(BaseModel):\n"
                '    API_V1_STR: str = "/api/v1"\n'
                '    SQLITE_PATH: str = os.environ.get("SQLITE_PATH", "app.db")\n\n\n'
                "settings = Settings()\n"
            ),
            "backend/app/api/__init__.py": "",
            "backend/app/api/routes/__init__.py": "",
            "backend/app/api/routes/utils.py": (
                "from fastapi import APIRouter\n\n"
                'router = APIRouter(prefix="/utils", tags=["utils"])\n\n\n'
                '@router.get("/health-check/")\n'
                "async def health_check() -> bool:\n"
                "    return True\n"
            ),
            "backend/app/api/main.py": (
                "from fastapi import APIRouter\n\nfrom app.api.routes import utils\n\n"
                "api_router = APIRouter()\napi_router.include_router(utils.router)\n"
            ),
            "backend/app/main.py": (
                "from fastapi import FastAPI\n\nfrom app.api.main import api_router\n"
                "from app.core.config import settings\n\n"
                "app = FastAPI()\n"
                "app.include_router(api_router, prefix=settings.API_V1_STR)\n"
            ),
            "frontend/package.json": (
                '{"name": "frontend", "private": true, "scripts": {"dev": "vite"},'
                ' "devDependencies": {"vite": "5.4.0"}}\n'
            ),
            "frontend/index.html": "<!doctype html><div id=root></div>\n",
        },
    )


SHAPES: dict[str, Callable[[Path], None]] = {
    "uv-npm": uv_npm,
    "poetry-pnpm": poetry_pnpm,
    "requirements-yarn": requirements_yarn,
    "next-standalone": next_standalone,
    "fastapi-template": fastapi_template,
}


def make(shape: str, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    SHAPES[shape](root)
    return commit(root)
