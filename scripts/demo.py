"""`make demo`: a real blue-green deploy of the example app on this machine, under load.

1. builds a git repository of examples/codeframe-mini (tags v1, v2, v3; broken branches)
   under .demo/, configured like production: blue-green behind Traefik, comprehensive
   health checks (API, database, agents, frontend, WebSocket), a backup before deploys;
2. `slipway deploy demo --ref v1`: backend and Next.js frontend on the blue colour,
   the router started on the public ports;
3. under steady load on the public port (keep-alive and `Connection: close` GETs,
   POSTs writing to the database, 20 WebSockets), with the failed requests counted:
   `deploy v2` (an additive migration) goes to green and traffic switches; `deploy v3`
   (a migration that drops a table with rows) is refused by the rehearsal; a broken
   release (crashes at start) fails on a copy of the database before anything live
   changes; `slipway rollback` switches back to the warm blue colour instantly;
4. `slipway status demo` and `slipway audit demo`.
Everything lives in .demo/ (its own PM2_HOME); `make clean` removes it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
sys.path.insert(0, str(ROOT / "tests"))

from apprepo import make_repo, write_config, write_env_file  # noqa: E402
from loadgen import Load  # noqa: E402
from support import free_port  # noqa: E402

from slipway.cli.main import main as slipway  # noqa: E402
from slipway.config import load_config  # noqa: E402


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def run(*args: str) -> int:
    print(f"$ slipway {' '.join(args)}", flush=True)
    return slipway(["--config", str(DEMO / "repo" / "slipway.toml"), *args])


def stop_previous_demo() -> None:
    pm2 = ROOT / "tools" / "node_modules" / ".bin" / "pm2"
    if (DEMO / "srv" / "pm2").exists() and pm2.exists():
        env = {**os.environ, "PM2_HOME": str(DEMO / "srv" / "pm2")}
        subprocess.run([str(pm2), "kill"], env=env, capture_output=True, check=False)
    shutil.rmtree(DEMO, ignore_errors=True)


BLUE_GREEN = """
[environments.demo.blue_green]
api_port = {api}
blue = {{ backend = {b1}, frontend = {f1} }}
green = {{ backend = {b2}, frontend = {f2} }}
standby_seconds = 600
watch_seconds = 3
"""


def under_load(load: Load, name: str, *args: str) -> int:
    with load.phase(name):
        code = run(*args)
    figures = load.phase_summaries()[name]
    ws = figures["ws"]
    print(
        f"--> under load during '{name}': {figures['requests']} requests,"
        f" {figures['failed']} failed, p99 {figures['p99_ms']} ms;"
        f" WebSockets closed abnormally: {ws['abnormal']}",
        flush=True,
    )
    return code


def main() -> int:
    stop_previous_demo()
    DEMO.mkdir()
    repo = make_repo(DEMO / "repo")
    ports = {k: free_port() for k in ("api", "b1", "f1", "b2", "f2")}
    config = write_config(
        repo,
        DEMO / "srv",
        frontend=True,
        name="demo",
        health="comprehensive",
        strategy="blue-green",
        blue_green=BLUE_GREEN.format(**ports),
    )
    write_env_file(DEMO / "srv", "API_TOKEN=demo-secret-token\n", name="demo").chmod(0o600)
    print(f"example app repository: {repo}\nconfiguration: {config}")

    banner("1. deploy v1: blue colour, Traefik router (npm ci and next build take a minute)")
    if run("deploy", "demo", "--ref", "v1", "--actor", "demo") != 0:
        return 1
    public = load_config(config).config.environment("demo").ports.backend
    banner(f"2. steady load on the public port {public} from now on")
    with Load(public) as load:
        banner("3. deploy v2 (a migration) to green, switch, keep blue warm")
        if under_load(load, "deploy v2", "deploy", "demo", "--ref", "v2", "--actor", "demo"):
            return 1
        banner("4. deploy v3: its migration drops a table with rows; the rehearsal refuses it")
        code = under_load(load, "destructive", "deploy", "demo", "--ref", "v3")
        if code != 1:
            print(f"expected the destructive deploy to be refused with exit 1, got {code}")
            return 1
        banner("5. deploy a broken release: it crashes on a copy, nothing live changes")
        code = under_load(load, "broken", "deploy", "demo", "--ref", "broken/crash")
        if code != 1:
            print(f"expected the broken deploy to fail with exit 1, got {code}")
            return 1
        banner("6. instant rollback to the warm blue colour (v2's schema still fits v1)")
        if under_load(load, "rollback", "rollback", "demo"):
            return 1
    total = load.summary()
    banner(
        f"load total: {total['requests']} requests, {total['failed']} failed"
        f" ({total['rate']} req/s)"
    )
    banner("7. what the host's records say")
    run("status", "demo")
    run("audit", "demo", "--limit", "12")
    print(
        f"\nThe site is serving v1 on blue through the router. Look at:\n"
        f"  releases:  {DEMO / 'srv' / 'demo' / 'releases'}\n"
        f"  router:    {DEMO / 'srv' / 'demo' / 'router'}\n"
        f"  colours:   {DEMO / 'srv' / 'demo' / '.slipway' / 'colors.json'}\n"
        f"  backups:   {DEMO / 'srv' / 'demo' / 'backups'}\n"
        f"  PM2:       PM2_HOME={DEMO / 'srv' / 'pm2'} tools/node_modules/.bin/pm2 ls"
    )
    return 0 if total["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
