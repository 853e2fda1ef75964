"""Warm redeploy time of the example app: slipway vs the design's plain sequence.

slipway: `Deployer.deploy` of a release whose lock files did not change (the backend's
virtualenv is the one shared by releases of that lock; the frontend's node_modules and
build are reused when their inputs are unchanged), timed per step. Its *overhead* is
the total minus install, build, app start-up and health wait: what slipway itself
costs (lock, upload, links, backup, records, symlink, prune). Each round deploys v2 (an
additive migration, rehearsed on a copy first), v2 again (the live backend: the
rehearsal is skipped) and then v1 without the rehearsal, so the rehearsal's cost shows
beside the rest.

plain: what the real CodeFRAME's deploy script did, in one working copy: install
(uv pip install; npm ci and npm run build with the frontend), `pm2 delete`, `pm2 start`,
then a curl-style loop until /health (and the frontend) answer 200.

Both run on this machine, in the same run, alternating, against their own ports and
PM2 daemons. Full mode deploys backend and frontend, 3 rounds; --quick deploys the
backend only, 2 rounds (under a minute). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from apprepo import blue_green_table, make_repo, write_config, write_env_file  # noqa: E402
from support import TOOLS_BIN, free_port  # noqa: E402

from slipway.config import load_config  # noqa: E402
from slipway.deploy.engine import Deployer  # noqa: E402
from slipway.transports.local import LocalTransport  # noqa: E402

PM2 = str(TOOLS_BIN / "pm2")
UV = str(Path(sys.executable).with_name("uv"))
SLIPWAY_OWN = ("lock", "upload", "link", "backup", "promote")


def wait_200(url: str, deadline: float = 120) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} never answered 200")


class Plain:
    """The seed's sequence: reset in place, install, build, pm2 delete + start, curl loop."""

    def __init__(self, base: Path, repo: Path, frontend: bool) -> None:
        self.dir = base / "plain"
        subprocess.run(["git", "clone", "-q", str(repo), str(self.dir)], check=True)
        self.frontend = frontend
        self.ports = {"backend": free_port(), "frontend": free_port()}
        self.env = {
            **os.environ,
            "PM2_HOME": str(base / "plain-pm2"),
            "NEXT_TELEMETRY_DISABLED": "1",
        }
        subprocess.run([UV, "venv", "-q", str(self.dir / ".venv")], check=True, env=self.env)

    def pm2(self, *args: str) -> None:
        subprocess.run([PM2, *args], env=self.env, capture_output=True, check=False)

    def deploy(self, ref: str) -> float:
        started = time.perf_counter()
        run = lambda *a, cwd=self.dir, env=self.env: subprocess.run(  # noqa: E731
            list(a), cwd=cwd, env=env, check=True, capture_output=True
        )
        run("git", "checkout", "-q", ref)
        run(
            UV,
            "pip",
            "install",
            "-q",
            "--python",
            str(self.dir / ".venv/bin/python"),
            "-r",
            "requirements.lock",
        )
        web = self.dir / "web-ui"
        if self.frontend:
            api = f"http://127.0.0.1:{self.ports['backend']}"
            run("npm", "ci", "--no-audit", "--no-fund", cwd=web)
            run("npm", "run", "build", cwd=web, env={**self.env, "NEXT_PUBLIC_API_URL": api})
        self.pm2("delete", "plain-backend")
        self.pm2("delete", "plain-frontend")
        self.pm2(
            "start",
            str(self.dir / ".venv/bin/python"),
            "--name",
            "plain-backend",
            "--interpreter",
            "none",
            "--cwd",
            str(self.dir),
            "--",
            "-m",
            "codeframe_mini.server",
            "--port",
            str(self.ports["backend"]),
        )
        if self.frontend:
            self.pm2(
                "start",
                str(web / "node_modules/.bin/next"),
                "--name",
                "plain-frontend",
                "--interpreter",
                "none",
                "--cwd",
                str(web),
                "--",
                "start",
                "-p",
                str(self.ports["frontend"]),
            )
        wait_200(f"http://127.0.0.1:{self.ports['backend']}/health")
        if self.frontend:
            wait_200(f"http://127.0.0.1:{self.ports['frontend']}/")
        return time.perf_counter() - started


def strategy_table(strategy: str) -> dict[str, str]:
    """write_config's arguments for ``strategy`` (blue-green: free ports per colour)."""
    if strategy == "restart":
        return {}
    table = blue_green_table(watch_seconds=0)
    return {"strategy": strategy, "blue_green": table}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="backend only, 2 rounds")
    parser.add_argument(
        "--strategy",
        choices=["restart", "blue-green"],
        default="restart",
        help="slipway's strategy (blue-green: each round goes to the other colour)",
    )
    args = parser.parse_args()
    frontend = not args.quick
    rounds = 2 if args.quick else 3
    base = Path(tempfile.mkdtemp(prefix="slipway-bench-"))
    repo = make_repo(base / "repo")
    config = write_config(repo, base / "srv", frontend=frontend, **strategy_table(args.strategy))
    write_env_file(base / "srv", "API_TOKEN=bench-token\n")
    loaded = load_config(config)
    plain = Plain(base, repo, frontend)
    try:
        print(
            f"warming up (first deploys{' with npm ci + next build' if frontend else ''})...",
            flush=True,
        )
        first = Deployer(loaded, "testing", LocalTransport()).deploy("v1")
        first_build = sum(s["seconds"] for s in first.steps if s["step"] in ("install", "build"))
        plain.deploy("v1")
        totals, overheads, plains, bare, same = [], [], [], [], []
        steps: dict[str, list[float]] = {}
        for i in range(rounds):
            # v1 -> v2 (an additive migration) rehearsed; v2 -> v1 without the rehearsal;
            # the plain sequence does both too.
            outcome = Deployer(loaded, "testing", LocalTransport()).deploy("v2")
            per_step = {s["step"]: s["seconds"] for s in outcome.steps}
            for name, seconds in per_step.items():
                steps.setdefault(name, []).append(seconds)
            outside = outcome.seconds - sum(per_step.values())  # records, prune, lock release
            overheads.append(sum(per_step.get(n, 0) for n in SLIPWAY_OWN) + outside)
            totals.append(outcome.seconds)
            # v2 again: the backend is the live one, so the rehearsal is skipped.
            same.append(Deployer(loaded, "testing", LocalTransport()).deploy("v2").seconds)
            back = Deployer(loaded, "testing", LocalTransport()).deploy("v1", rehearse=False)
            bare.append(back.seconds)
            plains += [plain.deploy("v2"), plain.deploy("v1")]
            print(
                f"  round {i + 1}: slipway {outcome.seconds:6.2f}s"
                f"  (same backend {same[-1]:6.2f}s, no rehearsal {back.seconds:6.2f}s)"
                f"   plain {plains[-2]:6.2f}s"
                f" {plains[-1]:6.2f}s",
                flush=True,
            )
    finally:
        for home in (base / "srv" / "pm2", base / "plain-pm2"):
            subprocess.run(
                [PM2, "kill"],
                env={**os.environ, "PM2_HOME": str(home)},
                capture_output=True,
                check=False,
            )
        shutil.rmtree(base, ignore_errors=True)

    med = statistics.median
    print()
    print(
        f"warm redeploy, {'backend + frontend' if frontend else 'backend only'},"
        f" {args.strategy}, {rounds} rounds (median seconds)"
    )
    print(f"  {'step':<10} {'slipway':>8}")
    for name, values in steps.items():
        print(f"  {name:<10} {med(values):8.3f}")
    print(f"  {'TOTAL':<10} {med(totals):8.3f}")
    print(f"  slipway overhead (total - install - build - start - health): {med(overheads):.3f}s")
    print(
        f"  plain sequence (install, build, pm2 delete, pm2 start, curl loop): {med(plains):.3f}s"
    )
    print(f"  ratio slipway / plain: {med(totals) / med(plains):.2f}")
    print(
        f"  without the migration rehearsal: {med(bare):.3f}s,"
        f" ratio {med(bare) / med(plains):.2f}"
    )
    print(
        f"  the live backend again (rehearsal skipped): {med(same):.3f}s,"
        f" ratio {med(same) / med(plains):.2f}"
    )
    # The gate waits `interval` between its `passes` rounds by policy; the plain
    # sequence stops at the first 200.
    health = loaded.config.health
    policy = (health.passes - 1) * health.interval_seconds
    net = (med(bare) - policy) / med(plains)
    print(f"  the gate's policy wait ({health.passes} passes, {health.interval_seconds:g}s apart):")
    print(f"    {policy:.3f}s; without it and the rehearsal, ratio {net:.2f}")
    print(f"  first deploy's install + build (the anchor for reuse): {first_build:.3f}s")
    figures = {
        "benchmark": "deploy_time",
        "mode": "quick" if args.quick else "full",
        "frontend": frontend,
        "strategy": args.strategy,
        "rounds": rounds,
        "slipway_warm_seconds": round(med(totals), 3),
        "slipway_overhead_seconds": round(med(overheads), 3),
        "plain_seconds": round(med(plains), 3),
        "ratio_slipway_to_plain": round(med(totals) / med(plains), 3),
        "slipway_no_rehearsal_seconds": round(med(bare), 3),
        "ratio_no_rehearsal_to_plain": round(med(bare) / med(plains), 3),
        "slipway_same_backend_seconds": round(med(same), 3),
        "ratio_same_backend_to_plain": round(med(same) / med(plains), 3),
        "gate_policy_wait_seconds": policy,
        "ratio_no_rehearsal_net_of_gate_policy": round(net, 3),
        "steps_median_seconds": {k: round(med(v), 3) for k, v in steps.items()},
        "first_install_build_seconds": round(first_build, 3),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
