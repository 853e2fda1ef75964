"""Router contract: every backend (Traefik, nginx) passes the same tests, for real.

Each test starts the real router binary under a real PM2 daemon, with two small
backends ("blue" and "green": HTTP plus WebSocket echo) on loopback ports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import Server, ServerConnection, serve

from slipway.config.model import RouterKind
from slipway.errors import RouterError, SlipwayError
from slipway.processes.pm2 import Pm2
from slipway.routers import Router, RouterSetup, Split, Target, make_router
from slipway.routers import nginx as nginx_mod
from slipway.routers import traefik as traefik_mod
from slipway.routers.base import COLOR_HEADER, CONVERSION_HEADER
from slipway.state.host import call
from slipway.transports.local import LocalTransport
from tests.support import TOOLS_BIN, free_port, require_binary, stop_pm2

VENV_BIN = str(Path(sys.executable).parent)


class Backend:
    """A named HTTP + WebSocket server on a free port, in a thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.server: Server = serve(self._ws, "127.0.0.1", self.port, process_request=self._http)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _http(self, connection: ServerConnection, request: Any) -> Any:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        response = connection.respond(200, f"{self.name}\n")
        if request.path == "/convert":  # as an app marks a converting answer
            response.headers[CONVERSION_HEADER] = "1"
        return response

    def _ws(self, connection: ServerConnection) -> None:
        for message in connection:
            connection.send(f"{self.name}:{message}")

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(params=[RouterKind.TRAEFIK, RouterKind.NGINX], ids=["traefik", "nginx"])
def router(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Router]:
    yield from _router(request.param, tmp_path)


@pytest.fixture
def nginx_router(tmp_path: Path) -> Iterator[Router]:
    yield from _router(RouterKind.NGINX, tmp_path)


def _router(kind: RouterKind, tmp_path: Path) -> Iterator[Router]:
    """A real router of ``kind`` under its own PM2 daemon, stopped after the test."""
    binary = require_binary(kind.value, path=f"{VENV_BIN}:/usr/sbin:/usr/bin")
    require_binary("pm2", path=str(TOOLS_BIN))
    pm2_home = tmp_path / "pm2"
    env = {"PATH": f"{TOOLS_BIN}:{VENV_BIN}:{os.environ['PATH']}", "PM2_HOME": str(pm2_home)}
    transport = LocalTransport()
    setup = RouterSetup(
        app_name=f"contract-{kind.value}-router",
        directory=str(tmp_path / "router"),
        public={"backend": free_port()},
        bind="127.0.0.1",
        api_port=free_port(),
        binary=binary,
        probe_paths={"backend": "/"},
        env=env,
        switch_timeout=3.0,
    )
    made = make_router(kind, transport, Pm2(transport, env), setup)
    try:
        yield made
    finally:
        stop_pm2(pm2_home)


@pytest.fixture
def colors() -> Iterator[dict[str, Backend]]:
    backends = {"blue": Backend("blue"), "green": Backend("green")}
    yield backends
    for backend in backends.values():
        backend.close()


def target(backend: Backend) -> Target:
    return Target(backend.name, {"backend": backend.port})


def public_get(router: Router) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{router.setup.public['backend']}/", timeout=5)


def test_start_switch_and_switch_back(router: Router, colors: dict[str, Backend]) -> None:
    assert router.ensure_running(target(colors["blue"])) is True
    assert router.ensure_running(target(colors["blue"])) is False  # already up: untouched
    response = public_get(router)
    assert response.text == "blue\n"
    assert response.headers[COLOR_HEADER] == "blue"
    assert router.active_color() == "blue"

    report = router.switch(target(colors["green"]))
    assert (report.color, report.previous) == ("green", "blue")
    assert report.seconds < router.setup.switch_timeout
    assert public_get(router).text == "green\n"
    assert router.active_color() == "green"

    router.switch(target(colors["blue"]))
    assert public_get(router).text == "blue\n"


def test_websocket_passes_through(router: Router, colors: dict[str, Backend]) -> None:
    router.ensure_running(target(colors["green"]))
    with ws_connect(f"ws://127.0.0.1:{router.setup.public['backend']}/ws") as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "green:ping"


def test_dead_target_is_refused_before_anything_changes(
    router: Router, colors: dict[str, Backend]
) -> None:
    router.ensure_running(target(colors["blue"]))
    before = router.current_routes()
    with pytest.raises(RouterError, match=r"not switching to green: .*does not answer"):
        router.switch(Target("green", {"backend": free_port()}))
    assert router.current_routes() == before
    assert public_get(router).text == "blue\n"


def test_unconfirmed_switch_is_put_back(
    router: Router, colors: dict[str, Backend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target answered when checked, but the applied routes point somewhere dead:
    the public port does not confirm the new colour, so the old routes come back."""
    router.ensure_running(target(colors["blue"]))
    render = router.render_routes
    dead = free_port()
    monkeypatch.setattr(
        router, "render_routes", lambda t: render(Target(t.color, {"backend": dead}))
    )
    with pytest.raises(RouterError, match=r"was not confirmed .* put back \(confirmed\)"):
        router.switch(target(colors["green"]))
    deadline = time.monotonic() + 5
    while public_get(router).text != "blue\n" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert public_get(router).text == "blue\n"
    assert router.active_color() == "blue"


def test_invalid_routes_are_rejected_before_applying(
    router: Router, colors: dict[str, Backend], monkeypatch: pytest.MonkeyPatch
) -> None:
    router.ensure_running(target(colors["blue"]))
    before = router.current_routes()
    garbage = "# slipway color=green\nthis is { not a valid configuration\n"
    monkeypatch.setattr(router, "render_routes", lambda t: garbage)
    with pytest.raises(RouterError):
        router.switch(target(colors["green"]))
    assert router.current_routes() == before
    assert public_get(router).text == "blue\n"


def test_killed_router_is_restarted_with_its_routes(
    router: Router, colors: dict[str, Backend]
) -> None:
    router.ensure_running(target(colors["blue"]))
    router.switch(target(colors["green"]))
    pid = router.pm.status([router.setup.app_name])[router.setup.app_name].pid
    assert pid
    # nginx's workers outlive a killed master (they keep serving and keep the port), so
    # "the router dies" means the master and its workers, as an OOM kill of the group.
    subprocess.run(["pkill", "-KILL", "-P", str(pid)], check=False)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    answer = None
    while time.monotonic() < deadline:
        try:
            new_pid = router.pm.status([router.setup.app_name])[router.setup.app_name].pid
            answer = public_get(router).text
            if answer == "green\n" and new_pid not in (None, pid):
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    assert answer == "green\n"
    new_pid = router.pm.status([router.setup.app_name])[router.setup.app_name].pid
    assert new_pid and new_pid != pid


def test_traefik_configs_are_exact() -> None:
    static = traefik_mod.static_config("127.0.0.1", {"backend": 8200}, 8209, "/r")
    assert static["providers"]["providersThrottleDuration"] == "0s"
    assert static["entryPoints"]["backend"]["address"] == "127.0.0.1:8200"
    assert static["entryPoints"]["traefik"] == {"address": "127.0.0.1:8209"}
    dynamic = traefik_mod.dynamic_config(Target("green", {"backend": 8202}))
    assert dynamic["http"]["services"]["backend"]["loadBalancer"]["servers"] == [
        {"url": "http://127.0.0.1:8202"}
    ]
    headers = dynamic["http"]["middlewares"]["color"]["headers"]["customResponseHeaders"]
    assert headers == {COLOR_HEADER: "green"}


def test_nginx_routes_are_exact_and_colour_names_checked() -> None:
    text = nginx_mod.routes_config(Target("blue", {"backend": 8201, "frontend": 8101}))
    assert text.splitlines() == [
        "# slipway color=blue",
        "upstream slipway_backend_blue { server 127.0.0.1:8201; }",
        "upstream slipway_backend { server 127.0.0.1:8201; }",
        'map "" $slipway_backend_side { default "blue"; }',
        'map "" $slipway_backend_cookie { default ""; }',
        "upstream slipway_frontend_blue { server 127.0.0.1:8101; }",
        "upstream slipway_frontend { server 127.0.0.1:8101; }",
        'map "" $slipway_frontend_side { default "blue"; }',
        'map "" $slipway_frontend_cookie { default ""; }',
        'map "" $slipway_color { default "blue"; }',
        "map $upstream_addr $slipway_service {",
        '    "127.0.0.1:8201" "backend-blue";',
        '    "127.0.0.1:8101" "frontend-blue";',
        '    default "";',
        "}",
    ]
    with pytest.raises(RouterError, match="invalid colour"):
        nginx_mod.routes_config(Target('blue"; evil', {"backend": 1}))


def test_a_confirmed_switch_leaves_no_old_worker_taking_connections(
    router: Router, colors: dict[str, Backend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Confirmed means every new connection reaches the new colour: Traefik swaps its
    table at once; nginx's old workers keep accepting for about 100 ms after a reload,
    so its switch waits until none of them does (not for a lucky streak of probes)."""
    router.ensure_running(target(colors["blue"]))
    for color in ("green", "blue", "green"):
        router.switch(target(colors[color]))
        answers = [
            httpx.get(
                f"http://127.0.0.1:{router.setup.public['backend']}/",
                headers={"Connection": "close"},
                timeout=5,
            ).text
            for _ in range(30)
        ]
        assert set(answers) == {f"{color}\n"}
    if isinstance(router, nginx_mod.Nginx):
        pid_file = f"{router.setup.directory}/nginx.pid"
        serving = call(LocalTransport(), "nginx_workers", pid_file=pid_file)["serving"]
        assert serving and not set(serving) & (router._reloaded_from or set())

        # Workers that cannot be read: three probes in a row, 50 ms apart, as before.
        def unreadable(*args: object, **kwargs: object) -> None:
            raise SlipwayError("nginx_workers: /proc not readable")

        monkeypatch.setattr(nginx_mod, "call", unreadable)
        assert router.switch(target(colors["blue"])).color == "blue"
        assert (router.confirmations, router.confirm_poll) == (3, 0.05)
        assert public_get(router).text == "blue\n"


def test_a_split_shares_by_weight_keeps_a_cookie_client_and_logs_each_side(
    router: Router, colors: dict[str, Backend]
) -> None:
    """A canary's split on either router: about ``weight`` percent of fresh clients on
    the canary, a client with the router's cookie kept on its side as the weight
    rises, the access log naming each answer's ``<process>-<colour>`` (slipway's own
    probes marked), and a switch back to one colour ending the split."""
    router.ensure_running(target(colors["blue"]))
    split = Split(target(colors["blue"]), target(colors["green"]), 20, "side")
    router.split(split)
    assert router.canary_weight() == 20 and router.active_color() == "blue"
    url = f"http://127.0.0.1:{router.setup.public['backend']}/"
    fresh = [httpx.get(url, headers={"Connection": "close"}, timeout=5).text for _ in range(200)]
    share = fresh.count("green\n") / len(fresh)
    assert 0.08 < share < 0.35, share
    with httpx.Client(timeout=5) as client:
        first = client.get(url).text
        assert "side_backend" in client.cookies
        router.split(Split(target(colors["blue"]), target(colors["green"]), 50, "side"))
        later = {client.get(url).text for _ in range(30)}
    assert later == {first}  # kept on its side across the step
    for _ in range(7):
        httpx.get(f"{url}convert", headers={"Connection": "close"}, timeout=5)
    log = Path(router.setup.directory, "logs", "access.log")
    found = call(LocalTransport(), "sides", log=str(log), offset=0)["sides"]
    assert {"backend-blue", "backend-green"} <= {name.split("@")[0] for name in found}, found
    assert sum(side["conversions"] for side in found.values()) == 7  # the marked answers
    router.switch(target(colors["blue"]), check_target=False)
    assert router.canary_weight() == 0
    assert {public_get(router).text for _ in range(20)} == {"blue\n"}


def test_nginx_split_routes_are_exact() -> None:
    split = Split(Target("blue", {"backend": 8201}), Target("green", {"backend": 8202}), 5, "s")
    text = nginx_mod.split_routes_config(split)
    assert text.splitlines()[0] == "# slipway color=blue canary=green:5"
    assert "upstream slipway_backend_blue { server 127.0.0.1:8201; }" in text
    assert "upstream slipway_backend_green { server 127.0.0.1:8202; }" in text
    assert 'split_clients "$request_id" $slipway_backend_pick { 5% green; * blue; }' in text
    assert "map $cookie_s_backend $slipway_backend_side { blue blue; green green;" in text
    assert '"127.0.0.1:8202" "backend-green";' in text
    with pytest.raises(RouterError, match="invalid colour"):
        nginx_mod.split_routes_config(Split(Target("b;", {"backend": 1}), split.canary, 5, "s"))


LEGACY_ROUTES = """# slipway color={color}
upstream slipway_backend {{ server 127.0.0.1:{port}; }}
map "" $slipway_color {{ default "{color}"; }}
"""


def test_an_nginx_router_left_by_an_older_version_starts_switches_and_splits(
    nginx_router: Router, colors: dict[str, Backend]
) -> None:
    """Routes written by an older slipway (no side maps) under this version's main
    configuration: the router starts (the routes are rewritten first), a switch's
    put-back never restores the old form, and a split works."""
    directory = Path(nginx_router.setup.directory)
    directory.mkdir(parents=True)
    routes = LEGACY_ROUTES.format(color="blue", port=colors["blue"].port)
    Path(nginx_router.routes_path).write_text(routes)
    assert nginx_mod.upgraded_routes(routes) == nginx_mod.routes_config(target(colors["blue"]))
    assert nginx_router.ensure_running(target(colors["green"])) is True
    assert public_get(nginx_router).text == "blue\n"  # its own routes, in the new form
    assert "_side " in Path(nginx_router.routes_path).read_text()
    nginx_router.split(Split(target(colors["blue"]), target(colors["green"]), 50, "side"))
    nginx_router.switch(target(colors["green"]))
    assert {public_get(nginx_router).text for _ in range(10)} == {"green\n"}
    # New routes under an older main configuration parse too (a kill between writes).
    old_main = (
        (directory / "nginx.conf")
        .read_text()
        .replace(
            "proxy_pass http://slipway_backend_$slipway_backend_side;",
            "proxy_pass http://slipway_backend;",
        )
    )
    assert "proxy_pass http://slipway_backend;" in old_main
    check = directory / "old.conf"
    check.write_text(old_main)
    tested = subprocess.run(
        [nginx_router.setup.binary, "-t", "-q", "-p", str(directory), "-c", str(check)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stderr


def test_a_cookie_name_is_checked_before_it_reaches_nginx() -> None:
    split = Split(Target("blue", {"backend": 1}), Target("green", {"backend": 2}), 5, "a;b")
    with pytest.raises(RouterError, match="invalid cookie name"):
        nginx_mod.split_routes_config(split)
