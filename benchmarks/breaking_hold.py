"""A breaking migration under write load: blue-green as usual vs blue-green with the hold.

Two environments of the example app (Traefik, PM2, SQLite) side by side in one run,
each deploying v1 -> v2 while writers POST rows through the public port and WebSocket
clients stay connected. One deploys v2 as an ordinary release, the other with
``breaking`` (requests held at the proxy from the backup until v2 is live).

Figures per setup:

- **at risk**: writes the old release acknowledged after the pre-deploy backup was taken
  (acknowledged by the old colour, absent from the backup). A rollback that restores the
  backup sets exactly these aside: the hold exists to make this 0.
- failed writes and WebSocket failures (the hold must queue, not fail);
- write latency (p50, p99, max) and the hold's own longest wait, as the audit log
  records it: the price of the hold;
- the deploy's duration.

Usage::

    .venv/bin/python benchmarks/breaking_hold.py [--quick]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
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

from apprepo import blue_green_config, make_repo  # noqa: E402
from support import stop_pm2  # noqa: E402
from writeload import Traffic, rows  # noqa: E402

from slipway.config import load_config  # noqa: E402
from slipway.deploy.engine import Deployer  # noqa: E402
from slipway.state import records  # noqa: E402
from slipway.state.hostscript import percentile  # noqa: E402
from slipway.transports.local import LocalTransport  # noqa: E402


def environment(base: Path, repo: Path, name: str, quick: bool) -> Deployer:
    config = blue_green_config(repo, base, name, watch=0.5 if quick else 3)
    return Deployer(load_config(config), "testing", LocalTransport(), actor="bench")


def fresh(d: Deployer) -> Deployer:
    return Deployer(d.loaded, d.env_name, LocalTransport(), actor="bench")


def _ms(values: list[float], q: float) -> float:
    """Nearest-rank percentile in milliseconds, as slipway computes it everywhere."""
    value = percentile(sorted(values), q)
    return round(value * 1000, 1) if value is not None else 0.0


def measure(d: Deployer, breaking: bool, quick: bool) -> dict[str, Any]:
    pause = 0.5 if quick else 2.0
    previous = fresh(d).current_release()
    live_before = d.live_color() or ""
    try:
        with Traffic(d.env.ports.backend, writers=3, websockets=5) as traffic:
            time.sleep(pause)
            started = time.monotonic()
            outcome = fresh(d).deploy("v2", breaking=breaking)
            seconds = time.monotonic() - started
            time.sleep(pause)
        manifest = d.backups.before_deploy_of(outcome.release)
        in_backup = rows(Path(d.backups.path_of(manifest)))
        writes = traffic.writes
        by_old = {w.name for w in writes if w.status == 201 and w.color == live_before}
        latencies = [w.seconds for w in writes if w.status == 201]
        hold = next(
            (
                json.loads(e["detail"])
                for e in records.audit_log(LocalTransport(), d.layout, 40)
                if e["event"] == "traffic.released"
            ),
            {},
        )
        return {
            "previous": previous,
            "status": outcome.status,
            "writes": len(writes),
            "failed": sum(1 for w in writes if w.status != 201),
            "at_risk": len(by_old - in_backup),
            "ws_sessions": traffic.ws_sessions,
            "ws_failures": len(traffic.ws_failures),
            "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else 0.0,
            "p99_ms": _ms(latencies, 0.99),
            "max_ms": _ms(latencies, 1.0),
            "held": int(hold.get("held", 0)),
            "longest_wait_s": float(hold.get("longest_wait", 0.0)),
            "deploy_s": round(seconds, 2),
        }
    finally:
        stop_pm2(Path(d.env.pm2_home or ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter pauses (under a minute)")
    args = parser.parse_args()
    started = time.monotonic()
    setups = [("blue-green", False), ("blue-green + hold", True)]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="slipway-hold-") as tmp:
        base = Path(tmp)
        repo = make_repo(base / "repo")
        envs = [environment(base, repo, f"e{i}", args.quick) for i in range(len(setups))]
        with ThreadPoolExecutor(max_workers=len(envs)) as pool:  # set-up, not measured
            list(pool.map(lambda d: d.deploy("v1"), envs))
        for (label, breaking), d in zip(setups, envs, strict=True):
            results[label] = measure(d, breaking, args.quick)
    header = (
        f"{'setup':<18}{'writes':>7}{'failed':>7}{'at risk':>8}{'ws bad':>7}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'held':>6}{'wait s':>8}{'deploy s':>9}"
    )
    print(header)
    print("-" * len(header))
    for label, r in results.items():
        print(
            f"{label:<18}{r['writes']:>7}{r['failed']:>7}{r['at_risk']:>8}{r['ws_failures']:>7}"
            f"{r['p50_ms']:>8}{r['p99_ms']:>8}{r['max_ms']:>8}{r['held']:>6}"
            f"{r['longest_wait_s']:>8.2f}{r['deploy_s']:>9.2f}"
        )
    held, plain = results["blue-green + hold"], results["blue-green"]
    print()
    print(
        "at risk: writes the old release acknowledged after the backup (a restore of the"
        " backup sets them aside). Target with the hold: 0 at risk, 0 failed."
    )
    figures = {
        "benchmark": "breaking_hold",
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "at_risk": {"plain": plain["at_risk"], "hold": held["at_risk"]},
        "failed": {"plain": plain["failed"], "hold": held["failed"]},
        "longest_wait_s": held["longest_wait_s"],
        "max_write_ms": {"plain": plain["max_ms"], "hold": held["max_ms"]},
        "deploy_seconds_ratio": round(held["deploy_s"] / plain["deploy_s"], 2),
        "setups": results,
    }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
