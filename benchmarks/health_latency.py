"""How long one health check takes on a healthy deployed app: the seed's check (one
``curl -sf /health`` from a shell script) against slipway's basic and comprehensive
rounds, measured in the same run on the same app.

The app (example backend, PM2, real SQLite) is deployed once with the restart strategy;
then the three are measured in turns, ``rounds`` times each. A slipway round runs its
checks in parallel, so its latency is its slowest check's; the per-check medians show
which one that is. Full: 60 rounds; --quick: 15 (under a minute with the deploy). The
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from apprepo import make_repo, write_config, write_env_file  # noqa: E402
from support import stop_pm2  # noqa: E402

from slipway.config import load_config  # noqa: E402
from slipway.config.model import HealthLevel  # noqa: E402
from slipway.deploy.engine import Deployer  # noqa: E402
from slipway.health.gate import run_round  # noqa: E402
from slipway.transports.local import LocalTransport  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * int(q * 100) // 100) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="15 rounds instead of 60")
    args = parser.parse_args()
    rounds = 15 if args.quick else 60
    curl = shutil.which("curl")
    base = Path(tempfile.mkdtemp(prefix="slipway-health-bench-"))
    root = base / "srv"
    try:
        repo = make_repo(base / "repo")
        config = write_config(repo, root, health="comprehensive")
        write_env_file(root, "API_TOKEN=bench-token-1234\n")
        loaded = load_config(config)
        d = Deployer(loaded, "testing", LocalTransport(), actor="bench")
        d.deploy("v1")
        port = d.port("backend")
        comprehensive = d.checks(HealthLevel.COMPREHENSIVE)
        basic = d.checks(HealthLevel.BASIC)
        seconds: dict[str, list[float]] = {"curl": [], "basic": [], "comprehensive": []}
        per_check: dict[str, list[float]] = {}
        for _ in range(rounds):
            if curl:
                started = time.perf_counter()
                subprocess.run(
                    [curl, "-sf", "-o", "/dev/null", f"http://127.0.0.1:{port}/health"], check=True
                )
                seconds["curl"].append(time.perf_counter() - started)
            started = time.perf_counter()
            assert all(r.ok for r in run_round(basic))
            seconds["basic"].append(time.perf_counter() - started)
            started = time.perf_counter()
            results = run_round(comprehensive)
            seconds["comprehensive"].append(time.perf_counter() - started)
            assert all(r.ok for r in results), results
            for r in results:
                per_check.setdefault(r.name, []).append(r.latency_ms)
    finally:
        stop_pm2(root / "pm2")
        shutil.rmtree(base, ignore_errors=True)

    figures: dict[str, object] = {"rounds": rounds}
    print(f"health check latency, {rounds} rounds each, same app, same run\n")
    print(f"{'check':<34}{'p50 ms':>10}{'p95 ms':>10}{'vs curl':>10}")
    curl_p50 = statistics.median(seconds["curl"]) if seconds["curl"] else None
    labels = {
        "curl": "seed: curl -sf /health",
        "basic": "slipway basic round",
        "comprehensive": "slipway comprehensive round",
    }
    for key, label in labels.items():
        if not seconds[key]:
            print(f"{label:<34}{'(curl not installed)':>30}")
            continue
        p50 = statistics.median(seconds[key]) * 1000
        p95 = percentile(seconds[key], 0.95) * 1000
        ratio = p50 / (curl_p50 * 1000) if curl_p50 else None
        print(f"{label:<34}{p50:>10.1f}{p95:>10.1f}{(f'{ratio:.2f}x' if ratio else '-'):>10}")
        figures[f"{key}_p50_ms"] = round(p50, 1)
        figures[f"{key}_p95_ms"] = round(p95, 1)
        if ratio:
            figures[f"{key}_vs_curl"] = round(ratio, 2)
    print("\ncomprehensive, per check (run in parallel):")
    for name, values in per_check.items():
        p50 = statistics.median(values)
        print(f"  {name:<32}{p50:>10.1f}{percentile(values, 0.95):>10.1f}")
        figures[f"check_{name}_p50_ms"] = round(p50, 1)
    target = figures.get("comprehensive_p95_ms")
    figures["target_ms"] = 100  # comprehensive round p95, with the resident host agent
    figures["target_met"] = bool(target is not None and float(str(target)) < 100)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
