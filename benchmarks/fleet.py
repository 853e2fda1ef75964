"""Wall time of a warm blue-green deploy to 1, 5 and 20 hosts, side by side in one run.

Each size is a fleet of network-namespace hosts (``tests/netns.py``: its own sshd,
loopback, PM2, Traefik and SQLite file), deployed over real SSH. The example app is
deployed once (cold: environments, Traefik), then the same commit is deployed
``rounds`` times (warm: the shared Python environment is reused, the rehearsal is
skipped, the standby colour is replaced): that is what is timed, from the command's
start to its exit. One host is a plain ``slipway deploy``; several hosts are a fleet
(one wave, ``parallel`` = the host count).

The ratio fleet(N) / one host is the issue's figure (target: 20 hosts at most 1.5x one
host). On this machine every host shares the same two cores, so the hosts' own work
(uvicorn starting, Traefik, health checks) competes for CPU as it would not on real
machines; the deployer's own cost per host is reported apart (slipway's CPU seconds
per host, from its rusage) with the sequential alternative: one host after another,
measured at 5 hosts (what slipway did before fleets).

    .venv/bin/python benchmarks/fleet.py [--quick]     # quick: 1 and 3 hosts, 1 round

Needs root (ip netns) and sshd. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fleetenv import Fleet, warm_uv_cache  # noqa: E402
from netns import netns_fleet  # noqa: E402


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_deploy(fleet: Fleet, *extra: str) -> tuple[float, float]:
    """(wall seconds, slipway's CPU seconds) of one ``slipway deploy``."""
    cpu, started = children_cpu(), time.monotonic()
    done = fleet.cli("deploy", "testing", "--ref", "v1", *extra)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"deploy failed: {done.stderr[:2000]}")
    return seconds, children_cpu() - cpu


def measure(base: Path, hosts: int, rounds: int, sequential: bool) -> dict[str, Any]:
    with netns_fleet(base / f"ns-{hosts}", hosts) as ns:
        fleet = Fleet(base / f"app-{hosts}", ns, batch_size=None, parallel=hosts)
        # The example's 60 s gate deadline (the tests' 8 s is too short for twenty hosts'
        # apps starting at once on two shared cores).
        text = fleet.config.read_text()
        fleet.config.write_text(text.replace("deadline_seconds = 8", "deadline_seconds = 60"))
        cold, _ = timed_deploy(fleet)
        warm = [timed_deploy(fleet) for _ in range(rounds)]
        figures: dict[str, Any] = {
            "hosts": hosts,
            "cold_seconds": round(cold, 3),
            "warm_seconds": round(statistics.median(w for w, _ in warm), 3),
            "slipway_cpu_per_host_seconds": round(statistics.median(c for _, c in warm) / hosts, 3),
        }
        if sequential:
            one_by_one = []
            for host in ns.hosts:
                seconds, _ = timed_deploy(fleet, "--host", host.spec)
                one_by_one.append(seconds)
            figures["sequential_seconds"] = round(sum(one_by_one), 3)
        return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 3 hosts, one round")
    args = parser.parse_args()
    sizes, rounds, sequential_at = ((1, 3), 1, 0) if args.quick else ((1, 5, 20), 2, 5)
    base = Path(tempfile.mkdtemp(prefix="slipway-fleet-bench-"))
    (base / "uv").mkdir()
    warm_uv_cache(base / "uv")
    results = [measure(base, n, rounds, n == sequential_at) for n in sizes]
    one = results[0]["warm_seconds"]
    print(f"{'hosts':>5} {'cold s':>8} {'warm s':>8} {'x one host':>10} {'cpu s/host':>10}")
    for r in results:
        r["ratio_to_one_host"] = round(r["warm_seconds"] / one, 3)
        print(
            f"{r['hosts']:>5} {r['cold_seconds']:>8.2f} {r['warm_seconds']:>8.2f}"
            f" {r['ratio_to_one_host']:>10.2f} {r['slipway_cpu_per_host_seconds']:>10.3f}"
        )
        if "sequential_seconds" in r:
            print(
                f"      one host after another: {r['sequential_seconds']:.2f}s"
                f" ({r['sequential_seconds'] / r['warm_seconds']:.2f}x the fleet)"
            )
    last = results[-1]
    per_host = (last["warm_seconds"] - one) / max(1, last["hosts"] - 1)
    print(f"wall time added per host beyond the first: {per_host:.3f}s")
    figures = {
        "benchmark": "fleet",
        "mode": "quick" if args.quick else "full",
        "rounds": rounds,
        "sizes": results,
        "added_seconds_per_host": round(per_host, 3),
        "ratio_largest_to_one_host": last["ratio_to_one_host"],
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
