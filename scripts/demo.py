"""`make demo`: a real deploy of the example app on this machine, then a failed one.

1. builds a git repository of examples/codeframe-mini with tags v1, v2 and a broken
   branch (the app crashes at start), under .demo/;
2. `slipway deploy demo --ref v1` (backend and Next.js frontend under PM2, health gate);
3. `slipway deploy demo --ref v2` (a new migration; data kept; unchanged frontend reused);
4. `slipway deploy demo --ref broken/crash`: the gate fails and slipway rolls back;
5. `slipway status demo` and `slipway audit demo`.
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

from slipway.cli.main import main as slipway  # noqa: E402


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


def main() -> int:
    stop_previous_demo()
    DEMO.mkdir()
    repo = make_repo(DEMO / "repo")
    config = write_config(repo, DEMO / "srv", frontend=True, name="demo")
    write_env_file(DEMO / "srv", "API_TOKEN=demo-secret-token\n", name="demo").chmod(0o600)
    print(f"example app repository: {repo}\nconfiguration: {config}")

    banner("1. deploy v1 (first deploy: npm ci and next build take a minute)")
    if run("deploy", "demo", "--ref", "v1", "--actor", "demo") != 0:
        return 1
    banner("2. deploy v2 (adds a migration; node_modules and build reused)")
    if run("deploy", "demo", "--ref", "v2", "--actor", "demo") != 0:
        return 1
    banner("3. deploy a broken release: it crashes at start, slipway rolls back")
    code = run("deploy", "demo", "--ref", "broken/crash", "--actor", "demo")
    if code != 1:
        print(f"expected the broken deploy to fail with exit 1, got {code}")
        return 1
    banner("4. what the host's records say")
    run("status", "demo")
    run("audit", "demo", "--limit", "8")
    print(
        f"\nThe site is still serving v2. Look at:\n"
        f"  releases:  {DEMO / 'srv' / 'demo' / 'releases'}\n"
        f"  current:   {DEMO / 'srv' / 'demo' / 'current'}\n"
        f"  backups:   {DEMO / 'srv' / 'demo' / 'backups'}\n"
        f"  logs:      {DEMO / 'srv' / 'demo' / 'shared' / 'logs'}\n"
        f"  PM2:       PM2_HOME={DEMO / 'srv' / 'pm2'} tools/node_modules/.bin/pm2 ls"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
