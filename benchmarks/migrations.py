"""Migrations under write load: with the rehearsal (the default) vs without (``--no-rehearsal``).

Two blue-green environments of the example app (Traefik, PM2, SQLite), one per setup,
each taken through the same releases in the same order while writers POST rows through
the public port and WebSocket clients stay connected:

- **additive** v1 -> v2 (a column with a default); full run only;
- **breaking** v2 -> v2-rebuild (table rebuilt, every row copied, a NOT NULL column the
  old code cannot fill); full run only;
- **crash** -> destructive-crash (drops and recreates the table, then exits at start);
- **destructive** -> v3 (drops and recreates the table, nothing copied);
- **restore**: ``backup restore`` of a backup taken just before, under the same load
  (requests held at the proxy; the writes since the backup set aside and reported); full
  run only.

Figures per case and setup: the class the rehearsal found, the deploy's status, failed
requests (any write not answered 201, WebSocket failures), acknowledged writes lost
(an acknowledged row missing from the live database afterwards) and of those how many
no report mentions (not in a copy a restore set aside), rows lost overall, the hold's
longest wait, the deploy's duration.

Targets: destructive refused with 0 rows lost; every other case 0 failed requests and
0 acknowledged writes lost without a report; restore under load 0 failed.

Usage::

    .venv/bin/python benchmarks/migrations.py [--quick]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
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
from slipway.errors import DeployFailed  # noqa: E402
from slipway.state import records  # noqa: E402
from slipway.transports.local import LocalTransport  # noqa: E402

CASES = [
    ("additive", "v2"),
    ("breaking", "v2-rebuild"),
    ("crash", "broken/destructive-crash"),
    ("destructive", "v3"),
]


def environment(base: Path, repo: Path, name: str, quick: bool) -> Deployer:
    config = blue_green_config(repo, base, name, watch=0.5 if quick else 2)
    return Deployer(load_config(config), "testing", LocalTransport(), actor="bench")


def fresh(d: Deployer) -> Deployer:
    return Deployer(d.loaded, d.env_name, LocalTransport(), actor="bench")


def database(d: Deployer) -> Path:
    return Path(d.layout.database(d.env.database))


def live_rows(d: Deployer) -> set[str]:
    try:
        return rows(database(d))
    except sqlite3.Error:
        return set()


def set_aside_since(d: Deployer, since: float) -> set[str]:
    """Rows in the copies restores set aside since ``since`` (what reports mention)."""
    found: set[str] = set()
    for m in d.backups.list():
        if m["reason"] == "pre-restore" and m["created_at"] >= since:
            try:
                found |= rows(Path(d.backups.path_of(m)))
            except sqlite3.Error:
                continue
    return found


def newest_audit(d: Deployer, event: str, since: float) -> dict[str, Any]:
    for e in records.audit_log(LocalTransport(), d.layout, 60):
        if e["event"] == event and e["at"] >= since:
            detail = e["detail"]
            return json.loads(detail) if isinstance(detail, str) else dict(detail)
    return {}


def run_case(d: Deployer, ref: str, rehearse: bool, pause: float) -> dict[str, Any]:
    before = live_rows(d)
    since = time.time()
    error = ""
    with Traffic(d.env.ports.backend, writers=3, websockets=3) as traffic:
        time.sleep(pause)
        started = time.monotonic()
        try:
            outcome = fresh(d).deploy(ref, rehearse=rehearse)
            status, found = outcome.status, (outcome.rehearsal or {}).get("class", "-")
        except DeployFailed as exc:
            status, error = f"failed at {exc.step}", str(exc).splitlines()[0][:160]
            row = records.deployments(LocalTransport(), d.layout, 1)[0]
            found = json.loads(row["rehearsal"])["class"] if row.get("rehearsal") else "-"
        seconds = time.monotonic() - started
        time.sleep(pause)
    after = live_rows(d)
    acked = {w.name for w in traffic.writes if w.status == 201}
    lost = acked - after
    reported = lost & set_aside_since(d, since)
    hold = newest_audit(d, "traffic.released", since)
    return {
        "ref": ref,
        "class": found,
        "status": status,
        "error": error,
        "writes": len(traffic.writes),
        "failed": sum(1 for w in traffic.writes if w.status != 201) + len(traffic.ws_failures),
        "acked_lost": len(lost),
        "lost_unreported": len(lost - reported),
        "rows_lost": len((before | acked) - after),
        "longest_wait_s": float(hold.get("longest_wait", 0.0)),
        "deploy_s": round(seconds, 2),
    }


def run_restore(d: Deployer, pause: float) -> dict[str, Any]:
    """``backup restore`` of a fresh backup under the same load: requests are held, the
    writes made since the backup are set aside and reported."""
    from slipway.backups.restore import restore_backup

    db = d.layout.database(d.env.database)
    manifest = d.backups.create(db, reason="manual", release=d.current_release(), commit=None)
    assert manifest is not None
    since = time.time()
    with Traffic(d.env.ports.backend, writers=3, websockets=3) as traffic:
        time.sleep(pause)
        started = time.monotonic()
        restore_backup(fresh(d), str(manifest["id"]))
        seconds = time.monotonic() - started
        time.sleep(pause)
    acked = {w.name for w in traffic.writes if w.status == 201}
    lost = acked - live_rows(d)
    hold = newest_audit(d, "traffic.released", since)
    return {
        "ref": manifest["id"],
        "class": "-",
        "status": "restored",
        "error": "",
        "writes": len(traffic.writes),
        "failed": sum(1 for w in traffic.writes if w.status != 201) + len(traffic.ws_failures),
        "acked_lost": len(lost),
        "lost_unreported": len(lost - set_aside_since(d, since)),
        "rows_lost": len(lost),
        "longest_wait_s": float(hold.get("longest_wait", 0.0)),
        "deploy_s": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two cases, short pauses")
    args = parser.parse_args()
    started = time.monotonic()
    cases = CASES[2:] if args.quick else CASES
    setups = [("rehearsal", True), ("no rehearsal", False)]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="slipway-migrations-") as tmp:
        base = Path(tmp)
        repo = make_repo(base / "repo")
        envs = [environment(base, repo, f"e{i}", args.quick) for i in range(len(setups))]
        try:
            with ThreadPoolExecutor(max_workers=len(envs)) as pool:  # set-up, not measured
                list(pool.map(lambda d: d.deploy("v2" if args.quick else "v1"), envs))
            for (label, rehearse), d in zip(setups, envs, strict=True):
                results[label] = {
                    case: run_case(d, ref, rehearse, 0.3 if args.quick else 1.5)
                    for case, ref in cases
                }
                if not args.quick:  # restores hold whatever the rehearsal setting
                    results[label]["restore"] = run_restore(d, 1.5)
        finally:
            for d in envs:
                stop_pm2(Path(d.env.pm2_home or ""))
    header = (
        f"{'case':<12}{'setup':<14}{'class':<13}{'status':<20}{'writes':>7}{'failed':>7}"
        f"{'acked lost':>11}{'unreported':>11}{'rows lost':>10}{'wait s':>8}{'deploy s':>9}"
    )
    print(header)
    print("-" * len(header))
    rows = [case for case, _ in cases] + ([] if args.quick else ["restore"])
    for case in rows:
        for label, _ in setups:
            r = results[label][case]
            print(
                f"{case:<12}{label:<14}{r['class']:<13}{r['status']:<20}{r['writes']:>7}"
                f"{r['failed']:>7}{r['acked_lost']:>11}{r['lost_unreported']:>11}"
                f"{r['rows_lost']:>10}{r['longest_wait_s']:>8.2f}{r['deploy_s']:>9.2f}"
            )
    print()
    print(
        "Targets with the rehearsal: destructive refused with 0 rows lost; every other case"
        " 0 failed and 0 acknowledged writes lost without a report."
    )
    with_r, without = results["rehearsal"], results["no rehearsal"]
    figures = {
        "benchmark": "migrations",
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "failed": {c: [with_r[c]["failed"], without[c]["failed"]] for c in rows},
        "rows_lost": {c: [with_r[c]["rows_lost"], without[c]["rows_lost"]] for c, _ in cases},
        "lost_unreported": {
            c: [with_r[c]["lost_unreported"], without[c]["lost_unreported"]] for c, _ in cases
        },
        "pairs": "[rehearsal, no rehearsal]",
        "setups": results,
    }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
