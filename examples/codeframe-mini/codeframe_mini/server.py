"""The FastAPI backend, started as ``python -m codeframe_mini.server --port N``.

Environment, as CodeFRAME reads it: ``DATABASE_PATH`` (default ``.codeframe/state.db``,
relative to the working directory), ``HOST``, ``BACKEND_PORT``, ``CORS_ALLOWED_ORIGINS``.
slipway adds ``SLIPWAY_COMMIT`` and ``SLIPWAY_RELEASE``, shown by ``/health``.

Shutdown on SIGINT/SIGTERM is graceful: the listener closes, requests in flight finish,
and open WebSockets are closed with code 1001 (going away) so clients reconnect to the
new release instead of seeing an abnormal close.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from codeframe_mini import db, variant

VERSIONS = {"v1": "1.0.0", "v2": "2.0.0", "v3": "3.0.0", "v2-rebuild": "2.1.0"}
AGENT_NAMES = ("lead", "backend-worker", "frontend-worker")


class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""


class AgentPool:
    """A small in-process pool of agents that become ready shortly after start-up."""

    def __init__(self) -> None:
        self.status = {name: "starting" for name in AGENT_NAMES}
        self._task: asyncio.Task[None] | None = None

    async def _boot(self) -> None:
        for name in AGENT_NAMES:
            await asyncio.sleep(0.05)
            self.status[name] = "ready"

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._boot())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.status = {name: "stopped" for name in AGENT_NAMES}

    def ready(self) -> bool:
        return all(state == "ready" for state in self.status.values())


def create_app(database_path: str | None = None, which: str | None = None) -> FastAPI:
    """Build the app. Migrations run here, before the server listens (as in CodeFRAME)."""
    which = which or variant.current()
    path = database_path or os.environ.get("DATABASE_PATH", ".codeframe/state.db")
    conn = db.connect(path)
    try:
        schema = db.migrate(conn, which, variant.schema_level(which))
    finally:
        conn.close()
    started_at = datetime.now(UTC).isoformat()
    started = time.monotonic()
    agents = AgentPool()
    sockets: set[WebSocket] = set()
    subscribers: dict[int, set[WebSocket]] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        agents.start()
        yield
        await agents.stop()

    app = FastAPI(title="codeframe-mini", version=VERSIONS.get(which, "1.0.0"), lifespan=lifespan)
    app.state.sockets = sockets
    origins = [o for o in os.environ.get("CORS_ALLOWED_ORIGINS", "").split(",") if o]
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_methods=["*"], allow_headers=["*"]
        )

    if which in ("fail-after", "sluggish"):
        app.middleware("http")(_canary_fault(which))

    def query(sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        conn = db.connect(path)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    @app.get("/health")
    def health() -> JSONResponse:
        body = {
            "status": "ok",
            "version": VERSIONS.get(which, "1.0.0"),
            "variant": which,
            "commit": os.environ.get("SLIPWAY_COMMIT", "unknown"),
            "release": os.environ.get("SLIPWAY_RELEASE", "unknown"),
            "started_at": started_at,
        }
        if which == "health500" or (which == "late-fail" and _late_failing(started)):
            body["status"] = "error"
            return JSONResponse(body, status_code=500)
        return JSONResponse(body)

    @app.get("/api/health/db")
    def health_db() -> JSONResponse:
        try:
            if which == "dbfail":
                raise sqlite3.OperationalError("unable to open database file (variant dbfail)")
            version = int(query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")[0][0])
            count = int(query("SELECT COUNT(*) FROM projects")[0][0])
        except sqlite3.Error as exc:
            return JSONResponse({"status": "error", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "schema_version": version, "projects": count})

    @app.get("/api/health/agents")
    def health_agents() -> JSONResponse:
        ready = agents.ready()
        body = {"status": "ready" if ready else "starting", "agents": dict(agents.status)}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/api/work")
    async def work(ms: int = 100) -> dict[str, int]:
        """A request that takes ``ms`` milliseconds: lets tests prove requests drain."""
        await asyncio.sleep(min(ms, 30_000) / 1000)
        return {"slept_ms": ms}

    @app.get("/api/projects")
    def list_projects() -> list[dict[str, Any]]:
        return [dict(row) for row in query("SELECT * FROM projects ORDER BY id")]

    @app.post("/api/projects", status_code=201)
    async def create_project(project: ProjectIn, response: Response) -> dict[str, Any]:
        try:
            rows = await asyncio.to_thread(_insert_project, path, project, schema)
        except sqlite3.IntegrityError as exc:
            raise HTTPException(409, f"project {project.name!r} exists") from exc
        created = dict(rows)
        response.headers["X-Slipway-Conversion"] = "project-created"  # an A/B split counts it
        for ws in list(subscribers.get(0, set())):
            await ws.send_json({"type": "project_created", "project": created})
        return created

    @app.get("/api/projects/{project_id}")
    def get_project(project_id: int) -> dict[str, Any]:
        rows = query("SELECT * FROM projects WHERE id = ?", (project_id,))
        if not rows:
            raise HTTPException(404, "no such project")
        return dict(rows[0])

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        if which == "ws-refused":
            await ws.close(code=1008)
            return
        await ws.accept()
        sockets.add(ws)
        drop_at = time.monotonic() + float(os.environ.get("CODEFRAME_MINI_WS_DROP_SECONDS", "1.5"))
        try:
            while True:
                if which == "ws-drop":  # answers, then ends the session as a failing server
                    try:
                        left = max(0.0, drop_at - time.monotonic())
                        message = await asyncio.wait_for(ws.receive_json(), timeout=left)
                    except TimeoutError:
                        await ws.close(code=1011)
                        return
                else:
                    message = await ws.receive_json()
                kind = message.get("type") if isinstance(message, dict) else None
                if kind == "ping":
                    await ws.send_json({"type": "pong", "time": time.time()})
                elif kind == "subscribe":
                    subscribers.setdefault(0, set()).add(ws)
                    await ws.send_json({"type": "subscribed", "topic": "projects"})
                else:
                    await ws.send_json({"type": "error", "error": "unknown message type"})
        except (WebSocketDisconnect, RuntimeError, ValueError):
            pass
        finally:
            sockets.discard(ws)
            for group in subscribers.values():
                group.discard(ws)

    return app


def _canary_fault(which: str) -> Any:
    """fail-after and sluggish: faults only real traffic meets (every path but the
    health checks), so a release passes its gate and fails as a canary."""
    served = 0
    fail_after = int(os.environ.get("CODEFRAME_MINI_FAIL_AFTER", "20"))
    delay = float(os.environ.get("CODEFRAME_MINI_DELAY_MS", "300")) / 1000

    async def fault(request: Request, call_next: Any) -> Any:
        nonlocal served
        if request.url.path == "/health" or request.url.path.startswith("/api/health"):
            return await call_next(request)
        if which == "sluggish":
            await asyncio.sleep(delay)
            return await call_next(request)
        served += 1
        if served > fail_after:
            return JSONResponse({"error": "fail-after: failing on purpose"}, status_code=500)
        return await call_next(request)

    return fault


def _late_failing(started: float) -> bool:
    """late-fail's trigger: ``CODEFRAME_MINI_LATE_FAIL_FILE`` existing (a test creates it
    when traffic has moved, whatever the machine's load), else a timer."""
    flag = os.environ.get("CODEFRAME_MINI_LATE_FAIL_FILE")
    if flag:
        return os.path.exists(flag)
    return time.monotonic() - started > float(
        os.environ.get("CODEFRAME_MINI_LATE_FAIL_SECONDS", "4")
    )


def _insert_project(path: str, project: ProjectIn, schema: int) -> sqlite3.Row:
    conn = db.connect(path)
    try:
        if schema == 4:  # v2-rebuild: status is NOT NULL without a default
            cur = conn.execute(
                "INSERT INTO projects (name, description, status) VALUES (?, ?, 'active')"
                " RETURNING *",
                (project.name, project.description),
            )
        elif schema >= 2:
            cur = conn.execute(
                "INSERT INTO projects (name, description) VALUES (?, ?) RETURNING *",
                (project.name, project.description),
            )
        else:
            cur = conn.execute(
                "INSERT INTO projects (name) VALUES (?) RETURNING *", (project.name,)
            )
        row: sqlite3.Row = cur.fetchone()
        return row
    finally:
        conn.close()


class GracefulServer(uvicorn.Server):
    """uvicorn, but open WebSockets are closed with 1001 before the connections drain."""

    async def shutdown(self, sockets: Any = None) -> None:
        for ws in list(self.config.app.state.sockets):
            with contextlib.suppress(Exception):  # a socket already gone is fine here
                await ws.close(code=1001, reason="server shutting down")
        await super().shutdown(sockets=sockets)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="codeframe_mini.server")
    parser.add_argument("--port", type=int, default=int(os.environ.get("BACKEND_PORT", "8000")))
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    args = parser.parse_args(argv)
    which = variant.current()
    if which == "crash":
        raise SystemExit("codeframe-mini: crashing at start (variant crash)")
    if which == "slow":
        time.sleep(float(os.environ.get("CODEFRAME_MINI_SLOW_SECONDS", "120")))
    app = create_app(which=which)
    if which == "destructive-crash":
        raise SystemExit(
            "codeframe-mini: migrated, then failing to start (variant destructive-crash)"
        )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=int(os.environ.get("CODEFRAME_MINI_DRAIN_SECONDS", "5")),
    )
    GracefulServer(config).run()


if __name__ == "__main__":
    main()
