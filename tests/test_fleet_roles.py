"""One backend host and two frontend-only hosts (``roles``), network-namespace hosts
over real SSH (``tests/netns.py``), blue-green: each host runs only its processes, only
the backend host holds the SQLite database, each frontend answers through its own
Traefik, and a second deploy switches colours on all three; one frontend host has its
own deploy root (``host_overrides``). The frontend is a small Node server (PM2 runs it
like any node process); Next.js builds are covered elsewhere."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest
from apprepo import git, write_env_file
from fleetenv import Fleet, namespace_fleet

pytestmark = pytest.mark.integration

WEB = """const http = require("http");
const [port, host] = [Number(process.argv[2]), process.argv[3]];
const server = http.createServer((req, res) => {
  if (req.url === "/api/health") {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ status: "ok" }));
    return;
  }
  res.setHeader("content-type", "text/html");
  res.end("<html><body>web</body></html>");
});
server.listen(port, host);
process.on("SIGINT", () => server.close(() => process.exit(0)));
"""


def get(address: str, port: int, path: str) -> tuple[int, str] | None:
    """(status, body), or None when nothing listens there."""
    try:
        conn = http.client.HTTPConnection(address, port, timeout=5)
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    except ConnectionRefusedError:
        return None


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with namespace_fleet(tmp_path_factory, "roles", 3) as fleet:
        ns = fleet.ns
        (fleet.repo / "web-lite").mkdir()
        (fleet.repo / "web-lite" / "server.js").write_text(WEB)
        git(fleet.repo, "add", "-A")
        git(fleet.repo, "commit", "-q", "-m", "a small frontend")
        api, web1, web2 = (h.spec for h in ns.hosts)
        fleet.config.write_text(
            fleet.config.read_text()
            + '\n[processes.frontend]\nkind = "node"\nworkdir = "web-lite"\n'
            'start = ["node", "server.js", "{port}", "{host}"]\nport = "frontend"\n'
            'health_path = "/api/health"\n'
            f'\n[environments.testing.roles]\n"{api}" = ["backend"]\n'
            f'"{web1}" = ["frontend"]\n"{web2}" = ["frontend"]\n'
            # web2 is a machine set up differently: its deploy root is elsewhere.
            f'\n[environments.testing.host_overrides."{web2}"]\n'
            f'root = "{ns.root / "elsewhere"}"\nhost_env = {{ REGION = "two" }}\n'
        )
        write_env_file(ns.hosts[2].data / "elsewhere", "API_TOKEN=fleet-secret-2\n")
        yield fleet


def test_each_host_runs_its_role_and_only_the_backend_host_holds_the_database(
    fleet: Fleet,
) -> None:
    checked = fleet.cli("check", "testing")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = fleet.config.read_text()
    frontend_port = int(text.split("frontend = ", 1)[1].split("}", 1)[0].strip())
    for round_ in (1, 2):
        code, events, err = fleet.deploy("main")
        assert code == 0, err
        api, *webs = fleet.ns.hosts
        health = get(api.address, fleet.port, "/health")
        assert health is not None and health[0] == 200
        assert get(api.address, frontend_port, "/") is None  # no frontend there
        for web in webs:
            page = get(web.address, frontend_port, "/")
            assert page is not None and "<html" in page[1], round_
            assert get(web.address, fleet.port, "/health") is None  # no backend there
            assert not (web.data / "testing" / ".codeframe" / "state.db").exists()
            answer = get(web.address, frontend_port, "/api/health")
            assert answer is not None and answer[0] == 200
        assert (api.data / "testing" / ".codeframe" / "state.db").exists()
        web1_release = (webs[0].data / "testing" / "current").resolve()
        web2_release = (webs[1].data / "elsewhere" / "testing" / "current").resolve()
        assert web1_release.name == web2_release.name, round_  # one release, two roots
        assert not (webs[1].data / "testing" / "current").exists()

    colours = {
        e.get("host"): e.get("detail")
        for e in events
        if e.get("step") == "switch" and e.get("detail")
    }
    assert len(colours) == 3, colours  # every host switched in the second deploy
