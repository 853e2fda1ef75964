"""The monitor's pure parts: thresholds, fire-once/resolve-once, Prometheus text, and
the host helper that reads the router's access log."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from slipway.config.model import MonitorConfig
from slipway.health.checks import CheckResult
from slipway.monitor import Sample, evaluate, transitions
from slipway.monitor.prometheus import Totals, render
from slipway.state import hostscript

CFG = MonitorConfig()
DISK_OK = {"/srv/app": {"free_ratio": 0.5, "free": 50 << 20, "total": 100 << 20}}


def sample(**kw) -> Sample:
    base = dict(
        at=1000.0,
        source="traefik access log",
        requests=100,
        errors=0,
        p95_seconds=0.05,
        ws_probes=2,
        ws_drops=0,
        db_probes=2,
        db_failures=0,
        disks=DISK_OK,
    )
    return Sample(**{**base, **kw})


def firing(s: Sample, cfg: MonitorConfig = CFG) -> set[str]:
    return {r.name for r in evaluate(s, cfg) if r.firing}


def test_each_threshold_of_the_design():
    assert firing(sample()) == set()
    assert firing(sample(errors=6)) == {"error_rate"}  # 6% > 5%
    assert firing(sample(errors=5)) == set()  # 5% is not above 5%
    assert firing(sample(p95_seconds=2.5)) == {"p95"}
    assert firing(sample(ws_drops=1)) == {"websocket_drops"}  # 50% > 10%
    assert firing(sample(db_failures=1)) == {"database"}
    low = {"/b": {"free_ratio": 0.05, "free": 5 << 20, "total": 100 << 20}}
    assert firing(sample(disks={**DISK_OK, **low})) == {"disk"}
    reading = next(r for r in evaluate(sample(disks=low), CFG) if r.name == "disk")
    assert reading.shown == "5.0% free on /b" and reading.limit == "< 10% free"
    custom = MonitorConfig(error_rate_percent=1, p95_seconds=0.01)
    assert firing(sample(errors=2), custom) == {"error_rate", "p95"}


def test_too_few_requests_are_not_judged_and_keep_the_state():
    few = sample(requests=3, errors=3, p95_seconds=9.0)
    readings = {r.name: r for r in evaluate(few, CFG)}
    assert readings["error_rate"].value is None and not readings["error_rate"].firing
    assert readings["error_rate"].shown == "not judged (3 requests)"
    state = {"error_rate": {"firing": True, "since": 5.0}}
    new_state, changes = transitions(state, list(readings.values()), 10.0)
    assert changes == [] and new_state["error_rate"] == {"firing": True, "since": 5.0}


def test_an_alert_fires_once_and_resolves_once():
    state: dict = {}
    history = []
    for at, errors in [(1, 0), (2, 10), (3, 10), (4, 12), (5, 0), (6, 0), (7, 9)]:
        state, changes = transitions(state, evaluate(sample(errors=errors), CFG), float(at))
        history += [(at, c.name, c.firing, c.since) for c in changes]
    assert history == [
        (2, "error_rate", True, 2.0),
        (5, "error_rate", False, 2.0),  # resolved; it had fired at 2
        (7, "error_rate", True, 7.0),
    ]


def test_prometheus_text_parses_with_the_reference_parser():
    s = sample(errors=7, checks=[CheckResult("api", True, 12.5), CheckResult('we"ird', False, 1.0)])
    s.disks = {'/srv/a "b"\\c': {"free_ratio": 0.25, "free": 1, "total": 4}}
    totals = Totals()
    totals.add(s)
    totals.add(s)
    text = render("production", s, {"error_rate"}, totals)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    values = {
        (m.name, tuple(sorted(m.labels.items()))): m.value
        for f in families.values()
        for m in f.samples
    }
    env = ("env", "production")
    assert values[("slipway_http_requests_total", (env,))] == 200
    assert values[("slipway_http_errors_total", (env,))] == 14
    assert values[("slipway_http_error_ratio", (env,))] == 0.07
    assert values[("slipway_alert_firing", (("alert", "error_rate"), env))] == 1
    assert values[("slipway_alert_firing", (("alert", "disk"), env))] == 0
    assert values[("slipway_check_up", (("check", 'we"ird'), env))] == 0
    assert values[("slipway_check_latency_seconds", (("check", "api"), env))] == 0.0125
    assert values[("slipway_disk_free_ratio", (env, ("path", '/srv/a "b"\\c')))] == 0.25
    assert families["slipway_http_requests"].type == "counter"
    assert families["slipway_http_p95_seconds"].type == "gauge"


def traefik_line(status: int, seconds: float, entry: str = "backend") -> str:
    return json.dumps(
        {
            "DownstreamStatus": status,
            "Duration": int(seconds * 1e9),
            "entryPointName": entry,
            "RequestPath": "/api/x",
        }
    )


def test_traffic_reads_the_access_log_incrementally(tmp_path: Path):
    log = tmp_path / "access.log"
    missing = hostscript.op_traffic({"log": str(log), "offset": None, "entries": ["backend"]})
    assert missing["requests"] == 0 and missing["missing"] is True
    lines = [traefik_line(200, 0.01 * i) for i in range(1, 20)] + [
        traefik_line(502, 3.0),
        traefik_line(200, 9.0, entry="frontend"),  # not the API
        traefik_line(101, 60.0),  # a WebSocket session: counted apart
        traefik_line(0, 7.7),  # how Traefik logs one (hijacked connection, measured)
        "not json",
    ]
    log.write_text("\n".join(lines) + "\n" + traefik_line(500, 1.0)[:20])  # a partial line
    first = hostscript.op_traffic({"log": str(log), "offset": 0, "entries": ["backend"]})
    assert (first["requests"], first["errors"], first["ws_sessions"]) == (20, 1, 2)
    assert first["p95"] == 0.19 and first["max"] == 3.0
    assert first["offset"] == log.stat().st_size - 20  # the partial line waits
    with log.open("a") as f:
        f.write(traefik_line(500, 1.0)[20:] + "\n")
    second = hostscript.op_traffic(
        {"log": str(log), "offset": first["offset"], "entries": ["backend"]}
    )
    assert (second["requests"], second["errors"]) == (1, 1)
    log.write_text(traefik_line(200, 0.5) + "\n")  # rotated: shorter than the offset
    rotated = hostscript.op_traffic({"log": str(log), "offset": second["offset"], "entries": []})
    assert rotated["requests"] == 1 and rotated["p95"] == 0.5


def test_traffic_reads_nginx_lines_and_starts_from_the_tail(tmp_path: Path):
    log = tmp_path / "access.log"
    nginx = [json.dumps({"DownstreamStatus": 503, "request_time": 2.5, "entryPointName": "8200"})]
    log.write_text("x" * 100 + "\n" + "\n".join(nginx * 3) + "\n")
    tail = hostscript.op_traffic(
        {"log": str(log), "offset": None, "entries": ["8200"], "tail": 150}
    )
    assert tail["requests"] == 2 and tail["errors"] == 2 and tail["p95"] == 2.5
    assert tail["offset"] == log.stat().st_size


def test_disk_and_sqlite_probe_ops(tmp_path: Path):
    import sqlite3

    disks = hostscript.op_disk({"paths": [str(tmp_path / "not" / "yet")]})["disks"]
    assert 0 < disks[str(tmp_path / "not" / "yet")]["free_ratio"] <= 1
    db = tmp_path / "state.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    answer = hostscript.op_sqlite_probe({"db": str(db), "query": "SELECT count(*) FROM t"})
    assert answer["row"] == [0]
    import pytest

    with pytest.raises(sqlite3.OperationalError):
        hostscript.op_sqlite_probe({"db": str(tmp_path / "none.db"), "query": "SELECT 1"})
    assert not (tmp_path / "none.db").exists()  # read-only: never created
