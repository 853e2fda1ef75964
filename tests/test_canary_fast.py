"""The canary's own logic in milliseconds: the judge's thresholds, the figures per
side, the routes it renders, the configuration's rules and the database refusal
(``tests/test_canary.py`` runs canaries for real, under load)."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

from slipway.config import validate_config
from slipway.config.model import CanaryConfig, CanaryFallback
from slipway.deploy import canary
from slipway.deploy.canary import Side, StepAnalysis, judge, judge_sessions, table
from slipway.deploy.run import RunState
from slipway.errors import ConfigError, DeployRefused
from slipway.health.sessions import SessionFigures
from slipway.metrics.dora import percentile
from slipway.routers.base import Split, Target
from slipway.routers.traefik import split_config
from slipway.state import hostscript


def side(requests: int, errors: int = 0, ms: float = 10.0) -> Side:
    return Side(requests, errors, [ms] * requests)


CFG = CanaryConfig(min_requests=20)


@pytest.mark.parametrize(
    ("stable", "canary_side", "breach"),
    [
        # Before min_requests, judged by the least the figures can be at min_requests:
        (
            side(200),
            side(19, errors=19),
            "canary error rate 95.0% > 5.0% (certain after 19 of min_requests 20)",
        ),
        (
            side(200),
            side(1, errors=1),
            "canary error rate 5.0% > 2 x stable 0.0% + 1.0% (certain after 1 of min_requests 20)",
        ),
        (side(5), side(1, errors=1), None),  # 1 of 20 is not above 5%; no stable to compare
        (
            side(200, ms=5),
            Side(2, 0, [2500, 2500]),
            "canary p95 2500 ms > 2000 ms (certain after 2 of min_requests 20)",
        ),
        (side(200, ms=5), Side(1, 0, [2500]), None),  # 19 fast answers would hide one
        (
            side(200),
            side(19, ms=3000),
            "canary p95 3000 ms > 2000 ms (certain after 19 of" " min_requests 20)",
        ),
        (side(200), side(40), None),
        (side(200), side(40, errors=3), "canary error rate 7.5% > 5.0%"),
        (side(200, errors=4), side(40, errors=2), None),  # 5% <= 2 x 2% + 1 point
        (side(200), side(100, errors=2), "canary error rate 2.0% > 2 x stable 0.0% + 1.0%"),
        (side(200, ms=5), side(40, ms=2500), "canary p95 2500 ms > 2000 ms"),
        (side(200, ms=100), side(40, ms=350), "canary p95 350 ms > 2 x stable 100 ms + 100 ms"),
        (side(200, ms=100), side(40, ms=290), None),
        (side(5, ms=1), side(40, ms=300), None),  # too few stable requests to compare
    ],
)
def test_the_judge_names_the_first_threshold_broken(
    stable: Side, canary_side: Side, breach: str | None
) -> None:
    assert judge(CFG, stable, canary_side) == breach


def test_p95_is_the_nearest_rank() -> None:
    figures = Side()
    figures.add({"requests": 100, "errors": 1, "ms": list(range(1, 101)), "ws_ended": 2})
    assert figures.p95_ms == 95 and figures.error_rate == 0.01 and figures.ws_ended == 2
    assert Side().p95_ms == 0.0 and Side().error_rate == 0.0


def test_the_table_shows_both_sides_and_what_ended_each_step() -> None:
    steps = [StepAnalysis(5, side(100), side(6), 3.0), StepAnalysis(25, side(80), side(30), 1.2)]
    steps[1].breach, steps[1].ended_by = "canary error rate 50.0% > 5.0%", "breach"
    steps[1].sessions = {"stable": SessionFigures(4), "canary": SessionFigures(6, 2)}
    text = table(steps)
    assert "| 5% | 3.0 | canary | 6 | 0 | 0.0% | 10 | - | time |" in text
    assert (
        "| 25% | 1.2 | canary | 30 | 0 | 0.0% | 10 | 2 of 6 | canary error rate 50.0% > 5.0% |"
        in text
    )
    assert "| 25% | 1.2 | stable | 80 | 0 | 0.0% | 10 | 0 of 4 |  |" in text
    assert text.count("| stable |") == 2


@pytest.mark.parametrize(
    ("stable", "canary_side", "breach"),
    [
        (SessionFigures(4), SessionFigures(4), None),
        (
            SessionFigures(4),
            SessionFigures(6, 2, "closed 1011"),
            "canary WebSocket sessions ended abnormally 33.3% > 10.0% (last: closed 1011)",
        ),
        (SessionFigures(4), SessionFigures(5, 1, "closed 1011"), None),  # one drop: no verdict
        (SessionFigures(5, 5), SessionFigures(5, 5, "closed 1008"), None),  # both sides alike
        (SessionFigures(8, 4), SessionFigures(7, 4, "closed 1008"), None),  # a drop apart
        (
            SessionFigures(20, 2),
            SessionFigures(10, 5, "closed 1011"),
            "canary WebSocket sessions ended abnormally 50.0% > 2 x stable 10.0% + 1.0%"
            " (last: closed 1011)",
        ),
        (SessionFigures(20, 1), SessionFigures(20, 2), None),  # 10%: not above 2 x 5% + 1 pt
        (
            SessionFigures(100),
            SessionFigures(50, 2, "closed 1006"),
            "canary WebSocket sessions ended abnormally 4.0% > 2 x stable 0.0% + 1.0%"
            " (last: closed 1006)",
        ),
        (SessionFigures(0), SessionFigures(50, 2), None),  # nothing to compare with
    ],
)
def test_the_websocket_rule_judges_the_share_of_held_sessions_dropped(
    stable: SessionFigures, canary_side: SessionFigures, breach: str | None
) -> None:
    assert judge_sessions(CFG, stable, canary_side) == breach
    step = StepAnalysis(5, side(100), side(40))
    step.sessions = {"stable": stable, "canary": canary_side}
    assert step.judged(CFG) == breach
    assert step.to_json()["websocket"]["canary"]["dropped"] == canary_side.dropped


def test_the_split_routes_weigh_each_port_and_keep_a_client_on_its_side() -> None:
    split = Split(
        Target("blue", {"backend": 9001, "frontend": 9101}),
        Target("green", {"backend": 9002, "frontend": 9102}),
        25,
        "side",
    )
    config = split_config(split)["http"]
    backend = config["services"]["backend"]["weighted"]
    assert backend["services"] == [
        {"name": "backend-blue", "weight": 75},
        {"name": "backend-green", "weight": 25},
    ]
    assert backend["sticky"]["cookie"]["name"] == "side_backend"  # one cookie per port
    green = config["services"]["frontend-green"]["loadBalancer"]["servers"]
    assert green == [{"url": "http://127.0.0.1:9102"}]
    assert config["routers"]["backend"]["service"] == "backend"
    assert split.marker() == "canary=green:25"


def test_the_access_log_is_counted_per_side_without_slipways_probes(tmp_path: Any) -> None:
    import json

    log = tmp_path / "access.log"
    lines = [
        {"ServiceName": "backend-blue@file", "DownstreamStatus": 200, "Duration": 2_000_000},
        {"ServiceName": "backend-green@file", "DownstreamStatus": 500, "Duration": 4_000_000},
        {"ServiceName": "backend-green@file", "DownstreamStatus": 200, "Duration": 1_000_000},
        {"ServiceName": "backend-green@file", "DownstreamStatus": 0, "Duration": 9e9},
        {
            "ServiceName": "backend-green@file",
            "DownstreamStatus": 200,
            "request_X-Slipway-Probe": "1",
        },
        {"ServiceName": "", "DownstreamStatus": 408, "request_time": 60.0},  # nginx's own
        {"DownstreamStatus": 404, "Duration": 1_000},  # Traefik: no router matched
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"partial')
    found = hostscript.op_sides({"log": str(log), "offset": 0})
    green = found["sides"]["backend-green@file"]
    assert (green["requests"], green["errors"], green["ms"], green["ws_ended"]) == (
        2,
        1,
        [4.0, 1.0],
        1,
    )
    assert found["sides"]["backend-blue@file"]["requests"] == 1
    assert set(found["sides"]) == {"backend-blue@file", "backend-green@file"}  # no ""
    assert found["offset"] == log.stat().st_size - len('{"partial')  # not a half line
    assert hostscript.op_sides({"log": str(log), "offset": None})["sides"] == {}
    assert hostscript.op_sides({"log": str(tmp_path / "none"), "offset": 5})["offset"] == 0


def _ctx(fallback: CanaryFallback) -> Any:
    events: list[str] = []
    return SimpleNamespace(
        env=SimpleNamespace(canary=CanaryConfig(fallback=fallback)),
        env_name="production",
        emit=lambda step, status, detail="": events.append(detail),
        build_color="green",
        events=events,
    )


@pytest.mark.parametrize(
    ("state", "why"),
    [
        (RunState(holds=True), "its migrations change the schema"),
        (RunState(rehearsed=False), "rehearse = false"),
    ],
)
def test_a_canary_the_live_release_cannot_share_a_database_with_is_refused_or_falls_back(
    state: RunState, why: str
) -> None:
    with pytest.raises(DeployRefused, match=why) as refused:
        canary.deploy_steps(_ctx(CanaryFallback.REFUSE), "r2", "r1", "c" * 40, state)
    assert 'fallback = "blue-green"' in str(refused.value.hint)
    ctx = _ctx(CanaryFallback.BLUE_GREEN)
    steps = [name for name, _ in canary.deploy_steps(ctx, "r2", "r1", "c" * 40, state)]
    assert steps == ["start", "health", "switch", "watch", "promote"]  # blue-green's
    assert why in ctx.events[0]
    fits = [n for n, _ in canary.deploy_steps(ctx, "r2", "r1", "c" * 40, RunState())]
    assert fits == ["start", "health", "canary", "watch", "promote"]


def _raw(**canary_table: Any) -> dict[str, Any]:
    import copy
    import tomllib

    from support import ROOT

    raw = tomllib.loads((ROOT / "examples" / "codeframe-mini" / "slipway.toml").read_text())
    raw = copy.deepcopy(raw)
    raw["environments"]["production"]["strategy"] = "canary"
    raw["environments"]["production"]["canary"] = canary_table
    return raw


@pytest.mark.parametrize(
    ("table_", "error"),
    [
        ({"steps": [5, 50]}, "steps must end at 100"),
        ({"steps": [50, 5, 100]}, "steps must rise"),
        ({"steps": [0, 100]}, "greater than or equal to 1"),
        ({"max_error_rate": 2}, "less than or equal to 1"),
        ({"cookie": "a b"}, "must match the pattern"),
    ],
)
def test_broken_canary_settings_are_refused_naming_the_place(
    table_: dict[str, Any], error: str
) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(_raw(**table_))
    assert error in str(info.value) and "environments.production.canary" in str(info.value)


def test_a_canary_runs_on_either_router() -> None:
    raw = _raw()
    raw["environments"]["production"].setdefault("blue_green", {})["router"] = "nginx"
    assert validate_config(raw).environments["production"].blue_green.router.value == "nginx"
    config = validate_config(_raw())
    assert config.environments["production"].strategy.coloured
    assert config.environments["production"].used_ports()["blue_green.blue.backend"]


def test_each_process_is_judged_on_its_own() -> None:
    """Frontend assets answered well must not dilute a failing backend."""
    step = StepAnalysis(5)
    step.add("frontend", True, {"requests": 1000, "errors": 0, "ms": [5.0] * 1000})
    step.add("backend", True, {"requests": 40, "errors": 16, "ms": [5.0] * 40})
    step.add("backend", False, {"requests": 400, "errors": 0, "ms": [5.0] * 400})
    assert step.canary.error_rate < CFG.max_error_rate  # in all, it would pass
    assert step.judged(CFG) == "backend: canary error rate 40.0% > 5.0%"
    assert set(step.to_json()["processes"]) == {"backend", "frontend"}


@pytest.mark.parametrize(
    ("configured", "asked"), [("restart", "canary"), ("blue-green", "restart")]
)
def test_strategy_may_change_only_between_the_coloured_ones(
    tmp_path: Any, configured: str, asked: str
) -> None:
    from test_config import _toml

    from slipway.cli.hosts import with_strategy
    from slipway.config import load_config
    from slipway.errors import UsageError

    raw = _raw()
    raw["environments"]["production"]["strategy"] = configured
    path = tmp_path / "slipway.toml"
    path.write_text(_toml(raw))
    loaded = load_config(path)
    with pytest.raises(UsageError, match=f"--strategy {asked}: environments.production uses"):
        with_strategy(loaded, "production", asked)
    if configured == "blue-green":
        moved = with_strategy(loaded, "production", "canary")
        assert moved.config.environments["production"].strategy.value == "canary"


def test_a_running_split_refuses_deploys_and_rollbacks_under_the_lock(tmp_path: Any) -> None:
    import json
    from pathlib import Path

    from fakes import FakeProcessManager, tiny_repo

    from slipway.config import load_config
    from slipway.deploy import split
    from slipway.deploy.engine import Deployer
    from slipway.deploy.rollback import manual_rollback
    from slipway.errors import UsageError
    from slipway.state.lock import is_held
    from slipway.transports.local import LocalTransport

    repo = tiny_repo(tmp_path, 'kind = "node"\nstart = ["node", "s.js"]', {"s.js": "//\n"})
    d = Deployer(
        load_config(repo / "slipway.toml"),
        "testing",
        LocalTransport(),
        process_manager=FakeProcessManager(),
    )
    with pytest.raises(UsageError, match="needs a blue-green or canary environment"):
        split.start(d, "r1", "r2", 50, "ab", None)
    Path(d.layout.state_dir).mkdir(parents=True)
    sides = {"a": {"release": "r1", "color": "blue"}, "b": {"release": "r2", "color": "green"}}
    Path(split.path_of(d)).write_text(json.dumps({"state": "active", **sides}))
    for attempt in (lambda: d.deploy("HEAD"), lambda: manual_rollback(d)):
        with pytest.raises(UsageError, match=r"runs an A/B split \(r1 / r2\)") as refused:
            attempt()
        assert "slipway split testing end --keep a|b" in str(refused.value.hint)
    assert not list(Path(d.layout.base).glob("releases/*"))  # refused before any upload
    assert not is_held(d.transport, d.layout)  # and the lock let go
    assert split.settle_leftovers(d) is None  # an active split is left as it is
    assert split.read(d) is not None


def test_a_canary_declared_breaking_is_refused_before_anything_is_uploaded() -> None:
    def ctx(fallback: CanaryFallback, live: str | None) -> Any:
        return SimpleNamespace(
            env=SimpleNamespace(canary=CanaryConfig(fallback=fallback)),
            env_name="production",
            current_release=lambda: live,
        )

    refuse = CanaryFallback.REFUSE
    with pytest.raises(DeployRefused, match="change the schema") as refused:
        canary.refuse_up_front(ctx(refuse, "r1"), breaking=True, rehearse=True)
    assert refused.value.exit_code == 2  # nothing changed: bad usage
    with pytest.raises(DeployRefused, match="not rehearsed"):
        canary.refuse_up_front(ctx(refuse, "r1"), breaking=False, rehearse=False)
    canary.refuse_up_front(ctx(refuse, None), breaking=True, rehearse=True)  # first deploy
    canary.refuse_up_front(ctx(CanaryFallback.BLUE_GREEN, "r1"), breaking=True, rehearse=True)
    canary.refuse_up_front(ctx(refuse, "r1"), breaking=False, rehearse=True)


def test_plan_shows_the_canary_step_for_strategy_canary(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from support import run_cli
    from test_config import _toml

    raw = _raw()
    raw["environments"]["production"]["strategy"] = "blue-green"
    path = tmp_path / "slipway.toml"
    path.write_text(_toml(raw))
    code, out, err = run_cli(
        ["--config", str(path), "plan", "production", "--strategy", "canary"], capsys
    )
    assert code == 0, err
    assert "canary   traefik: 5, 25, 50, 100% of requests" in out
    assert "switch" not in [line.split()[1] for line in out.splitlines() if line[0].isdigit()]
    code, _, err = run_cli(
        ["--config", str(path), "plan", "production", "--strategy", "restart"], capsys
    )
    assert code == 2 and "--strategy restart: environments.production uses blue-green" in err


def _bg_deployer(tmp_path: Any) -> Any:
    """A blue-green environment on this machine's fake process manager, blue live with
    release r1 (its schema recorded), r2 and r3 kept (only r2's schema recorded)."""
    from pathlib import Path

    from fakes import FakeProcessManager, tiny_repo

    from slipway.config import load_config
    from slipway.deploy.engine import Deployer
    from slipway.transports.local import LocalTransport

    repo = tiny_repo(tmp_path, 'kind = "node"\nstart = ["node", "s.js"]', {"s.js": "//\n"})
    config = repo / "slipway.toml"
    config.write_text(config.read_text().replace('strategy = "restart"', 'strategy = "blue-green"'))
    d = Deployer(
        load_config(config), "testing", LocalTransport(), process_manager=FakeProcessManager()
    )
    for release in ("r1", "r2", "r3"):
        Path(d.layout.release(release)).mkdir(parents=True)
    Path(d.layout.current).symlink_to("releases/r1")
    d.save_meta("r1", schema={"tables": {}})
    d.save_meta("r2", schema={"tables": {}})
    Path(d.layout.state_dir).mkdir(parents=True, exist_ok=True)
    d.write_colors({"live": {"color": "blue", "release": "r1", "since": 0}, "standby": None})
    return d


@pytest.mark.parametrize(
    ("a", "b", "percent", "error"),
    [
        ("r1", "r2", 0, "give B 1 to 99 percent"),
        ("r1", "r1", 50, "a split needs two releases"),
        ("r2", "r3", 50, "one side must be the live release (r1)"),
        ("r1", "r3", 50, "r3 cannot be checked against testing's database"),
    ],
)
def test_a_split_that_cannot_run_is_refused_before_anything_changes(
    tmp_path: Any, a: str, b: str, percent: int, error: str
) -> None:
    from slipway.deploy import split
    from slipway.errors import UsageError

    d = _bg_deployer(tmp_path)
    with pytest.raises(UsageError, match=re.escape(error)):
        split.start(d, a, b, percent, None, None)
    assert split.read(d) is None and d.pm.started == {}  # type: ignore[attr-defined]


def test_split_end_and_leftovers_say_what_is_wrong(tmp_path: Any) -> None:
    import json
    from pathlib import Path

    from slipway.deploy import split
    from slipway.errors import UsageError

    d = _bg_deployer(tmp_path)
    with pytest.raises(UsageError, match="runs no A/B split"):
        split.end(d, "a")
    sides = {"a": {"release": "r1", "color": "blue"}, "b": {"release": "r2", "color": "green"}}
    Path(split.path_of(d)).write_text(json.dumps({"state": "active", **sides}))
    with pytest.raises(UsageError, match="--keep c: say a or b"):
        split.end(d, "c")
    with pytest.raises(UsageError, match="already runs a split"):
        split.start(d, "r1", "r2", 50, None, None)
    Path(split.path_of(d)).write_text("not json")
    assert split.read(d) is None


def test_a_split_on_several_hosts_is_refused(tmp_path: Any) -> None:
    from slipway.deploy import split
    from slipway.errors import UsageError

    d = _bg_deployer(tmp_path)
    raw = d.env.model_dump(mode="json")
    raw["hosts"] = ["local", "deploy@web2.example.org"]
    d.env = type(d.env).model_validate(raw)
    with pytest.raises(UsageError, match="A/B splits run on one host only"):
        split.start(d, "r1", "r2", 50, None, None)
    assert split.read(d) is None


def test_conversions_are_marked_answers_or_2xx_at_the_path(tmp_path: Any) -> None:
    import json

    log = tmp_path / "access.log"
    mark = "downstream_X-Slipway-Conversion"
    lines = [
        {"ServiceName": "a", "DownstreamStatus": 201, "RequestPath": "/api/x", mark: "1"},
        {"ServiceName": "a", "DownstreamStatus": 201, "RequestPath": "/api/x", mark: ""},
        {"ServiceName": "a", "DownstreamStatus": 200, "RequestPath": "/buy/now?x=1"},
        {"ServiceName": "a", "DownstreamStatus": 500, "RequestPath": "/buy"},
        {"ServiceName": "a", "DownstreamStatus": 200, "RequestPath": "/buyer"},
        {"ServiceName": "a", "DownstreamStatus": 500, "RequestPath": "/api/x", mark: "1"},
        {"ServiceName": "a", "DownstreamStatus": 101, "RequestPath": "/ws", mark: "1"},
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    marked = hostscript.op_sides({"log": str(log), "offset": 0})["sides"]["a"]
    assert marked["conversions"] == 1  # not "" (nginx's absent header), a 500 or a WebSocket
    both = hostscript.op_sides({"log": str(log), "offset": 0, "conversion_path": "/buy"})
    assert both["sides"]["a"]["conversions"] == 2  # /buy/now; not /buyer, not the 500


def test_a_fleet_canary_is_all_hosts_or_none() -> None:
    """The backend host's rehearsal found breaking migrations; the frontend-only host,
    with nothing to rehearse, had already been given canary steps at the end of its
    own prepare: told, it is asked again, and goes blue-green (or is refused)."""
    from slipway.deploy.engine import Deployer
    from slipway.deploy.fleet import Member, share_holds

    def member(name: str, holds: bool) -> Member:
        run = SimpleNamespace(
            state=RunState(holds=holds),
            activation=[("canary", None)],  # asked at the end of its prepare
            release="r2",
            previous="r1",
            source=SimpleNamespace(commit="c" * 40),
        )
        return Member(name, deployer=None, run=run)  # type: ignore[arg-type]

    members = [member("web-1", False), member("db-1", True), member("web-2", False)]
    share_holds(members)
    runs = [m.run for m in members]
    assert [r.state.holds_on for r in runs] == ["db-1", None, "db-1"]  # type: ignore[union-attr]
    assert [r.activation is None for r in runs] == [True, False, True]  # type: ignore[union-attr]
    ctx = _ctx(CanaryFallback.BLUE_GREEN)
    ctx.strategy = canary.Canary()
    steps = Deployer.strategy_steps(ctx, runs[0])  # type: ignore[arg-type]
    assert [name for name, _ in steps] == ["start", "health", "switch", "watch", "promote"]
    assert "on db-1, its migrations change the schema" in ctx.events[0]
    refusing = _ctx(CanaryFallback.REFUSE)
    refusing.strategy = canary.Canary()
    with pytest.raises(DeployRefused, match="all hosts or none"):
        Deployer.strategy_steps(refusing, runs[2])  # type: ignore[arg-type]
    calm = [member("a", False), member("b", False)]
    share_holds(calm)
    assert [m.run.state.holds_on for m in calm] == [None, None]  # type: ignore[union-attr]
    assert all(m.run.activation for m in calm)  # type: ignore[union-attr]


@pytest.mark.parametrize("count", [1, 5, 20, 21, 100])
def test_the_least_p95_is_the_p95_with_every_missing_request_instant(count: int) -> None:
    import random

    rng = random.Random(count)
    for seen in range(count + 3):
        figures = Side(seen, 0, [rng.uniform(1, 500) for _ in range(seen)])
        padded = [0.0] * max(0, count - seen) + figures.ms
        assert figures.least_p95_ms(count) == (percentile(padded, 95) or 0.0)
