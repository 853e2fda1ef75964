"""Bad releases as canaries vs the same releases blue-green, side by side in one run.

The example app (v1 live, Traefik, PM2, real SQLite) under steady load on its public
port: keep-alive and ``Connection: close`` GETs of ``/api/projects``, POSTs writing
rows, open WebSockets. Each bad release passes the health gate (its fault reaches only
real traffic) and is deployed twice:

- ``canary``: steps 5, 25, 50, 100 %; the analysis of the router's access log aborts it;
- ``blue-green``: the same release switched to all traffic at once; its health checks
  pass, so it stays live until rolled back by hand (here: after ``--observe`` seconds,
  the time an operator might take to see the alert).

Releases: ``fail-after`` (500 on every request after the 20th), and (full run)
``sluggish`` (every request 300 ms slower) and ``ws-drop`` (ends every WebSocket session
with 1011 after 1.5 s). Figures per run: requests the bad release answered badly (a
500, or 290 ms and slower), their share of all requests from the deploy's start to the
abort (canary) or the manual rollback (blue-green), the load's WebSocket sessions ended
abnormally, the time from the breach found to every request back on the stable
colour, and connection-level failures (must be 0). Usage::

    .venv/bin/python benchmarks/canary.py [--quick]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from apprepo import make_repo, write_config, write_env_file  # noqa: E402
from loadgen import Load, Sample  # noqa: E402
from support import free_port, stop_pm2  # noqa: E402

from slipway.cli.hosts import with_strategy  # noqa: E402
from slipway.config import load_config  # noqa: E402
from slipway.deploy.engine import Deployer  # noqa: E402
from slipway.deploy.rollback import manual_rollback  # noqa: E402
from slipway.errors import DeployFailed  # noqa: E402
from slipway.transports.local import LocalTransport  # noqa: E402

SLOW_MS = 290.0


def environment(base: Path, step_seconds: float) -> tuple[Deployer, Deployer]:
    """One environment, as a canary deployer and a blue-green one."""
    repo = make_repo(base / "repo")
    root = base / "srv"
    table = f"""
[environments.testing.blue_green]
api_port = {free_port()}
blue = {{ backend = {free_port()}, frontend = {free_port()} }}
green = {{ backend = {free_port()}, frontend = {free_port()} }}
standby_seconds = 600
watch_seconds = 3

[environments.testing.canary]
step_seconds = {step_seconds}
"""
    config = write_config(
        repo, root, health="comprehensive", strategy="blue-green", blue_green=table
    )
    write_env_file(root, "API_TOKEN=bench-token\n")
    loaded = load_config(config)
    as_canary = with_strategy(loaded, "testing", "canary")
    return (
        Deployer(as_canary, "testing", LocalTransport(), actor="bench"),
        Deployer(loaded, "testing", LocalTransport(), actor="bench"),
    )


def fresh(d: Deployer) -> Deployer:
    return Deployer(d.loaded, d.env_name, LocalTransport(), actor="bench")


def bad(sample: Sample, release: str) -> bool:
    if release == "fail-after":
        return sample.error == "500"
    if release == "sluggish":
        return sample.ok and sample.ms >= SLOW_MS
    return False  # ws-drop answers requests well: its harm is in ws_abnormal


def figures(load: Load, release: str, start: float, end: float) -> dict[str, Any]:
    chosen = [s for s in load.samples if start <= s.at < end]
    answered_badly = sum(bad(s, release) for s in chosen)
    connection = [s for s in chosen if not s.ok and not s.error.isdigit()]
    return {
        "requests": len(chosen),
        "bad": answered_badly,
        "bad_share": round(answered_badly / len(chosen), 5) if chosen else 0.0,
        "connection_failures": len(connection),
    }


def load_on(d: Deployer) -> Load:
    """The load: WebSocket clients end their sessions after 3 s and open new ones, so
    a release that drops sessions meets new ones (held ones stay on their colour)."""
    return Load(d.env.ports.backend, path="/api/projects", websockets=5, ws_session_seconds=3)


def run_canary(d: Deployer, release: str) -> dict[str, Any]:
    with load_on(d) as load:
        time.sleep(1.0)
        start = time.monotonic()
        try:
            fresh(d).deploy(f"broken/{release}")
        except DeployFailed:
            pass
        else:
            raise RuntimeError(f"the canary of {release} was not aborted")
        end = time.monotonic()
        time.sleep(1.0)
    status = fresh(d).canary_status() or {}
    return {
        **figures(load, release, start, end),
        "aborted_at_weight": status["steps"][-1]["weight"],
        "breach": status.get("breach"),
        "breach_to_zero_s": round(float(status["to_zero_s"]), 3),
        "deploy_s": round(end - start, 2),
        "ws_abnormal": load.ws.abnormal,
        "ws_sessions": 5 + load.ws.reconnected,
    }


def run_blue_green(d: Deployer, release: str, observe: float) -> dict[str, Any]:
    with load_on(d) as load:
        time.sleep(1.0)
        start = time.monotonic()
        fresh(d).deploy(f"broken/{release}")  # its checks pass: it goes live
        live = time.monotonic()
        time.sleep(observe)
        manual_rollback(fresh(d))
        end = time.monotonic()
        time.sleep(1.0)
    return {
        **figures(load, release, start, end),
        "deploy_s": round(live - start, 2),
        "live_until_rollback_s": round(end - live, 2),
        "ws_abnormal": load.ws.abnormal,
        "ws_sessions": 5 + load.ws.reconnected,
    }


def print_table(results: dict[str, dict[str, Any]]) -> None:
    header = (
        f"{'release':<12}{'strategy':<12}{'requests':>9}{'bad':>7}{'bad %':>8}"
        f"{'ws dropped':>14}{'conn fail':>10}{'to 0 s':>8}{'aborted at':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, f in results.items():
        release, strategy = name.split("/")
        aborted = f"{f['aborted_at_weight']}%" if "aborted_at_weight" in f else "-"
        to_zero = f"{f['breach_to_zero_s']:.3f}" if "breach_to_zero_s" in f else "-"
        dropped = f"{f['ws_abnormal']} of {f['ws_sessions']}"
        print(
            f"{release:<12}{strategy:<12}{f['requests']:>9}{f['bad']:>7}"
            f"{f['bad_share'] * 100:>7.2f}%{dropped:>14}{f['connection_failures']:>10}"
            f"{to_zero:>8}{aborted:>11}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fail-after only, short steps")
    args = parser.parse_args()
    releases = ["fail-after"] if args.quick else ["fail-after", "sluggish", "ws-drop"]
    observe = 3.0 if args.quick else 10.0
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="slipway-canary-bench-") as tmp:
        as_canary, as_blue_green = environment(Path(tmp), 5 if args.quick else 30)
        try:
            fresh(as_blue_green).deploy("v1")
            for release in releases:
                results[f"{release}/canary"] = run_canary(as_canary, release)
                results[f"{release}/blue-green"] = run_blue_green(as_blue_green, release, observe)
        finally:
            stop_pm2(Path(as_canary.env.pm2_home or ""))
    print_table(results)
    targets = {
        "canary_bad_share_under_1pct": all(
            f["bad_share"] < 0.01 for n, f in results.items() if n.endswith("/canary")
        ),
        "breach_to_zero_under_1s": all(
            f["breach_to_zero_s"] < 1 for n, f in results.items() if n.endswith("/canary")
        ),
        "no_connection_failures": all(f["connection_failures"] == 0 for f in results.values()),
    }
    print(json.dumps({"quick": args.quick, "results": results, "targets": targets}, sort_keys=True))


if __name__ == "__main__":
    main()
