"""The example backend's endpoints, migrations and variants (in-process)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from codeframe_mini import db, server
from fastapi.testclient import TestClient


@pytest.fixture
def client(tmp_path: Path):
    app = server.create_app(str(tmp_path / "state.db"), which="v1")
    with TestClient(app) as c:
        yield c


def wait_agents(client: TestClient) -> dict:
    for _ in range(100):
        r = client.get("/api/health/agents")
        if r.status_code == 200:
            return r.json()
        import time

        time.sleep(0.02)
    raise AssertionError("agents never became ready")


def test_health_reports_version_commit_and_start(client, monkeypatch):
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["version"] == "1.0.0"
    assert body["variant"] == "v1"
    assert body["commit"] == "unknown"
    assert "started_at" in body


def test_db_health_runs_a_real_query(client):
    body = client.get("/api/health/db").json()
    assert body == {"status": "ok", "schema_version": 1, "projects": 0}


def test_agents_become_ready(client):
    body = wait_agents(client)
    assert body["status"] == "ready"
    assert set(body["agents"]) == set(server.AGENT_NAMES)


def test_projects_round_trip(client):
    created = client.post("/api/projects", json={"name": "alpha"})
    assert created.status_code == 201
    assert created.headers["X-Slipway-Conversion"] == "project-created"  # for A/B splits
    assert created.json()["name"] == "alpha"
    assert client.post("/api/projects", json={"name": "alpha"}).status_code == 409
    assert [p["name"] for p in client.get("/api/projects").json()] == ["alpha"]
    pid = created.json()["id"]
    assert client.get(f"/api/projects/{pid}").json()["name"] == "alpha"
    assert client.get("/api/projects/999").status_code == 404
    assert client.get("/api/health/db").json()["projects"] == 1


def test_websocket_ping_pong_and_subscribe(client):
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "ping"})
        assert ws.receive_json()["type"] == "pong"
        ws.send_json({"type": "subscribe"})
        assert ws.receive_json() == {"type": "subscribed", "topic": "projects"}
        client.post("/api/projects", json={"name": "beta"})
        event = ws.receive_json()
        assert event["type"] == "project_created"
        assert event["project"]["name"] == "beta"
        ws.send_json({"type": "bogus"})
        assert ws.receive_json()["type"] == "error"


def test_work_endpoint_sleeps(client):
    assert client.get("/api/work", params={"ms": 10}).json() == {"slept_ms": 10}


def test_wal_mode_and_busy_timeout(tmp_path: Path):
    conn = db.connect(tmp_path / "x.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == db.BUSY_TIMEOUT_MS


def _seed(path: Path, which: str) -> None:
    app = server.create_app(str(path), which=which)
    with TestClient(app) as c:
        assert c.post("/api/projects", json={"name": "keep-me"}).status_code == 201


def test_v2_migration_keeps_data(tmp_path: Path):
    path = tmp_path / "state.db"
    _seed(path, "v1")
    app = server.create_app(str(path), which="v2")
    with TestClient(app) as c:
        assert c.get("/api/health/db").json()["schema_version"] == 2
        assert [p["name"] for p in c.get("/api/projects").json()] == ["keep-me"]
        assert c.get("/api/projects").json()[0]["description"] == ""


def test_v3_migration_destroys_data_as_codeframe_once_did(tmp_path: Path):
    path = tmp_path / "state.db"
    _seed(path, "v1")
    app = server.create_app(str(path), which="v3")
    with TestClient(app) as c:
        assert c.get("/api/health/db").json() == {
            "status": "ok",
            "schema_version": 3,
            "projects": 0,
        }


def test_migration_error_rolls_back_that_migration(tmp_path: Path):
    path = tmp_path / "state.db"
    _seed(path, "v1")
    with pytest.raises(RuntimeError, match="migration 99 failed"):
        server.create_app(str(path), which="migration-error")
    conn = sqlite3.connect(path)
    assert db.schema_version(conn) == 1
    columns = [row[1] for row in conn.execute("PRAGMA table_info(projects)")]
    assert "half_done" not in columns
    assert conn.execute("SELECT name FROM projects").fetchall() == [("keep-me",)]


@pytest.mark.parametrize(
    ("which", "path", "status"),
    [("health500", "/health", 500), ("dbfail", "/api/health/db", 503)],
)
def test_broken_variants_fail_their_check(tmp_path: Path, which, path, status):
    app = server.create_app(str(tmp_path / "s.db"), which=which)
    with TestClient(app) as c:
        assert c.get(path).status_code == status


def test_ws_refused_variant_closes_with_policy_violation(tmp_path: Path):
    from starlette.websockets import WebSocketDisconnect

    app = server.create_app(str(tmp_path / "s.db"), which="ws-refused")
    with (
        TestClient(app) as c,
        pytest.raises(WebSocketDisconnect) as info,
        c.websocket_connect("/ws") as ws,
    ):
        ws.receive_json()
    assert info.value.code == 1008


def test_variant_from_env_and_unknown(monkeypatch):
    from codeframe_mini import variant

    monkeypatch.setenv("CODEFRAME_MINI_VARIANT", "v2")
    assert variant.current() == "v2"
    monkeypatch.setenv("CODEFRAME_MINI_VARIANT", "nope")
    with pytest.raises(SystemExit, match="unknown variant"):
        variant.current()
    monkeypatch.delenv("CODEFRAME_MINI_VARIANT")
    assert variant.current() in variant.GOOD + variant.BROKEN


def test_fail_after_passes_its_health_checks_and_fails_real_traffic(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CODEFRAME_MINI_FAIL_AFTER", "3")
    app = server.create_app(str(tmp_path / "s.db"), which="fail-after")
    with TestClient(app) as c:
        assert [c.get("/api/projects").status_code for _ in range(5)] == [200, 200, 200, 500, 500]
        assert c.get("/health").status_code == 200
        assert c.get("/api/health/db").status_code == 200


def test_sluggish_is_slow_on_real_traffic_only(tmp_path: Path, monkeypatch):
    import time

    monkeypatch.setenv("CODEFRAME_MINI_DELAY_MS", "200")
    app = server.create_app(str(tmp_path / "s.db"), which="sluggish")
    with TestClient(app) as c:
        started = time.monotonic()
        assert c.get("/api/projects").status_code == 200
        slow = time.monotonic() - started
        started = time.monotonic()
        assert c.get("/health").status_code == 200
        assert slow >= 0.2 > time.monotonic() - started


def test_ws_drop_answers_then_ends_the_session_with_1011(tmp_path: Path, monkeypatch):
    from starlette.websockets import WebSocketDisconnect

    monkeypatch.setenv("CODEFRAME_MINI_WS_DROP_SECONDS", "0.3")
    app = server.create_app(str(tmp_path / "s.db"), which="ws-drop")
    with TestClient(app) as c, c.websocket_connect("/ws") as ws:
        ws.send_json({"type": "ping"})
        assert ws.receive_json()["type"] == "pong"
        with pytest.raises(WebSocketDisconnect) as ended:
            ws.receive_json()
        assert ended.value.code == 1011
