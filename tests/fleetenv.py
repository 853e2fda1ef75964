"""A fleet of network-namespace hosts (``tests/netns.py``) with the example app's
repository and a blue-green configuration for it: used by ``tests/test_fleet.py`` and
``benchmarks/fleet.py``."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from apprepo import make_repo, write_config, write_env_file
from loadgen import Load
from netns import NsFleet, netns_fleet
from support import EXAMPLE_APP, ROOT, TOOLS_BIN, free_port, require_binary

EXE = str(Path(sys.executable).with_name("slipway"))


class Fleet:
    """The fleet, its repository and configuration, and the CLI."""

    def __init__(
        self, base: Path, ns: NsFleet, *, batch_size: int | None, parallel: int = 10
    ) -> None:
        self.ns = ns
        self.batch_size, self.parallel = batch_size, parallel
        self.repo = make_repo(base / "repo")
        self.port = free_port()
        self.config = self._config(base)
        for host in ns.hosts:
            write_env_file(host.data, f"API_TOKEN=fleet-secret-{host.index}\n")

    def _config(self, base: Path) -> Path:
        table = (
            "\n[environments.testing.blue_green]\n"
            f'router = "traefik"\nbind = "0.0.0.0"\napi_port = {free_port()}\n'
            f"blue = {{ backend = {free_port()}, frontend = {free_port()} }}\n"
            f"green = {{ backend = {free_port()}, frontend = {free_port()} }}\n"
            "standby_seconds = 600\nwatch_seconds = 1\n"
            f"\n[environments.testing.fleet]\nparallel = {self.parallel}\n"
            + (f"batch_size = {self.batch_size}\n" if self.batch_size else "")
        )
        path = write_config(
            self.repo,
            self.ns.root,
            hosts=self.ns.hosts_list(),
            ssh=self.ns.ssh_table(),
            health="comprehensive",
            strategy="blue-green",
            blue_green=table,
        )
        text = path.read_text()
        # The hosts reach no index: uv installs from the cache this machine warmed.
        text = re.sub(r"host_env = \{ ?", 'host_env = { UV_OFFLINE = "1", ', text, count=1)
        text = text.replace('UV_OFFLINE = "1",  }', 'UV_OFFLINE = "1" }')
        text = re.sub(r"ports = \{ backend = \d+", f"ports = {{ backend = {self.port}", text)
        path.write_text(text)
        return path

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [EXE, "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def deploy(self, ref: str) -> tuple[int, list[dict[str, object]], str]:
        done = self.cli("deploy", "testing", "--ref", ref, "--json")
        events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        return done.returncode, events, done.stderr

    def current(self) -> list[str]:
        return [(host.data / "testing" / "current").resolve().name for host in self.ns.hosts]

    def loads(self, stack: ExitStack) -> list[Load]:
        """Steady load on every host's public port: about 60 requests a second each (at
        full speed five loads would take both cores from the deploy they watch)."""
        return [
            stack.enter_context(
                Load(
                    self.port,
                    host=h.address,
                    keepalive=1,
                    close=1,
                    posts=1,
                    websockets=2,
                    pause=0.02,
                )
            )
            for h in self.ns.hosts
        ]

    def rows(self, host: int) -> int:
        db = self.ns.hosts[host].data / "testing" / ".codeframe" / "state.db"
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT count(*) FROM projects").fetchone()[0])


def warm_uv_cache(tmp: Path) -> None:
    """The example's lock installed once here (with the index): the hosts install it
    offline from the same cache."""
    uv = str(Path(sys.executable).with_name("uv"))
    venv = tmp / "warm-venv"
    subprocess.run([uv, "venv", "-q", str(venv)], check=True)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            "-r",
            str(EXAMPLE_APP / "requirements.lock"),
        ],
        check=True,
    )


@contextmanager
def namespace_fleet(
    factory: pytest.TempPathFactory, name: str, hosts: int, *, batch_size: int | None = None
) -> Iterator[Fleet]:
    """``hosts`` namespace hosts with the example app's repository and configuration
    (skips without PM2 or Traefik, as every integration test does)."""
    require_binary("pm2", path=str(TOOLS_BIN))
    require_binary("traefik", path=str(ROOT / ".venv" / "bin"))
    base = factory.mktemp(name)
    warm_uv_cache(base)
    with netns_fleet(base / "ns", hosts) as ns:
        yield Fleet(base, ns, batch_size=batch_size)
