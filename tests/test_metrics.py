"""DORA metrics from records with known answers, and their exports."""

from __future__ import annotations

import json
import time

import pytest

from slipway.errors import UsageError
from slipway.metrics.dora import DAY, compute, parse_since, percentile
from slipway.metrics.export import prometheus, to_csv

NOW = 1_000 * DAY


def row(
    n: int,
    finished: float,
    status: str = "succeeded",
    *,
    kind: str = "deploy",
    duration: float = 10.0,
    committed: float | None = None,
    message: str = "feat",
    release: str | None = None,
    previous: str | None = None,
    steps: list | None = None,
    env: str = "production",
) -> dict:
    return {
        "id": f"d{n}",
        "env": env,
        "kind": kind,
        "status": status,
        "release": release or f"r{n}",
        "previous_release": previous,
        "started_at": finished - duration,
        "finished_at": finished,
        "duration_s": duration,
        "committed_at": committed,
        "message": message,
        "steps": json.dumps(steps or []),
    }


def test_no_deploys_gives_zeros_and_no_rates():
    m = compute([], env="production", now=NOW, window_s=30 * DAY)
    assert (m.deploys, m.successful, m.deploys_per_day) == (0, 0, 0.0)
    assert m.failure_rate is None and m.change_failure_rate is None
    assert m.duration_median_s is None and m.time_to_restore_median_s is None
    assert m.lead_time_median_s is None


def test_only_failures():
    rows = [
        row(1, NOW - 3 * DAY, "rolled_back", steps=[{"step": "rollback", "seconds": 4.0}]),
        row(2, NOW - 2 * DAY, "rolled_back", steps=[{"step": "rollback", "seconds": 6.0}]),
        row(3, NOW - 1 * DAY, "failed"),  # never restored in the window
    ]
    m = compute(rows, env="production", now=NOW, window_s=30 * DAY)
    assert (m.deploys, m.successful, m.failed) == (3, 0, 3)
    assert m.failure_rate == 1.0
    assert m.change_failure_rate is None  # no successful deploy to fail
    assert m.deploys_per_day == 0.0
    assert m.time_to_restore_median_s == 5.0 and m.restores == 2


def test_frequency_duration_lead_time_and_window():
    rows = [
        row(1, NOW - 40 * DAY),  # outside the 30-day window
        row(2, NOW - 20 * DAY, duration=10, committed=NOW - 20 * DAY - 3600),
        row(3, NOW - 10 * DAY, duration=20, committed=NOW - 10 * DAY - 7200),
        row(
            4,
            NOW - 5 * DAY,
            duration=30,
            committed=NOW - 5 * DAY - 600,
            steps=[{"step": "build", "seconds": 3.0}, {"step": "health", "seconds": 2.0}],
        ),
        row(5, NOW - 1 * DAY, duration=40, steps=[{"step": "build", "seconds": 5.0}]),
        row(6, NOW - 1, env="staging"),  # another environment
    ]
    m = compute(rows, env="production", now=NOW, window_s=30 * DAY)
    assert m.deploys == 4 and m.successful == 4
    assert m.deploys_per_day == round(4 / 30, 4)
    assert m.deploys_per_week == round(4 / 30 * 7, 4)
    assert m.duration_median_s == 25.0
    assert m.duration_p95_s == 40.0
    assert m.step_median_s == {"build": 4.0, "health": 2.0}
    assert m.lead_time_median_s == 3600.0  # of 3600, 7200, 600
    assert m.failure_rate == 0.0


def test_change_failures_rollback_and_fix_forward_with_overlap():
    rows = [
        row(1, NOW - 10 * DAY, release="a"),
        # b goes live, then a manual rollback 30 minutes later moves away from b.
        row(2, NOW - 9 * DAY, release="b"),
        row(3, NOW - 9 * DAY + 1800, kind="rollback", release="a", previous="b"),
        # c goes live and is fixed forward by d 10 minutes later (counts),
        row(4, NOW - 8 * DAY, release="c"),
        row(5, NOW - 8 * DAY + 600, release="d", message="fix: typo in migration"),
        # e is followed by an ordinary feature deploy: not a failure.
        row(6, NOW - 7 * DAY, release="e"),
        row(7, NOW - 7 * DAY + 60, release="f", message="feat: more"),
        # g: fix-forward too late (2 h > 1 h window) but also rolled back at 45 min:
        # overlapping signals count once, the earliest restore wins.
        row(8, NOW - 6 * DAY, release="g"),
        row(9, NOW - 6 * DAY + 2700, kind="rollback", release="f", previous="g"),
        row(10, NOW - 6 * DAY + 7200, release="h", message="Revert g"),
    ]
    m = compute(rows, env="production", now=NOW, window_s=30 * DAY, fix_window_s=3600)
    assert m.successful == 8 and m.rollbacks == 2
    assert m.change_failures == 3  # b, c, g
    assert m.change_failure_rate == round(3 / 8, 4)
    assert m.time_to_restore_median_s == 1800.0  # of 1800, 600, 2700
    assert [(c["release"], c["rule"]) for c in m.change_failure_list] == [
        ("b", "rolled back"),
        ("c", "fixed forward"),
        ("g", "rolled back"),  # the earlier of its two signals
    ]
    assert m.change_failure_list[1]["evidence"] == "deploy d5 of d: fix: typo in migration"
    # By default a "fix:" subject marks nothing failed: only rollbacks count.
    default = compute(rows, env="production", now=NOW, window_s=30 * DAY)
    assert [c["release"] for c in default.change_failure_list] == ["b", "g"]
    assert default.change_failures == 2


def test_a_fix_commit_after_a_healthy_release_is_not_a_change_failure():
    """On a real app's history `metrics` once showed 100 % change failures: the next
    release's commit subject began with "fix:"."""
    rows = [
        row(1, NOW - 3 * DAY, release="a"),
        row(2, NOW - 3 * DAY + 600, release="b", message="fix: a typo in the README"),
        row(3, NOW - 2 * DAY, release="c", message="fix(ui): button colour"),
    ]
    m = compute(rows, env="production", now=NOW, window_s=30 * DAY)
    assert m.change_failures == 0 and m.change_failure_rate == 0.0


def test_durations_read_as_people_read_them():
    from slipway.cli.metrics import human_duration

    assert [human_duration(v) for v in (4.23, 192, 7500, 34428760.6)] == [
        "4.2s",
        "3m 12s",
        "2h 5m",
        "398d 11h",
    ]


def test_failed_deploy_restored_by_next_success():
    rows = [
        row(1, NOW - 2 * DAY, "failed"),
        row(2, NOW - 2 * DAY + 900, kind="rollback", release="r0"),
    ]
    m = compute(rows, env="production", now=NOW, window_s=7 * DAY)
    assert m.time_to_restore_median_s == 900.0


def test_percentile_nearest_rank():
    assert percentile([], 95) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([float(i) for i in range(1, 21)], 95) == 19.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0


def test_parse_since():
    assert parse_since("30d") == 30 * DAY
    assert parse_since("12h") == 12 * 3600
    assert parse_since("2w") == 14 * DAY
    assert parse_since("90m") == 5400
    for bad in ("30", "d", "-1d", "0d", "1y", "1.5d"):
        with pytest.raises(UsageError):
            parse_since(bad)


def test_exports():
    env = 'prod"x'
    rows = [
        row(1, NOW - DAY, committed=NOW - DAY - 60, env=env),
        row(2, NOW - 1, "rolled_back", env=env),
    ]
    m = compute(rows, env='prod"x', now=NOW, window_s=10 * DAY)
    text = prometheus([m])
    assert "# TYPE slipway_deploy_failure_rate gauge" in text
    assert 'slipway_deploy_failure_rate{env="prod\\"x"} 0.5' in text
    assert 'slipway_lead_time_median_seconds{env="prod\\"x"} 60' in text
    assert "slipway_time_to_restore" not in text  # no data: left out, not zero
    lines = to_csv([m]).splitlines()
    assert lines[0].startswith("env,window_days,deploys,successful,failed")
    assert lines[1].startswith('"prod""x",10.0,2,1,1,0,')


def test_an_interrupted_deploy_is_a_failure_and_a_failed_rollback_is_no_rollback():
    rows = [
        row(1, NOW - 3 * DAY),
        row(2, NOW - 2 * DAY, "interrupted"),
        row(3, NOW - 1 * DAY, kind="rollback", release="r1", previous="r2"),
        row(4, NOW - 0.5 * DAY, "failed", kind="rollback", release="r1", previous="r2"),
    ]
    m = compute(rows, env="production", now=NOW, window_s=30 * DAY)
    assert (m.deploys, m.successful, m.failed, m.rollbacks) == (2, 1, 1, 1)
    assert m.failure_rate == 0.5


def test_cli_metrics_explains_each_change_failure_in_human_units(tmp_path, capsys):
    """A real records database: b was rolled back, d followed c with a "fix:" subject."""
    from apprepo import make_repo, write_config
    from support import run_cli

    from slipway.state import hostscript

    root = tmp_path / "srv"
    config = write_config(make_repo(tmp_path / "repo"), root)
    records_db = str(root / "testing" / ".slipway" / "records.db")
    now = time.time()
    history = [
        row(1, now - 9 * DAY, release="a", committed=now - 9 * DAY - 40 * DAY, env="testing"),
        row(2, now - 8 * DAY, release="b", env="testing"),
        row(3, now - 8 * DAY + 1800, kind="rollback", release="a", previous="b", env="testing"),
        row(4, now - 7 * DAY, release="c", env="testing"),
        row(5, now - 7 * DAY + 600, release="d", message="fix: typo", env="testing"),
    ]
    for r in history:
        event = {"at": r["finished_at"], "actor": "ci", "event": "seeded", "deployment_id": r["id"]}
        full = {**r, "ref": "v", "commit_sha": "c" * 40, "actor": "ci"}
        hostscript.op_record({"records": records_db, "deployment": full, "audit": [event]})
    argv = ["--config", str(config), "metrics", "testing", "--explain"]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "change failures  25.0% (1)" in out  # b only: a "fix:" subject is no evidence
    assert "  - b (d2): rolled back, by rollback d3 to a; restored after 30m" in out
    assert "lead time        median 40d\n" in out  # not 3456000.0s
    code, out, err = run_cli([*argv, "--fix-window", "60m"], capsys)
    assert "change failures  50.0% (2)" in out
    assert "  - c (d4): fixed forward, by deploy d5 of d: fix: typo; restored after 10m" in out


def test_an_aborted_canary_is_a_failed_change_restored_after_its_canary_and_undo():
    """It served real requests (unlike a deploy stopped at its gate): a change failure,
    counted among the changes, restored after the canary step and the undo."""
    canary = row(
        2,
        NOW - 1 * DAY,
        "rolled_back",
        steps=[{"step": "canary", "seconds": 3.5}, {"step": "rollback", "seconds": 1.5}],
    )
    canary["failed_step"] = "canary"
    gate = row(3, NOW - DAY / 2, "rolled_back", steps=[{"step": "rollback", "seconds": 2.0}])
    gate["failed_step"] = "health"
    m = compute([row(1, NOW - 2 * DAY), canary, gate], env="production", now=NOW, window_s=30 * DAY)
    assert m.change_failures == 1 and m.change_failure_rate == 0.5  # 1 of 2 changes
    assert m.change_failure_list[0]["rule"] == "canary aborted"
    assert m.change_failure_list[0]["restored_after_s"] == 5.0
    assert m.failed == 2 and m.restores == 2  # the gate's own rollback too
    assert m.time_to_restore_median_s == 3.5  # median of 5.0 and 2.0
