"""The fleet flow's own branches in seconds: several "hosts" that are roots on this
machine, each with its own fake process manager (``tests/fakes.py``), the real local
transport, host helper, records and journals. ``tests/test_fleet.py`` deploys the
example app to network-namespace hosts over SSH for real."""

from __future__ import annotations

from pathlib import Path

import pytest
from apprepo import git
from fakes import FakeProcessManager, tiny_repo

from slipway.cli.hosts import with_overrides
from slipway.config import load_config
from slipway.deploy import fleet as fleet_mod
from slipway.deploy import journal
from slipway.deploy.context import HostContext
from slipway.deploy.engine import Deployer
from slipway.deploy.fleet import FleetDeploy, reconcile, waves
from slipway.errors import DeployFailed, LockHeld, SlipwayError, UsageError
from slipway.health.gate import GateReport
from slipway.state import records
from slipway.state.lock import DeployLock, is_held
from slipway.transports.local import LocalTransport

HOSTS = ("a", "b", "c")


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs."""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tiny_repo(
        tmp_path,
        'kind = "node"\nstart = ["node", "server.js", "{port}"]',
        {"server.js": "// the fake process manager runs nothing\n"},
    )
    (path / "server.js").write_text("// v2\n")
    git(path, "commit", "-q", "-am", "v2")
    git(path, "tag", "v2")
    return path


@pytest.fixture
def unhealthy(repo: Path, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Hosts (by root name) on which v2 fails its health gate; every other gate passes."""
    failing: set[str] = set()
    v2 = git(repo, "rev-parse", "v2")[:8]

    def report(self: HostContext, *args: object, **kwargs: object) -> GateReport:
        running = [a.cwd for a in self.pm.started.values() if a.name in self.pm.online]  # type: ignore[attr-defined]
        bad = Path(str(self.env.root)).name in failing and any(v2 in cwd for cwd in running)
        return GateReport(not bad, 2, 0 if bad else 2, 0.1, reason="HTTP 500" if bad else "")

    monkeypatch.setattr(HostContext, "gate_report", report)
    return failing


def members(repo: Path, tmp_path: Path, pms: dict[str, FakeProcessManager]) -> list:
    """One Deployer per host, each on its own root (a host of its own)."""
    loaded = load_config(repo / "slipway.toml")
    found = []
    for host in HOSTS:
        own = with_overrides(loaded, "testing", (), str(tmp_path / "hosts" / host), None)
        pm = pms.setdefault(host, FakeProcessManager())
        found.append((host, Deployer(own, "testing", LocalTransport(), process_manager=pm)))
    return found


def fleet(repo: Path, tmp_path: Path, pms: dict, batch_size: int | None = None) -> FleetDeploy:
    return FleetDeploy(members(repo, tmp_path, pms), parallel=3, batch_size=batch_size)


def current(tmp_path: Path, host: str) -> str:
    return Path(tmp_path / "hosts" / host / "testing" / "current").resolve().name


def rows(d: Deployer) -> list[dict]:
    return records.deployments(d.transport, d.layout, 10)


def fail_on(monkeypatch: pytest.MonkeyPatch, method: str, host: str, error: Exception) -> None:
    """``Deployer.<method>`` raises ``error`` on ``host`` only (by its root's name)."""
    real = getattr(Deployer, method)

    def patched(self: Deployer, *args: object) -> object:
        if Path(str(self.env.root)).name == host:
            raise error
        return real(self, *args)

    monkeypatch.setattr(Deployer, method, patched)


def test_every_host_gets_the_release_with_one_deployment_id(
    repo: Path, tmp_path: Path, unhealthy: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    monkeypatch.setattr(HostContext, "notify", lambda self, note: sent.append(note.title) or [])
    pms: dict[str, FakeProcessManager] = {}
    f = fleet(repo, tmp_path, pms, batch_size=2)
    outcome = f.deploy("v1")
    assert outcome.status == "succeeded" and outcome.waves == 2
    assert [name for name, _ in outcome.hosts] == list(HOSTS)
    assert {current(tmp_path, h) for h in HOSTS} == {outcome.release}
    for _, d in members(repo, tmp_path, pms):
        (row,) = rows(d)
        assert row["id"] == outcome.deployment_id and row["status"] == "succeeded"
        assert journal.read(d.transport, d.layout) is None
        assert not is_held(d.transport, d.layout)
    assert len(sent) == 1  # one notification for the fleet, none per host


def test_a_host_failing_health_in_the_last_wave_brings_every_host_back_in_reverse(
    repo: Path, tmp_path: Path, unhealthy: set[str]
) -> None:
    pms: dict[str, FakeProcessManager] = {}
    first = fleet(repo, tmp_path, pms).deploy("v1")
    for pm in pms.values():
        pm.calls.clear()
    order: list[str] = []
    for host, pm in pms.items():
        real = pm.stop
        pm.stop = lambda names, real=real, host=host: (order.append(host), real(names))[-1]
    unhealthy.add("c")
    with pytest.raises(DeployFailed) as info:
        fleet(repo, tmp_path, pms, batch_size=1).deploy("v2")
    assert info.value.step == "health" and info.value.rolled_back
    assert "c failed at step 'health'" in str(info.value)
    assert {current(tmp_path, h) for h in HOSTS} == {first.release}
    # The restart strategy stops each host's old processes as it activates (a, b, c in
    # their waves); the recovery stops the new ones: the failed host, then in reverse.
    assert order[:3] == ["a", "b", "c"]
    assert [h for i, h in enumerate(order) if i >= 3 and h != order[i - 1]] == ["b", "a"]
    assert order[3] == "c"
    for host, d in members(repo, tmp_path, pms):
        latest = rows(d)[0]
        assert latest["status"] == "rolled_back", host
        assert journal.read(d.transport, d.layout) is None


def test_a_failed_prepare_changes_nothing_live_anywhere(
    repo: Path, tmp_path: Path, unhealthy: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pms: dict[str, FakeProcessManager] = {}
    first = fleet(repo, tmp_path, pms).deploy("v1")
    for pm in pms.values():
        pm.calls.clear()
    fail_on(monkeypatch, "prepare", "b", SlipwayError("npm run build exited 1"))
    with pytest.raises(DeployFailed, match="b failed at step 'prepare': npm run build exited 1"):
        fleet(repo, tmp_path, pms).deploy("v2")
    assert all(not pm.calls for pm in pms.values())  # no process touched on any host
    assert {current(tmp_path, h) for h in HOSTS} == {first.release}


def test_a_lock_held_on_one_host_changes_nothing_anywhere(
    repo: Path, tmp_path: Path, unhealthy: set[str]
) -> None:
    pms: dict[str, FakeProcessManager] = {}
    first = fleet(repo, tmp_path, pms).deploy("v1")
    _, held_on_b = members(repo, tmp_path, pms)[1]
    other = DeployLock(held_on_b.transport, held_on_b.layout)
    other.acquire(actor="someone", ref="main", reason="deploy")
    try:
        with pytest.raises(LockHeld, match=r"^b: ") as info:
            fleet(repo, tmp_path, pms).deploy("v2")
        assert "nothing changed on any host" in str(info.value.hint)
    finally:
        other.release()
    for host, d in members(repo, tmp_path, pms):
        assert len(rows(d)) == 1 and current(tmp_path, host) == first.release
        assert not is_held(d.transport, d.layout)


def test_a_fleet_killed_while_committing_rolls_every_host_forward(
    repo: Path, tmp_path: Path, unhealthy: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after host a's journal said commit and before b's and c's did: the next
    fleet command carries the decision to b and c, and all three roll forward."""
    pms: dict[str, FakeProcessManager] = {}
    fleet(repo, tmp_path, pms).deploy("v1")
    real = Deployer.mark_fleet_commit

    def only_a(self: Deployer) -> None:
        if Path(str(self.env.root)).name == "a":
            real(self)

    def killed(self: FleetDeploy, started: float) -> None:
        raise _Killed()

    monkeypatch.setattr(Deployer, "mark_fleet_commit", only_a)
    monkeypatch.setattr(FleetDeploy, "_commit", killed)
    with pytest.raises(_Killed):
        FleetDeploy(members(repo, tmp_path, pms), parallel=1, batch_size=None).deploy("v2")
    monkeypatch.setattr(Deployer, "mark_fleet_commit", real)
    monkeypatch.undo()
    monkeypatch.setattr(
        HostContext, "gate_report", lambda self, *a, **k: GateReport(True, 2, 2, 0.1)
    )
    killed_release = rows(members(repo, tmp_path, pms)[0][1])[0]["release"]
    for _, d in members(repo, tmp_path, pms):
        DeployLock(d.transport, d.layout).release()  # the killed process's locks died with it
    fleet(repo, tmp_path, pms).recover()  # `slipway recover`, as every fleet command first
    assert {current(tmp_path, h) for h in HOSTS} == {killed_release}
    for host, d in members(repo, tmp_path, pms):
        (event,) = [
            e
            for e in records.audit_log(d.transport, d.layout)
            if e["event"] == "deploy.interrupted"
        ]
        assert "its fleet had committed: its promote was finished" in event["detail"], host
        assert rows(d)[0]["status"] == "interrupted" and rows(d)[0]["rolled_back_to"] is None


def test_a_fleet_killed_before_committing_rolls_every_host_back(
    repo: Path, tmp_path: Path, unhealthy: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pms: dict[str, FakeProcessManager] = {}
    first = fleet(repo, tmp_path, pms).deploy("v1")

    def killed(self: FleetDeploy, started: float) -> None:
        raise _Killed()

    monkeypatch.setattr(FleetDeploy, "_commit", killed)
    monkeypatch.setattr(Deployer, "mark_fleet_commit", lambda self: None)
    with pytest.raises(_Killed):
        fleet(repo, tmp_path, pms).deploy("v2")
    monkeypatch.undo()
    unhealthy_report = GateReport(True, 2, 2, 0.1)
    monkeypatch.setattr(HostContext, "gate_report", lambda self, *a, **k: unhealthy_report)
    for _, d in members(repo, tmp_path, pms):
        DeployLock(d.transport, d.layout).release()
    fleet(repo, tmp_path, pms).recover()  # `slipway recover`, as every fleet command first
    assert {current(tmp_path, h) for h in HOSTS} == {first.release}
    for _, d in members(repo, tmp_path, pms):
        assert rows(d)[0]["status"] == "interrupted"
        assert journal.read(d.transport, d.layout) is None


def test_reconcile_carries_a_commit_only_within_its_fleet() -> None:
    journals = {
        "a": {"fleet": {"id": "f1", "commit": True}},
        "b": {"fleet": {"id": "f1"}},
        "c": {"fleet": {"id": "f0"}},
        "d": None,
        "e": {"row": {}},
    }
    assert reconcile(journals, {}) == {"b": True}
    assert reconcile({"a": {"fleet": {"id": "f1"}}}, {}) == {}


def test_reconcile_believes_the_records_over_the_journals() -> None:
    """A host that recorded the fleet succeeded proves the commit (its journal is gone);
    one that recorded it rolled back proves the fleet was undone, whatever a journal
    left on an unreachable host says."""
    committed = {"b": {"fleet": {"id": "f1"}}, "c": {"fleet": {"id": "f1"}}}
    assert reconcile(committed, {"f1": {"succeeded"}}) == {"b": True, "c": True}
    undone = {"c": {"fleet": {"id": "f1", "commit": True}}}
    assert reconcile(undone, {"f1": {"rolled_back", "interrupted"}}) == {"c": False}
    assert reconcile(undone, {"f1": {"interrupted"}}) == {}


def test_waves_keep_the_host_order() -> None:
    ms = [fleet_mod.Member(str(i), None) for i in range(5)]  # type: ignore[arg-type]
    assert [[m.name for m in w] for w in waves(ms, 2)] == [["0", "1"], ["2", "3"], ["4"]]
    assert len(waves(ms, None)) == 1


def test_a_fleet_needs_two_hosts(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="two hosts"):
        FleetDeploy(members(repo, tmp_path, {})[:1], parallel=1, batch_size=None)


def test_a_promote_that_fails_after_the_commit_is_rolled_forward_by_its_recovery(
    repo: Path, tmp_path: Path, unhealthy: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pms: dict[str, FakeProcessManager] = {}
    fleet(repo, tmp_path, pms).deploy("v1")
    fail_on(monkeypatch, "promote_run", "b", SlipwayError("pm2 save: disk quota exceeded"))
    outcome = fleet(repo, tmp_path, pms).deploy("v2")
    statuses = {name: o.status for name, o in outcome.hosts}
    assert statuses == {"a": "succeeded", "b": "rolled_forward", "c": "succeeded"}
    assert "its fleet had committed" in dict(outcome.hosts)["b"].health
    assert {current(tmp_path, h) for h in HOSTS} == {outcome.release}  # b too
    for host, d in members(repo, tmp_path, pms):
        assert rows(d)[0]["status"] == ("failed" if host == "b" else "succeeded")
        assert "disk quota exceeded" in str(rows(d)[0]["error"] or "") or host != "b"
        assert journal.read(d.transport, d.layout) is None


def test_a_commit_mark_that_cannot_be_written_undoes_every_host(
    repo: Path, tmp_path: Path, unhealthy: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pms: dict[str, FakeProcessManager] = {}
    first = fleet(repo, tmp_path, pms).deploy("v1")
    real = Deployer.mark_fleet_commit

    def unreachable_c(self: Deployer, commit: bool = True) -> None:
        if Path(str(self.env.root)).name == "c" and commit:
            raise SlipwayError("connection lost")
        real(self, commit)

    monkeypatch.setattr(Deployer, "mark_fleet_commit", unreachable_c)
    with pytest.raises(DeployFailed, match="c failed at step 'commit': connection lost"):
        fleet(repo, tmp_path, pms).deploy("v2")
    assert {current(tmp_path, h) for h in HOSTS} == {first.release}
    for _, d in members(repo, tmp_path, pms):
        assert rows(d)[0]["status"] == "rolled_back"
        assert journal.read(d.transport, d.layout) is None


def test_one_host_alone_does_not_undo_a_fleet_journal_without_the_decision(
    repo: Path, tmp_path: Path, unhealthy: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`slipway rollback`, `deploy --host` and the like recover one host: with a fleet
    journal that has no commit decision they stop and say to recover the fleet."""
    pms: dict[str, FakeProcessManager] = {}
    fleet(repo, tmp_path, pms).deploy("v1")

    def killed(self: FleetDeploy, started: float) -> None:
        raise _Killed()

    monkeypatch.setattr(FleetDeploy, "_decide_commit", killed)
    with pytest.raises(_Killed):
        fleet(repo, tmp_path, pms).deploy("v2")
    monkeypatch.undo()
    _, alone = members(repo, tmp_path, pms)[0]
    DeployLock(alone.transport, alone.layout).release()
    with pytest.raises(SlipwayError, match="part of a fleet deploy to a, b, c") as info:
        alone.take_lock(ref="v1", reason="rollback", wait=0)
    assert "slipway recover testing" in str(info.value.hint)
    assert journal.read(alone.transport, alone.layout) is not None
    assert not is_held(alone.transport, alone.layout)


def test_every_host_gets_one_release_id_even_across_a_second(
    repo: Path, tmp_path: Path, unhealthy: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from slipway.deploy import engine

    ticks = iter(range(100))
    monkeypatch.setattr(engine, "release_id", lambda source: f"2026113012000{next(ticks)}-x")
    pms: dict[str, FakeProcessManager] = {}
    outcome = FleetDeploy(members(repo, tmp_path, pms), parallel=1, batch_size=1).deploy("v1")
    assert {o.release for _, o in outcome.hosts} == {outcome.release}
    assert {current(tmp_path, h) for h in HOSTS} == {outcome.release}


def test_ctrl_c_on_one_host_brings_every_host_back(
    repo: Path, tmp_path: Path, unhealthy: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pms: dict[str, FakeProcessManager] = {}
    first = fleet(repo, tmp_path, pms).deploy("v1")
    real = Deployer.activate

    def interrupted_on_c(self: Deployer, run: object) -> None:
        real(self, run)  # type: ignore[arg-type]
        if Path(str(self.env.root)).name == "c":
            raise KeyboardInterrupt

    monkeypatch.setattr(Deployer, "activate", interrupted_on_c)
    with pytest.raises(DeployFailed, match=r"c failed at step '\w+': interrupted \(Ctrl-C"):
        fleet(repo, tmp_path, pms).deploy("v2")
    assert {current(tmp_path, h) for h in HOSTS} == {first.release}


def test_an_unreadable_journal_on_one_host_stops_the_fleet_before_anything(
    repo: Path, tmp_path: Path, unhealthy: set[str]
) -> None:
    pms: dict[str, FakeProcessManager] = {}
    fleet(repo, tmp_path, pms).deploy("v1")
    _, b = members(repo, tmp_path, pms)[1]
    Path(journal.path_of(b.layout)).write_text("{torn")
    with pytest.raises(SlipwayError, match=r"^b: the deploy journal .* is not readable"):
        fleet(repo, tmp_path, pms).deploy("v2")
    for _, d in members(repo, tmp_path, pms):
        assert len(rows(d)) == 1 and not is_held(d.transport, d.layout)


def test_ctrl_c_at_the_deployer_brings_every_host_back(
    repo: Path, tmp_path: Path, unhealthy: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C reaches only the main thread, waiting for a wave: no host is blamed, every
    host stops at its next step and goes back."""
    import concurrent.futures

    pms: dict[str, FakeProcessManager] = {}
    first = fleet(repo, tmp_path, pms).deploy("v1")
    real_activate, real_result = Deployer.activate, concurrent.futures.Future.result
    pressed: list[bool] = []

    def activate(self: Deployer, run: object) -> None:
        pressed.append(True)
        real_activate(self, run)  # type: ignore[arg-type]

    def result(self: concurrent.futures.Future, timeout: float | None = None) -> object:
        if pressed and len(pressed) < 99:
            pressed.extend([True] * 99)  # once
            raise KeyboardInterrupt
        return real_result(self, timeout)

    monkeypatch.setattr(Deployer, "activate", activate)
    monkeypatch.setattr(concurrent.futures.Future, "result", result)
    with pytest.raises(DeployFailed, match=r"interrupted \(Ctrl-C or SIGINT\) during step"):
        fleet(repo, tmp_path, pms, batch_size=1).deploy("v2")
    assert {current(tmp_path, h) for h in HOSTS} == {first.release}


def test_a_promote_that_cannot_be_rolled_forward_says_so_and_keeps_the_journal(
    repo: Path, tmp_path: Path, unhealthy: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from slipway.deploy.run import Recovery

    pms: dict[str, FakeProcessManager] = {}
    fleet(repo, tmp_path, pms).deploy("v1")
    fail_on(monkeypatch, "promote_run", "c", SlipwayError("connection lost"))

    def unreachable(d: Deployer, data: dict, cause: str, notify: bool) -> Recovery:
        return Recovery("x", "deploy", "r", "promote", False, "recovery failed: host down")

    monkeypatch.setattr(fleet_mod.recovery, "recover", unreachable)
    with pytest.raises(DeployFailed, match="c failed at step 'promote'") as info:
        fleet(repo, tmp_path, pms).deploy("v2")
    assert not info.value.rolled_back
    assert "slipway recover testing rolls it forward" in str(info.value.hint)
    _, c = members(repo, tmp_path, pms)[2]
    assert journal.read(c.transport, c.layout)["fleet"]["commit"] is True  # type: ignore[index]


def test_one_host_whose_undo_breaks_does_not_stop_the_others_going_back(
    repo: Path, tmp_path: Path, unhealthy: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pms: dict[str, FakeProcessManager] = {}
    first = fleet(repo, tmp_path, pms).deploy("v1")
    fail_on(monkeypatch, "fail", "b", RuntimeError("the incident directory vanished"))
    unhealthy.add("c")
    with pytest.raises(DeployFailed, match="NOT every host") as info:
        fleet(repo, tmp_path, pms).deploy("v2")
    assert not info.value.rolled_back
    assert current(tmp_path, "a") == first.release  # a went back after b's undo broke
    assert current(tmp_path, "c") == first.release


ROLES_HOSTS = ("deploy@api.example.org", "deploy@web1.example.org", "deploy@web2.example.org")


def _with_frontend(repo: Path, roles: str) -> Path:
    """The tiny app with a frontend too, on three named hosts with ``roles``."""
    config = repo / "slipway.toml"
    text = config.read_text().replace('hosts = ["local"]', f"hosts = {list(ROLES_HOSTS)!r}")
    text = text.replace("'", '"').replace(
        "[environments.testing]",
        '[processes.frontend]\nkind = "node"\nstart = ["node", "web.js", "{port}"]\n'
        'port = "frontend"\nhealth_path = "/"\n\n[environments.testing]',
    )
    health = (
        "\n[health]\ncomprehensive = ["
        '{ name = "api", process = "backend", path = "/health" },'
        ' { name = "web", process = "frontend", path = "/" }]\n'
        'websocket = { path = "/ws" }\nsqlite = { name = "db" }\n'
    )
    config.write_text(health + text + f"\n[environments.testing.roles]\n{roles}\n")
    return config


def test_roles_put_each_process_where_the_configuration_says(
    repo: Path, tmp_path: Path, unhealthy: set[str]
) -> None:
    from slipway.config.model import HealthLevel, parse_host

    roles = f'"{ROLES_HOSTS[0]}" = ["backend"]\n' + "".join(
        f'"{h}" = ["frontend"]\n' for h in ROLES_HOSTS[1:]
    )
    loaded = load_config(_with_frontend(repo, roles))
    found, pms = [], {}
    for host in ROLES_HOSTS:
        transport = LocalTransport()
        transport.name = str(parse_host(host))  # as an SSH transport names its host
        own = with_overrides(loaded, "testing", (), str(tmp_path / "hosts" / host), None)
        pms[host] = FakeProcessManager()
        found.append((host, Deployer(own, "testing", transport, process_manager=pms[host])))
    outcome = FleetDeploy(found, parallel=3, batch_size=None).deploy("v1")
    assert outcome.status == "succeeded"
    assert set(pms[ROLES_HOSTS[0]].started) == {"tiny-testing-backend"}
    for web in ROLES_HOSTS[1:]:
        assert set(pms[web].started) == {"tiny-testing-frontend"}
    api, web1 = found[0][1], found[1][1]
    assert api.holds_database and not web1.holds_database
    on_api = {check().name for check in api.checks(HealthLevel.COMPREHENSIVE)}
    on_web = {check().name for check in web1.checks(HealthLevel.COMPREHENSIVE)}
    assert on_api == {"api", "websocket", "db", "processes", "disk"}
    assert on_web == {"web", "processes", "disk"}  # no backend there, no database


@pytest.mark.parametrize(
    ("roles", "error"),
    [
        ('"deploy@other.example.org" = ["backend"]', "not in hosts"),
        (
            f'"{ROLES_HOSTS[0]}" = ["frontend"]\n"{ROLES_HOSTS[1]}" = ["frontend"]\n'
            f'"{ROLES_HOSTS[2]}" = ["frontend"]',
            "no host runs backend",
        ),
        (f'"{ROLES_HOSTS[1]}" = ["frontend"]', "need exactly one backend host, not 2"),
        (f'"{ROLES_HOSTS[1]}" = []', "at least one"),
    ],
    ids=["unknown-host", "no-backend", "two-backends-behind-frontends", "empty"],
)
def test_roles_that_do_not_fit_are_refused_when_the_configuration_is_read(
    repo: Path, roles: str, error: str
) -> None:
    with pytest.raises(SlipwayError, match=error):
        load_config(_with_frontend(repo, roles))


def test_a_host_whose_role_drops_the_backend_stops_it_and_never_starts_it_again(
    repo: Path, tmp_path: Path, unhealthy: set[str]
) -> None:
    """Deployed with every process everywhere, then roles make web1 frontend-only: its
    backend stops with the next deploy, and a rollback to the release built before the
    roles starts only the frontend (no second database)."""
    from slipway.config.model import parse_host
    from slipway.deploy.rollback import manual_rollback

    config = _with_frontend(repo, "")
    text = config.read_text()
    config.write_text(text.replace("\n[environments.testing.roles]\n", "\n"))

    def web1(loaded_config: object, pm: FakeProcessManager) -> Deployer:
        transport = LocalTransport()
        transport.name = str(parse_host(ROLES_HOSTS[1]))
        own = with_overrides(loaded_config, "testing", (), str(tmp_path / "web1"), None)  # type: ignore[arg-type]
        return Deployer(own, "testing", transport, process_manager=pm)

    pm = FakeProcessManager()
    first = web1(load_config(config), pm).deploy("v1")
    assert pm.online == {"tiny-testing-backend", "tiny-testing-frontend"}
    roles = f'"{ROLES_HOSTS[0]}" = ["backend"]\n' + "".join(
        f'"{h}" = ["frontend"]\n' for h in ROLES_HOSTS[1:]
    )
    config.write_text(config.read_text() + f"\n[environments.testing.roles]\n{roles}")
    web1(load_config(config), pm).deploy("v2")
    assert pm.online == {"tiny-testing-frontend"}
    manual_rollback(web1(load_config(config), pm), first.release)
    assert pm.online == {"tiny-testing-frontend"}
    assert "tiny-testing-backend" not in pm.calls[-1][1]


def test_hosts_given_with_host_must_fit_the_roles(repo: Path) -> None:
    roles = f'"{ROLES_HOSTS[0]}" = ["backend"]\n' + "".join(
        f'"{h}" = ["frontend"]\n' for h in ROLES_HOSTS[1:]
    )
    loaded = load_config(_with_frontend(repo, roles))
    extra = (*ROLES_HOSTS, "deploy@extra.example.org")  # runs everything: a 2nd backend
    with pytest.raises(UsageError, match=r"--host: .*need exactly one backend host, not 2"):
        with_overrides(loaded, "testing", extra, None, None)


def test_each_host_deploys_under_its_own_root_with_its_own_environment(
    repo: Path, tmp_path: Path, unhealthy: set[str]
) -> None:
    """``host_overrides`` instead of ``--root``: one configuration, three roots, and each
    host's commands get the environment's host_env with that host's merged over it."""
    from slipway.config.model import parse_host

    config = repo / "slipway.toml"
    overrides = "".join(
        f'\n[environments.testing.host_overrides."{h}"]\nroot = "{tmp_path / "hosts" / str(i)}"\n'
        f'host_env = {{ REGION = "r{i}" }}\n'
        for i, h in enumerate(ROLES_HOSTS)
    )
    text = config.read_text().replace('hosts = ["local"]', f"hosts = {list(ROLES_HOSTS)!r}")
    text = text.replace("'", '"').replace(
        "[environments.testing]\n", '[environments.testing]\nhost_env = { SHARED = "yes" }\n'
    )
    config.write_text(text + overrides)
    loaded = load_config(config)
    found = []
    for host in ROLES_HOSTS:
        transport = LocalTransport()
        transport.name = str(parse_host(host))
        found.append(
            (host, Deployer(loaded, "testing", transport, process_manager=FakeProcessManager()))
        )
    outcome = FleetDeploy(found, parallel=3, batch_size=None).deploy("v1")
    assert outcome.status == "succeeded"
    for i, (_, d) in enumerate(found):
        assert d.layout.root == str(tmp_path / "hosts" / str(i))
        assert (
            tmp_path / "hosts" / str(i) / "testing" / "current"
        ).resolve().name == outcome.release
        assert d.host_env["SHARED"] == "yes" and d.host_env["REGION"] == f"r{i}"
