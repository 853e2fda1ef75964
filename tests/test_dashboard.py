"""The dashboard: JSON API and token rules, and the page in a real headless Chromium."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from apprepo import write_config
from support import ROOT, require_binary

from slipway.config import load_config
from slipway.dashboard.data import overview, weekly_trend
from slipway.dashboard.server import make_token, needs_token, serve
from slipway.metrics.dora import DAY
from slipway.state import hostscript

ARTIFACTS = ROOT / "artifacts"


def seed(root: Path) -> None:
    now = time.time()
    rows = [
        ("a", now - 20 * DAY, "succeeded", 10.0),
        ("b", now - 10 * DAY, "succeeded", 20.0),
        ("c", now - 3 * DAY, "rolled_back", 30.0),
        ("d", now - 1 * DAY, "succeeded", 40.0),
    ]
    for n, (release, finished, status, duration) in enumerate(rows):
        steps = [{"step": "rollback", "seconds": 6.0}] if status == "rolled_back" else []
        hostscript.op_record(
            {
                "records": str(root / "testing" / ".slipway" / "records.db"),
                "deployment": {
                    "id": f"d{n}",
                    "env": "testing",
                    "ref": f"v{n}",
                    "commit_sha": "c" * 40,
                    "release": release,
                    "actor": "seeder",
                    "started_at": finished - duration,
                    "finished_at": finished,
                    "duration_s": duration,
                    "status": status,
                    "kind": "deploy",
                    "steps": json.dumps(steps),
                    "committed_at": finished - 600,
                    "failed_step": "health" if status == "rolled_back" else None,
                },
                "audit": [
                    {
                        "at": finished,
                        "actor": "seeder",
                        "event": "deploy.done",
                        "deployment_id": f"d{n}",
                    }
                ],
            }
        )
    (root / "testing" / "releases" / "d").mkdir(parents=True)
    (root / "testing" / "current").symlink_to("releases/d")  # d is live
    backups = root / "testing" / "backups"
    backups.mkdir(parents=True)
    (backups / "d-pre-deploy.db").write_bytes(b"x" * 1234)
    manifest = {
        "id": "d-pre-deploy",
        "file": "d-pre-deploy.db",
        "size": 1234,
        "created_at": time.time() - 60,
        "reason": "pre-deploy",
        "encrypted": False,
        "env": "testing",
        "release": "c",
        "commit": None,
        "tables": {},
        "sha256": "0" * 64,
    }
    (backups / "d-pre-deploy.json").write_text(json.dumps(manifest))


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[str, str]]:
    root = tmp_path / "srv"
    seed(root)
    (tmp_path / "repo").mkdir()
    with served(load_config(write_config(tmp_path / "repo", root))) as found:
        yield found


@contextmanager
def served(loaded: Any) -> Iterator[tuple[str, str]]:
    """The dashboard's server for ``loaded`` on a free port: its URL and token."""
    token = make_token()
    server = serve(
        lambda: overview(loaded),
        "127.0.0.1",
        0,
        token,
        quick=lambda: overview(loaded, run_checks=False),
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", token
    finally:
        server.shutdown()
        server.server_close()


def test_token_rules():
    assert not needs_token("127.0.0.1") and not needs_token("localhost")
    assert needs_token("0.0.0.0")
    assert make_token() != make_token()


def test_api_needs_the_token_and_reports_seeded_figures(dashboard):
    url, token = dashboard
    assert httpx.get(f"{url}/api/overview").status_code == 401
    assert httpx.get(f"{url}/api/overview", params={"token": "wrong"}).status_code == 401
    data = httpx.get(f"{url}/api/overview", headers={"Authorization": f"Bearer {token}"}).json()
    testing = next(e for e in data["environments"] if e["name"] == "testing")
    m = testing["metrics"]
    assert (m["deploys"], m["successful"], m["failed"]) == (4, 3, 1)
    assert m["duration_median_s"] == 25.0 and m["failure_rate"] == 0.25
    assert m["time_to_restore_median_s"] == 6.0 and m["lead_time_median_s"] == 600.0
    assert [d["release"] for d in testing["deploys"]] == ["d", "c", "b", "a"]
    assert testing["backups"][0]["name"] == "d-pre-deploy.db"
    assert testing["backups"][0]["size"] == 1234
    assert testing["lock"] == {"held": False, "owner": None}
    assert testing["health"]["ok"] is False  # nothing is running in this test
    assert testing["health"]["state"] == "unhealthy" and testing["deployed"] is True
    assert testing["current"] == "d" and testing["unfinished"] is None
    assert all(isinstance(d["steps"], list) for d in testing["deploys"])  # not JSON text
    # Never deployed: said so, not "unhealthy" (no check runs against nothing).
    staging = next(e for e in data["environments"] if e["name"] == "staging")
    assert staging["deployed"] is False and staging["current"] is None
    assert staging["health"] == {"ok": None, "state": "not deployed", "checks": []}
    quick = httpx.get(f"{url}/api/overview", params={"token": token, "quick": "1"}).json()
    quick_testing = next(e for e in quick["environments"] if e["name"] == "testing")
    assert quick_testing["health"]["state"] == "checking"  # the first view waits for no check
    assert quick_testing["metrics"] == m
    assert sum(w["deploys"] for w in testing["trend"]) == 3
    assert httpx.get(f"{url}/nope", params={"token": token}).status_code == 404
    page = httpx.get(f"{url}/", params={"token": token})
    assert page.status_code == 200 and "slipway dashboard" in page.text
    assert "https://" not in page.text  # nothing loaded from a CDN


def test_weekly_trend_buckets():
    now = 100 * DAY
    rows = [
        {
            "env": "e",
            "kind": "deploy",
            "status": "succeeded",
            "release": "r1",
            "finished_at": now - 1 * DAY,
            "duration_s": 5.0,
        },
        {
            "env": "e",
            "kind": "deploy",
            "status": "failed",
            "release": "r2",
            "finished_at": now - 8 * DAY,
            "duration_s": 7.0,
        },
    ]
    trend = weekly_trend(rows, "e", now)
    assert len(trend) == 8
    assert trend[-1]["deploys"] == 1 and trend[-1]["failure_rate"] == 0.0
    assert trend[-2]["deploys"] == 0 and trend[-2]["failure_rate"] == 1.0
    assert trend[0]["failure_rate"] is None


@contextmanager
def loaded_page(url: str, token: str) -> Iterator[Any]:
    """The dashboard in a real headless Chromium, once it has the health checks'
    results; no console error or page error may happen meanwhile."""
    chromium = require_binary("chromium")
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{url}/?token={token}")
            page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
            yield page
        finally:
            browser.close()
    assert problems == []


@pytest.mark.integration
def test_page_in_headless_chromium(dashboard):
    url, token = dashboard
    with loaded_page(url, token) as page:
        text = lambda testid: page.get_by_test_id(testid).inner_text()  # noqa: E731
        assert text("metric-deploys-testing") == "3 / 4"
        assert text("metric-duration-testing") == "25.0s, 40.0s"
        assert text("metric-failure-rate-testing") == "25.0 %"
        assert text("metric-time-to-restore-testing") == "6.0s"
        assert text("metric-lead-time-testing") == "10m"
        assert text("current-staging") == "not deployed"
        assert text("health-staging") == "not deployed"
        assert text("lock-testing") == "free"
        assert text("health-testing") == "unhealthy"
        assert "d-pre-deploy.db (1234 bytes" in text("backups-testing")
        assert page.get_by_test_id("hosts-testing").count() == 0  # one host: no table
        bars = page.locator("#chart-deploys-testing rect")
        assert bars.count() == 8
        values = [bars.nth(i).get_attribute("data-value") for i in range(8)]
        assert sum(int(v) for v in values if v) == 3
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_cli_dashboard_serves_and_requires_a_token_off_localhost(tmp_path: Path, host: str):
    import subprocess
    import sys

    root = tmp_path / "srv"
    seed(root)
    (tmp_path / "repo").mkdir()
    config = write_config(tmp_path / "repo", root)
    exe = str(Path(sys.executable).with_name("slipway"))
    proc = subprocess.Popen(
        [exe, "--config", str(config), "dashboard", "--host", host, "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith(f"dashboard on http://{host}:")
        port = int(line.split(":")[2].split("/")[0])
        base = f"http://127.0.0.1:{port}"
        if host == "127.0.0.1":
            assert "token=" not in line
            assert httpx.get(f"{base}/api/overview", timeout=20).status_code == 200
        else:
            token = line.split("?token=")[1]
            assert len(token) >= 24
            assert httpx.get(f"{base}/api/overview", timeout=20).status_code == 401
            ok = httpx.get(f"{base}/api/overview", params={"token": token}, timeout=20)
            assert ok.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_server_keeps_host_sessions_open_between_computations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a host session (connect, start the agent) was most of the first view's
    time; one that failed is opened again next time."""
    from slipway.dashboard import data as data_module

    root = tmp_path / "srv"
    seed(root)
    (tmp_path / "repo").mkdir()
    loaded = load_config(write_config(tmp_path / "repo", root))
    opened: list[str] = []
    real_connect = data_module.connect

    def counting(host, ssh, masker):  # type: ignore[no-untyped-def]
        opened.append(str(host))
        return real_connect(host, ssh, masker)

    monkeypatch.setattr(data_module, "connect", counting)
    sessions = data_module.Sessions(loaded)
    try:
        first = data_module.overview(loaded, run_checks=False, sessions=sessions)
        deployed = len(first["environments"])
        data_module.overview(loaded, run_checks=False, sessions=sessions)
        assert len(opened) == deployed  # opened once, reused

        def host_broke(*args: object, **kwargs: object) -> None:
            raise OSError("the connection broke")

        monkeypatch.setattr(data_module, "environment_overview", host_broke)
        with pytest.raises(OSError):
            data_module.overview(loaded, run_checks=False, sessions=sessions)
        monkeypatch.undo()
        monkeypatch.setattr(data_module, "connect", counting)
        data_module.overview(loaded, run_checks=False, sessions=sessions)
        assert len(opened) == deployed + 1  # the failed one was opened again
    finally:
        sessions.close()


FLEET = ("deploy@a.example.org", "deploy@b.example.org")


@pytest.fixture
def fleet_overview(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Two hosts (each its own root here, through host_overrides) reached by the local
    transport under their SSH names: a has the seeded history; b runs the same release
    and has its lock held and an alert firing."""
    from slipway.config.model import parse_host
    from slipway.dashboard import data as data_module
    from slipway.state.host import Layout
    from slipway.state.lock import DeployLock
    from slipway.transports.local import LocalTransport

    roots = [tmp_path / "a", tmp_path / "b"]
    seed(roots[0])
    (roots[1] / "testing" / "releases" / "d").mkdir(parents=True)
    (roots[1] / "testing" / "current").symlink_to("releases/d")
    (roots[1] / "testing" / ".slipway").mkdir(parents=True)
    alert = {"alerts": {"error_rate": {"firing": True}, "latency": {"firing": False}}}
    (roots[1] / "testing" / ".slipway" / "monitor.json").write_text(json.dumps(alert))
    (tmp_path / "repo").mkdir()
    path = write_config(tmp_path / "repo", roots[0], hosts=json.dumps(list(FLEET)))
    overrides = "".join(
        f'\n[environments.testing.host_overrides."{h}"]\nroot = "{r}"\n'
        for h, r in zip(FLEET, roots, strict=True)
    )
    path.write_text(path.read_text() + overrides)
    loaded = load_config(path)

    def named(host, ssh, masker):  # type: ignore[no-untyped-def]
        transport = LocalTransport()
        transport.name = str(host)
        return transport

    monkeypatch.setattr(data_module, "connect", named)
    b = loaded.config.environments["testing"].on_host(str(parse_host(FLEET[1])))

    lock = DeployLock(LocalTransport(), Layout(str(b.root), "testing"))
    lock.acquire(actor="carol", ref="v9", reason="deploy")
    try:
        yield loaded
    finally:
        lock.release()


def test_a_fleet_shows_every_host_and_the_worst_of_them(fleet_overview: Any) -> None:
    data = overview(fleet_overview, run_checks=False)
    testing = next(e for e in data["environments"] if e["name"] == "testing")
    hosts = {h["host"]: h for h in testing["hosts"]}
    assert list(hosts) == [f"{h}:22" for h in FLEET]
    a, b = hosts[f"{FLEET[0]}:22"], hosts[f"{FLEET[1]}:22"]
    assert a["current"] == b["current"] == "d"
    assert a["lock"]["held"] is False and b["lock"]["held"] is True
    assert "carol" in b["lock"]["owner"]
    assert testing["lock"] == b["lock"]  # any host's held lock holds the environment
    assert b["alerts"] == ["error_rate"] and a["alerts"] == []
    assert testing["alerts"] == [f"{FLEET[1]}:22: error_rate"]
    assert testing["metrics"]["deploys"] == 4  # records as the first host keeps them


@pytest.mark.integration
def test_a_fleets_page_has_a_row_per_host(fleet_overview: Any) -> None:
    with served(fleet_overview) as (url, token), loaded_page(url, token) as page:
        rows = page.get_by_test_id("hosts-testing").locator("tr")
        assert rows.count() == 3  # the heading and two hosts
        b = page.get_by_test_id(f"host-testing-{FLEET[1]}:22").inner_text()
        assert "held by carol" in b and "error_rate" in b and "d" in b
        assert "held by carol" in page.get_by_test_id("lock-testing").inner_text()
