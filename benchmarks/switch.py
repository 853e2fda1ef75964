"""How long a blue-green switch takes to confirm: slipway's ``Router.switch`` against the
router's own reaction time, side by side in one run, with Traefik and nginx.

The example app is deployed twice (v1, v2) with each router, so both colours are
warm. Under a steady load on the public ports, traffic is then switched back and forth
``rounds`` times in two ways, in turns:

- ``slipway``: ``Router.switch(target)``, as a deploy or rollback calls it: the target's
  ports are checked, the routes rendered, validated and applied, and the switch is
  confirmed from the router's own state plus one probe per public port;
- ``anchor``: the same routes file applied by the router's ``apply`` alone, then every
  public port polled every 2 ms with a bare request until it answers as the new colour:
  the fastest a client could see the switch, with no check at all.

The ratio slipway/anchor is the cost of confirming. For nginx the anchor is the first
answer from a new worker, before the old workers stop accepting (about 100 ms later):
a switch is only complete then. Full: 30 rounds per router;
--quick: 10 (under a minute with the deploys). The last line is one JSON object.

    .venv/bin/python benchmarks/switch.py [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from apprepo import blue_green_table, make_repo, write_config, write_env_file  # noqa: E402
from loadgen import Load  # noqa: E402
from support import stop_pm2  # noqa: E402

from slipway.config import load_config  # noqa: E402
from slipway.deploy.engine import Deployer  # noqa: E402
from slipway.routers.base import COLOR_HEADER, Target  # noqa: E402
from slipway.transports.local import LocalTransport  # noqa: E402

ROUTERS = ("traefik", "nginx")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * int(q * 100) // 100) - 1)]


def environment(base: Path, repo: Path, router: str) -> Deployer:
    root = base / f"srv-{router}"
    config = repo / f"slipway-{router}.toml"
    table = blue_green_table(router=f'"{router}"', standby_seconds=600, watch_seconds=0.5)
    written = write_config(
        repo, root, health="comprehensive", strategy="blue-green", blue_green=table
    )
    written.rename(config)
    write_env_file(root, "API_TOKEN=bench-token\n")
    return Deployer(load_config(config), "testing", LocalTransport(), actor="bench")


def answers_as(port: int, path: str, color: str) -> bool:
    """One bare request through a public port: does it come back from ``color``?"""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.getheader(COLOR_HEADER) == color
    except OSError:
        return False
    finally:
        conn.close()


def anchor_switch(d: Deployer, target: Target) -> float:
    """Apply the routes with no check, then poll until every public port answers."""
    router = d.router()
    text = router.render_routes(target)
    public = {p: d.port(p) for p in d.config.processes}
    paths = {p: proc.health_path for p, proc in d.config.processes.items()}
    started = time.monotonic()
    router.apply(text)
    pending = set(public)
    while pending:
        pending = {p for p in pending if not answers_as(public[p], paths[p], target.color)}
        if pending:
            time.sleep(0.002)
        if time.monotonic() - started > 10:
            raise RuntimeError(f"{target.color} never answered on {sorted(pending)}")
    return time.monotonic() - started


def slipway_switch(d: Deployer, target: Target) -> float:
    report = d.router().switch(target)
    if report.color != target.color:
        raise RuntimeError(f"switched to {report.color}, wanted {target.color}")
    return report.seconds


def measure(d: Deployer, rounds: int) -> dict[str, Any]:
    seconds: dict[str, list[float]] = {"slipway": [], "anchor": []}
    live = d.router().active_color() or "blue"
    other = {"blue": "green", "green": "blue"}
    load = Load(d.port("backend"), keepalive=2, close=1, posts=1, websockets=5)
    with load, load.phase("switching"):
        for _ in range(rounds):
            for way, switch in (("slipway", slipway_switch), ("anchor", anchor_switch)):
                live = other[live]
                seconds[way].append(switch(d, d.target(live)))
                time.sleep(0.1)
    summary = load.phase_summaries()["switching"]
    figures: dict[str, Any] = {
        "failed_requests": summary["failed"],
        "requests": summary["requests"],
    }
    for way, values in seconds.items():
        figures[way] = {
            "p50_ms": round(statistics.median(values) * 1000, 1),
            "p95_ms": round(percentile(values, 0.95) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1),
        }
    figures["ratio_p50"] = round(figures["slipway"]["p50_ms"] / figures["anchor"]["p50_ms"], 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 rounds instead of 30")
    args = parser.parse_args()
    rounds = 10 if args.quick else 30
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="slipway-switch-") as tmp:
        base = Path(tmp)
        repo = make_repo(base / "repo")
        envs = {router: environment(base, repo, router) for router in ROUTERS}
        try:
            with ThreadPoolExecutor(max_workers=len(envs)) as pool:
                list(pool.map(lambda d: d.deploy("v1"), envs.values()))
                list(pool.map(lambda d: d.deploy("v2"), envs.values()))
            for router, d in envs.items():
                results[router] = measure(d, rounds)
        finally:
            for d in envs.values():
                stop_pm2(Path(d.host_env["PM2_HOME"]))
    print(f"{'router':<10}{'way':<10}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for router, r in results.items():
        for way in ("slipway", "anchor"):
            f = r[way]
            print(f"{router:<10}{way:<10}{f['p50_ms']:>9}{f['p95_ms']:>9}{f['max_ms']:>9}")
        print(
            f"{router:<10}ratio p50 {r['ratio_p50']}; {r['failed_requests']} failed of"
            f" {r['requests']} requests while switching"
        )
    figures = {
        "benchmark": "switch",
        "quick": args.quick,
        "rounds": rounds,
        "seconds": round(time.monotonic() - started, 1),
        "routers": results,
        "traefik_confirm_p50_under_100ms": results["traefik"]["slipway"]["p50_ms"] < 100,
    }
    print()
    print(
        "Target: a Traefik switch confirmed in under 100 ms (median); the anchor is the"
        " router's own reaction seen by a bare client polling every 2 ms."
    )
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
