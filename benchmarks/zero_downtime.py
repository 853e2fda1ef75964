"""Failed requests during deploys, under steady load: blue-green (Traefik, nginx) vs the
design's staging behaviour (a PM2 restart), side by side in one run.

The example app's backend runs in production mode (comprehensive checks) on this
machine. A steady load hits the public port the whole time: keep-alive GETs,
``Connection: close`` GETs, keep-alive POSTs that write to the database, and 20 open
WebSockets pinging every second. No client retries. Phases:

- ``idle``: the baseline latency, nothing deploying;
- ``deploy``: v1 -> v2, whose migration adds a column;
- ``broken``: a release whose /health answers 500 (``--quick``: one that crashes at
  start), which must be refused before the switch (Traefik only: the refusal does not
  depend on the router); it takes the warm standby's colour, and the standby is
  started again when it fails;
- ``rollback``: ``slipway rollback`` while the old colour is warm (an instant switch).

The restart strategy runs the same deploy phase for comparison (a PM2 restart of the
backend, with the port closed meanwhile). Usage::

    .venv/bin/python benchmarks/zero_downtime.py [--quick]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from apprepo import make_repo, write_config, write_env_file  # noqa: E402
from loadgen import Load  # noqa: E402
from support import free_port, stop_pm2  # noqa: E402

from slipway.config import load_config  # noqa: E402
from slipway.deploy.engine import Deployer  # noqa: E402
from slipway.deploy.rollback import manual_rollback  # noqa: E402
from slipway.errors import DeployFailed  # noqa: E402
from slipway.state import records  # noqa: E402
from slipway.transports.local import LocalTransport  # noqa: E402


def environment(base: Path, repo: Path, strategy: str, router: str, quick: bool) -> Deployer:
    root = base / f"srv-{strategy}-{router}"
    table = ""
    if strategy == "blue-green":
        table = f"""
[environments.testing.blue_green]
router = "{router}"
api_port = {free_port()}
blue = {{ backend = {free_port()}, frontend = {free_port()} }}
green = {{ backend = {free_port()}, frontend = {free_port()} }}
standby_seconds = 600
watch_seconds = {0.5 if quick else 3}
"""
    config = repo / f"slipway-{strategy}-{router}.toml"
    written = write_config(repo, root, health="comprehensive", strategy=strategy, blue_green=table)
    written.rename(config)
    write_env_file(root, "API_TOKEN=bench-token\n")
    return Deployer(load_config(config), "testing", LocalTransport(), actor="bench")


def fresh(d: Deployer) -> Deployer:
    return Deployer(d.loaded, d.env_name, LocalTransport(), actor="bench")


def run_phases(d: Deployer, strategy: str, router: str, quick: bool) -> dict[str, Any]:
    """The measured phases on one environment whose v1 is live."""
    pause = 0.0 if quick else 2.0
    extra: dict[str, Any] = {}
    try:
        with Load(d.env.ports.backend) as load:
            time.sleep(pause)
            with load.phase("idle"):
                time.sleep(1.0 if quick else 10)
            with load.phase("deploy"):
                fresh(d).deploy("v2")
            if strategy == "blue-green":
                extra["deploy_switch_seconds"] = last_switch_seconds(d)
            time.sleep(pause)
            if router == "traefik":
                with load.phase("broken"):
                    try:
                        # health500 listens but fails its checks until the gate's
                        # deadline; crash is refused as soon as PM2 reports it errored.
                        fresh(d).deploy("broken/crash" if quick else "broken/health500")
                    except DeployFailed:
                        pass
                    else:
                        raise RuntimeError("the broken release was accepted")
                time.sleep(pause)
            if strategy == "blue-green":
                with load.phase("rollback"):
                    rolled = manual_rollback(fresh(d))
                extra["rollback_detail"] = rolled.health
                extra["rollback_instant"] = "switched to the warm" in rolled.health
                extra["rollback_switch_seconds"] = last_switch_seconds(d)
                extra["rollback_wall_seconds"] = round(rolled.seconds, 3)
                time.sleep(pause)
        phases: dict[str, Any] = load.phase_summaries()
        phases["total"] = {**load.summary(), "ws": load.ws_counts()}
        phases.update(extra)
        return phases
    finally:
        stop_pm2(Path(d.env.pm2_home or ""))


def last_switch_seconds(d: Deployer) -> float:
    """The confirmation time of the newest switch, as audited (``traffic.switched``)."""
    for event in records.audit_log(d.transport, d.layout, 20):
        if event["event"] == "traffic.switched":
            detail = event["detail"]
            detail = json.loads(detail) if isinstance(detail, str) else detail
            return float(detail["seconds"])
    raise RuntimeError("no switch was audited")


def print_table(results: dict[str, dict[str, dict[str, Any]]]) -> None:
    header = (
        f"{'setup':<22}{'phase':<10}{'requests':>9}{'req/s':>8}{'failed':>8}"
        f"{'ka/close/post':>15}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
        f"{'ws 1001':>9}{'ws bad':>8}{'reconn':>8}"
    )
    print(header)
    print("-" * len(header))
    for setup, phases in results.items():
        for phase, f in phases.items():
            if not isinstance(f, dict):
                continue
            kinds = f["failed_by_kind"]
            split = (
                f"{kinds.get('get-keepalive', 0)}/{kinds.get('get-close', 0)}"
                f"/{kinds.get('post', 0)}"
            )
            ws = f.get("ws", {})
            print(
                f"{setup:<22}{phase:<10}{f['requests']:>9}{f['rate']:>8}{f['failed']:>8}"
                f"{split:>15}{f['p50_ms']:>8}{f['p99_ms']:>8}{f['max_ms']:>8}"
                f"{ws.get('closed_1001', 0):>9}{ws.get('abnormal', 0):>8}"
                f"{ws.get('reconnected', 0):>8}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases (under a minute)")
    args = parser.parse_args()
    setups = [
        ("blue-green traefik", "blue-green", "traefik"),
        ("blue-green nginx", "blue-green", "nginx"),
        ("restart (pm2)", "restart", "none"),
    ]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="slipway-zd-") as tmp:
        base = Path(tmp)
        repo = make_repo(base / "repo")
        envs = [environment(base, repo, s, r, args.quick) for _, s, r in setups]
        # The first deploys are set-up, not measured: run them side by side.
        with ThreadPoolExecutor(max_workers=len(envs)) as pool:
            list(pool.map(lambda d: d.deploy("v1"), envs))
        for (label, strategy, router), d in zip(setups, envs, strict=True):
            results[label] = run_phases(d, strategy, router, args.quick)
    print_table(results)
    for label in ("blue-green traefik", "blue-green nginx"):
        r = results[label]
        print(
            f"{label}: switch confirmed in {r['deploy_switch_seconds']:.3f}s (deploy),"
            f" {r['rollback_switch_seconds']:.3f}s (rollback); rollback command"
            f" {r['rollback_wall_seconds']:.2f}s: {r['rollback_detail']}"
        )
    traefik = results["blue-green traefik"]
    figures = {
        "benchmark": "zero_downtime",
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "traefik_failed": {p: traefik[p]["failed"] for p in ("deploy", "rollback", "broken")},
        "nginx_failed": {
            p: results["blue-green nginx"][p]["failed"] for p in ("deploy", "rollback")
        },
        "rollback_instant": {
            label.split()[-1]: results[label]["rollback_instant"]
            for label in ("blue-green traefik", "blue-green nginx")
        },
        "rollback_switch_seconds": {
            "traefik": traefik["rollback_switch_seconds"],
            "nginx": results["blue-green nginx"]["rollback_switch_seconds"],
        },
        "rollback_switch_under_1s": all(
            results[label]["rollback_switch_seconds"] < 1.0
            for label in ("blue-green traefik", "blue-green nginx")
        ),
        "switch_confirm_seconds": {
            label.split()[-1]: [
                results[label]["deploy_switch_seconds"],
                results[label]["rollback_switch_seconds"],
            ]
            for label in ("blue-green traefik", "blue-green nginx")
        },
        "traefik_switch_confirm_under_100ms": max(
            traefik["deploy_switch_seconds"], traefik["rollback_switch_seconds"]
        )
        < 0.1,
        "rollback_wall_seconds": {
            label.split()[-1]: results[label]["rollback_wall_seconds"]
            for label in ("blue-green traefik", "blue-green nginx")
        },
        "rollback_wall_under_1s": all(
            results[label]["rollback_wall_seconds"] < 1.0
            for label in ("blue-green traefik", "blue-green nginx")
        ),
        "restart_failed": results["restart (pm2)"]["deploy"]["failed"],
        "total_requests": sum(r["total"]["requests"] for r in results.values()),
        "phases": results,
    }
    print()
    print(
        "Targets: 0 failed requests in every blue-green phase with Traefik; a Traefik"
        " switch confirmed in under 100 ms; an instant rollback command under 1 s wall."
        " nginx and the PM2 restart are shown beside it."
    )
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
