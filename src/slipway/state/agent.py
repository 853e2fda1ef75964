"""The resident host agent: the host helper started once per host per command.

Starting ``python3`` for every helper call costs 80 ms on a plain interpreter and 250 ms
behind a pyenv shim, and ``python3 -c SCRIPT`` shows the whole script in ``ps``. Like
mitogen's, the agent is uploaded once, content-addressed
(``<root>/.slipway/agent-<sha256>.py`` in a 0700 directory), started over the transport
and kept for the whole command, answering one JSON line per request. Its first line is
the SHA-256 of its own file: a stale or altered copy is replaced before it answers
anything. When slipway ends, or is killed, the agent's stdin closes and it exits.

The health gate asks several questions at once, so a host gets a small pool of agents,
each answering one request at a time; a second one starts only when the first is busy.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from slipway.errors import SlipwayError, TransportError
from slipway.transports.base import Handle, Transport

HELLO_TIMEOUT = 30.0  # an interpreter start on a loaded host


def script_sha(script: str) -> str:
    return hashlib.sha256(script.encode()).hexdigest()


def put_script(transport: Transport, directory: str, path: str, script: str) -> None:
    """Write ``script`` to ``path`` (0600) in ``directory`` (created, 0700)."""
    transport.run(["mkdir", "-p", directory])
    transport.run(["chmod", "0700", directory])
    transport.put_text(script, path, mode=0o600)


class Agent:
    """One running agent process and its channel."""

    def __init__(self, handle: Handle, name: str) -> None:
        self.handle = handle
        self.name = name

    def alive(self) -> bool:
        return self.handle.exit_code(0) is None

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One request, one answer. An agent that does not answer in time is stopped
        (what it was doing is unknown); the error says which operation."""
        op = request.get("op")
        try:
            self.handle.write(json.dumps(request) + "\n")
        except TransportError as exc:
            raise SlipwayError(f"the host agent on {self.name} stopped before {op}: {exc}") from exc
        line = self.handle.readline(timeout)
        if line is None:
            self.close()
            raise SlipwayError(
                f"the host agent on {self.name} gave no answer to {op} within {timeout:g}s"
            )
        try:
            answer: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError as exc:
            self.close()
            raise SlipwayError(f"the host agent on {self.name} answered {op} with no JSON") from exc
        return answer

    def close(self) -> None:
        self.handle.close()


class AgentPool:
    """The agents of one host (a :class:`~slipway.transports.base.Channel`)."""

    def __init__(self, transport: Transport, directory: str, script: str) -> None:
        self.transport = transport
        self.directory = directory
        self.script = script
        self.sha = script_sha(script)
        self.path = f"{directory}/agent-{self.sha}.py"
        self._idle: list[Agent] = []
        self._all: list[Agent] = []
        self._lock = threading.Lock()
        self._install_lock = threading.Lock()
        self._installed = False

    def request(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        agent = self._take()
        try:
            answer = agent.ask(request, timeout)
        except BaseException:
            self._forget(agent)
            raise
        with self._lock:
            self._idle.append(agent)
        return answer

    def argv(self) -> list[str]:
        """The command that runs this script on the host (detached jobs use it with one
        request argument): uploaded first if needed."""
        self.install()
        return ["python3", self.path]

    def install(self) -> None:
        """Upload the script unless this command already saw it in place."""
        with self._install_lock:  # one upload, however many agents start at once
            if self._installed:
                return
            put_script(self.transport, self.directory, self.path, self.script)
            self._installed = True

    def close(self) -> None:
        with self._lock:
            agents, self._all, self._idle = self._all, [], []
        for agent in agents:
            agent.close()

    def _take(self) -> Agent:
        with self._lock:
            while self._idle:
                agent = self._idle.pop()
                if agent.alive():
                    return agent
                self._all.remove(agent)
        return self._start()

    def _forget(self, agent: Agent) -> None:
        with self._lock:
            if agent in self._all:
                self._all.remove(agent)
        agent.close()

    def _start(self) -> Agent:
        """Start an agent from the uploaded copy; upload it when it is missing or is not
        this exact script (the hello line carries the file's hash)."""
        agent = self._spawn()
        if agent is None:
            self._installed = False
            self.install()
            agent = self._spawn()
        if agent is None:
            raise SlipwayError(
                f"the host agent could not start on {self.transport.name} ({self.path})",
                hint="check that python3 (3.11+) runs on the host and the deploy root is"
                " writable",
            )
        with self._lock:
            self._all.append(agent)
        return agent

    def _spawn(self) -> Agent | None:
        try:
            handle = self.transport.spawn(["python3", self.path, "--serve"])
        except TransportError:
            return None
        line = handle.readline(HELLO_TIMEOUT)
        try:
            hello = json.loads(line) if line else {}
        except json.JSONDecodeError:
            hello = {}
        if not isinstance(hello, dict) or hello.get("agent") != self.sha:
            handle.close()
            return None
        self._installed = True
        return Agent(handle, self.transport.name)


def attach(transport: Transport, directory: str, script: str) -> None:
    """Give ``transport`` its agents (started on first use), unless it has them."""
    if transport.channel is None:
        transport.channel = AgentPool(transport, directory, script)
