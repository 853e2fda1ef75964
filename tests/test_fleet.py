"""A fleet of five hosts made of network namespaces (``tests/netns.py``), each with its
own sshd, loopback, PM2, Traefik and SQLite file, the same ports and root path on each:
``slipway deploy`` goes to all of them over real SSH, blue-green, under load on every
host's public port.

- all succeed: every host serves the release;
- the last wave's host fails its health gate: every host is back on the previous
  release, with 0 failed requests on any host;
- a lock held on one host: nothing changes on any host;
- slipway SIGKILLed mid-fleet, before the commit decision (after the first switch) and
  after it (at the first promote): ``slipway recover`` brings every host back, or
  forward, never half the fleet, with no failed request and every acknowledged write
  kept.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from fleetenv import EXE, Fleet, namespace_fleet
from loadgen import Load
from netns import restart_sshd

from slipway.config import load_config
from slipway.config.model import parse_host
from slipway.secrets import Masker
from slipway.state.host import Layout
from slipway.state.lock import DeployLock
from slipway.transports import connect

pytestmark = pytest.mark.integration

HOSTS = 5


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with namespace_fleet(tmp_path_factory, "fleet", HOSTS, batch_size=2) as made:
        yield made


def failed(loads: list[Load]) -> list[int]:
    return [load.summary()["failed"] for load in loads]


def test_a_fleet_deploys_in_waves_and_a_late_failure_brings_every_host_back(
    fleet: Fleet,
) -> None:
    code, events, err = fleet.deploy("v1")
    assert code == 0, err
    (result,) = [e for e in events if e["event"] == "result"]
    assert result["waves"] == 3 and len(result["hosts"]) == HOSTS  # type: ignore[arg-type]
    v1 = str(result["release"])
    assert fleet.current() == [v1] * HOSTS
    hosts_seen = {e.get("host") for e in events if e["event"] == "step"}
    assert hosts_seen >= {h.spec for h in fleet.ns.hosts}
    with ExitStack() as stack:
        loads = fleet.loads(stack)
        # The last wave's host (the fifth) fails its gate: the release never stays
        # anywhere, and hosts 1-4, switched in earlier waves, switch back.
        bad = fleet.ns.hosts[-1]
        code, events, err = _deploy_broken_on(fleet, bad.index)
        assert code == 1, err
        assert f"{bad.spec} failed at step 'health'" in err
        assert "every host serves its previous release" in err
    assert fleet.current() == [v1] * HOSTS
    assert failed(loads) == [0] * HOSTS, [load.summary() for load in loads]
    assert all(load.summary()["requests"] > 50 for load in loads)


def _deploy_broken_on(fleet: Fleet, index: int) -> tuple[int, list[dict[str, object]], str]:
    """broken/late-fail, whose health answers 500 once its flag file exists: every
    host's env file names the same path, which exists on host ``index`` only."""
    for host in fleet.ns.hosts:
        shared = host.data / "testing" / "shared"
        (shared / ".env.testing").write_text(
            f"API_TOKEN=fleet-secret-{host.index}\n"
            f"CODEFRAME_MINI_LATE_FAIL_FILE={fleet.ns.root}/testing/shared/fail-now\n"
        )
    flag = fleet.ns.hosts[index].data / "testing" / "shared" / "fail-now"
    flag.write_text("on purpose\n")
    try:
        return fleet.deploy("broken/late-fail")
    finally:
        flag.unlink()


def test_a_lock_held_on_one_host_changes_nothing_anywhere(fleet: Fleet) -> None:
    before = fleet.current()
    loaded = load_config(fleet.config)
    env = loaded.config.environment("testing")
    host = fleet.ns.hosts[2]
    with connect(parse_host(host.spec), env.ssh, Masker()) as transport:
        lock = DeployLock(transport, Layout(str(env.root), "testing"))
        lock.acquire(actor="someone", ref="main", reason="deploy")
        try:
            code, events, err = fleet.deploy("v3")
        finally:
            lock.release()
    assert code == 3, err
    assert host.spec in err and "nothing changed on any host" in err
    assert fleet.current() == before
    assert not [e for e in events if e.get("step") == "upload"]


def _deploy_killed_at(fleet: Fleet, ref: str, step: str, status: str) -> list[dict[str, object]]:
    """`slipway deploy --json`, SIGKILLed at the first event (step, status) of any host."""
    argv = [EXE, "--config", str(fleet.config), "deploy", "testing", "--ref", ref, "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    seen: list[dict[str, object]] = []
    for line in proc.stdout:
        event = json.loads(line)
        seen.append(event)
        if event.get("step") == step and event.get("status") == status:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, seen[-3:]
    return seen


def _journals(fleet: Fleet) -> list[bool]:
    return [(h.data / "testing" / ".slipway" / "journal.json").exists() for h in fleet.ns.hosts]


@pytest.mark.parametrize(
    ("step", "status", "forward"),
    [("switch", "ok", False), ("promote", "start", True)],
    ids=["after-the-first-switch", "after-the-commit-decision"],
)
def test_slipway_killed_mid_fleet_is_recovered_on_every_host(
    fleet: Fleet, step: str, status: str, forward: bool
) -> None:
    """Killed once a first host switched (before the commit decision): every host goes
    back. Killed at the first promote (the decision journaled on every host): every host
    rolls forward. Either way no request fails and no acknowledged write is lost."""
    before = fleet.current()
    assert len(set(before)) == 1
    rows_before = [fleet.rows(i) for i in range(HOSTS)]
    with ExitStack() as stack:
        loads = fleet.loads(stack)
        seen = _deploy_killed_at(fleet, "v2", step, status)
        assert any(_journals(fleet)), "the kill left no journal: nothing was under way"
        done = fleet.cli("recover", "testing", "--json")
        assert done.returncode == 0, done.stderr
    assert not any(_journals(fleet))
    after = fleet.current()
    assert len(set(after)) == 1, after  # never half a fleet
    started = [e for e in seen if e.get("step") == "upload" and e.get("status") == "start"]
    assert len(started) == HOSTS
    assert (after != before) is forward, (before, after)
    assert failed(loads) == [0] * HOSTS, [load.summary() for load in loads]
    for i, load in enumerate(loads):
        acked = sum(1 for s in load.samples if s.kind == "post" and s.ok)
        assert fleet.rows(i) >= rows_before[i] + acked, i


def test_a_host_whose_sshd_dies_mid_deploy_is_recovered_once_it_is_back(fleet: Fleet) -> None:
    """The third host's sshd (listener and sessions) is killed once its new colour
    started: the fleet goes back everywhere it can reach and says the third host was
    not recovered; its apps and router keep serving (PM2 is not sshd's child). Once
    sshd is back, `slipway recover` completes that host's journal."""
    before = fleet.current()
    victim = fleet.ns.hosts[2]
    argv = [EXE, "--config", str(fleet.config), "deploy", "testing", "--ref", "v2", "--json"]
    with ExitStack() as stack:
        loads = fleet.loads(stack)
        errors = stack.enter_context(tempfile.TemporaryFile("w+"))
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert proc.stdout is not None
        killed = 0
        for line in proc.stdout:
            event = json.loads(line)
            at_victim = event.get("host") == victim.spec
            if at_victim and event.get("step") == "start" and event.get("status") == "ok":
                killed = killed or victim.kill_sshd()
        assert proc.wait(timeout=300) == 1
        errors.seek(0)
        err = errors.read()
        assert killed >= 2, "the listener and the deploy's session"
        assert victim.spec in err and "NOT every host" in err
        assert _journals(fleet)[2] and not any(_journals(fleet)[:2] + _journals(fleet)[3:])
        restart_sshd(victim, fleet.ns.root)
        done = fleet.cli("recover", "testing", "--json")
        assert done.returncode == 0, done.stderr
    assert not any(_journals(fleet))
    assert fleet.current() == before
    assert failed(loads) == [0] * HOSTS, [load.summary() for load in loads]
