"""The resident host agent, started for real (``python3`` on this host through the local
transport): uploaded once and content-addressed, never in argv, one process answering
every call of a command, replaced when altered, gone when slipway is."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from slipway.errors import SlipwayError
from slipway.state import agent as agent_mod
from slipway.state.host import attach_agent, call, helper_argv, host_script
from slipway.transports.base import Handle
from slipway.transports.local import LocalTransport


def agents_of(path: str) -> list[int]:
    """Pids of the processes running the agent file ``path``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if path.encode() in argv:
            found.append(int(entry.name))
    return found


def gone(pid: int, within: float = 10.0) -> bool:
    until = time.monotonic() + within
    while time.monotonic() < until:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def host(tmp_path: Path) -> LocalTransport:
    transport = LocalTransport()
    attach_agent(transport, str(tmp_path / "root"))
    yield transport
    transport.close()


def pool_of(transport: LocalTransport) -> agent_mod.AgentPool:
    assert isinstance(transport.channel, agent_mod.AgentPool)
    return transport.channel


def test_one_uploaded_agent_answers_every_call_and_never_travels_in_argv(
    host: LocalTransport, tmp_path: Path
) -> None:
    pool = pool_of(host)
    assert call(host, "disk", paths=[str(tmp_path)])["disks"]
    assert call(host, "port_free", port=1)["free"] in (True, False)
    path = Path(pool.path)
    assert (
        path == tmp_path / "root" / ".slipway" / f"agent-{agent_mod.script_sha(host_script())}.py"
    )
    assert path.read_text() == host_script()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    (pid,) = agents_of(pool.path)  # one process served both calls
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[:3] == [b"python3", str(path).encode(), b"--serve"]
    assert not any(b"def op_backup" in word for word in argv)
    host.close()
    assert gone(pid)


def test_an_altered_copy_is_replaced_before_it_answers(tmp_path: Path) -> None:
    first = LocalTransport()
    attach_agent(first, str(tmp_path))
    call(first, "disk", paths=[str(tmp_path)])
    path = Path(pool_of(first).path)
    first.close()
    path.write_text('import json; print(json.dumps({"agent": "not-me"}))\n')
    second = LocalTransport()
    attach_agent(second, str(tmp_path))
    try:
        assert call(second, "disk", paths=[str(tmp_path)])["disks"]
        assert path.read_text() == host_script()
    finally:
        second.close()


def test_an_error_is_raised_masked_and_the_agent_keeps_serving(host: LocalTransport) -> None:
    host.masker.add("s3cret-value-81")
    with pytest.raises(SlipwayError) as info:
        call(host, "s3cret-value-81")  # the helper's KeyError repeats the unknown op
    assert str(info.value).endswith("failed: KeyError: '*****'")
    with pytest.raises(SlipwayError, match="OperationalError"):
        call(host, "restore", db="/nonexistent/a.db", src="/nonexistent/b.db")
    assert call(host, "port_free", port=1)["free"] in (True, False)
    assert len(agents_of(pool_of(host).path)) == 1


def test_concurrent_calls_each_get_their_own_answer(host: LocalTransport, tmp_path: Path) -> None:
    dirs = [tmp_path / f"d{i}" for i in range(8)]
    for d in dirs:
        d.mkdir()
    answers: dict[int, dict[str, object]] = {}

    def ask(i: int) -> None:
        answers[i] = call(host, "disk", paths=[str(dirs[i])])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == list(range(8))
    for i, answer in answers.items():
        assert list(answer["disks"]) == [str(dirs[i])]  # type: ignore[call-overload]
    assert 1 <= len(agents_of(pool_of(host).path)) <= 8


def test_a_killed_agent_is_replaced_on_the_next_call(host: LocalTransport, tmp_path: Path) -> None:
    call(host, "disk", paths=[str(tmp_path)])
    (pid,) = agents_of(pool_of(host).path)
    os.kill(pid, signal.SIGKILL)
    assert gone(pid)
    assert call(host, "disk", paths=[str(tmp_path)])["disks"]
    assert [p for p in agents_of(pool_of(host).path) if p != pid]


def test_detached_jobs_run_the_uploaded_file(host: LocalTransport) -> None:
    argv = helper_argv(host)
    assert argv == ["python3", pool_of(host).path]
    result = subprocess.run(
        [*argv, json.dumps({"op": "port_free", "port": 1})], capture_output=True, text=True
    )
    assert json.loads(result.stdout)["free"] in (True, False)
    bare = LocalTransport()
    assert helper_argv(bare)[:2] == ["python3", "-c"]  # no context: the one-off form


def test_the_agent_ends_when_slipway_is_killed(tmp_path: Path) -> None:
    program = f"""
import sys, time
sys.path[:0] = {sys.path!r}
from slipway.state.host import attach_agent, call
from slipway.transports.local import LocalTransport
t = LocalTransport()
attach_agent(t, {str(tmp_path)!r})
call(t, "port_free", port=1)
print("ready", flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    (path,) = (tmp_path / ".slipway").glob("agent-*.py")
    (pid,) = agents_of(str(path))
    proc.kill()
    proc.wait()
    assert gone(pid), "the agent outlived the slipway that started it"


class SilentHandle(Handle):
    """An agent that said hello and then never answers (or answers garbage)."""

    def __init__(self, lines: list[str | None]) -> None:
        self.lines = lines
        self.closed = False

    def readline(self, timeout: float) -> str | None:
        return self.lines.pop(0) if self.lines else None

    def exit_code(self, timeout: float) -> int | None:
        return None

    def write(self, text: str) -> None:
        if self.closed:
            from slipway.errors import TransportError

            raise TransportError("closed")

    def close(self) -> None:
        self.closed = True


def test_an_agent_that_does_not_answer_is_stopped_and_named() -> None:
    silent = agent_mod.Agent(SilentHandle([]), "web1")
    with pytest.raises(SlipwayError, match=r"no answer to backup within 0\.1s"):
        silent.ask({"op": "backup"}, 0.1)
    assert silent.handle.closed  # type: ignore[attr-defined]
    with pytest.raises(SlipwayError, match="stopped before disk"):
        silent.ask({"op": "disk"}, 0.1)
    garbled = agent_mod.Agent(SilentHandle(["Traceback (most recent call last):"]), "web1")
    with pytest.raises(SlipwayError, match="answered disk with no JSON"):
        garbled.ask({"op": "disk"}, 0.1)


def test_a_host_without_python_gets_a_clear_error(tmp_path: Path) -> None:
    transport = LocalTransport()
    attach_agent(transport, str(tmp_path))
    tools = tmp_path / "bin"  # mkdir and chmod, no python3
    tools.mkdir()
    for name in ("mkdir", "chmod"):
        (tools / name).symlink_to(shutil.which(name) or f"/bin/{name}")
    old = os.environ["PATH"]
    os.environ["PATH"] = str(tools)
    try:
        with pytest.raises(SlipwayError) as info:
            call(transport, "port_free", port=1)
    finally:
        os.environ["PATH"] = old
        transport.close()
    assert "could not start" in str(info.value) and "python3" in (info.value.hint or "")
