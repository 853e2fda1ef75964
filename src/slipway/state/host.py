"""Calls into :mod:`slipway.state.hostscript` on a host, and the deploy root's layout."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from slipway.commands.host import python_script, readlink
from slipway.errors import SlipwayError
from slipway.state import agent
from slipway.transports.base import Transport

_SCRIPT: str | None = None
CALL_TIMEOUT = 300.0  # a backup or restore of a large database


def host_script() -> str:
    global _SCRIPT
    if _SCRIPT is None:
        _SCRIPT = resources.files("slipway.state").joinpath("hostscript.py").read_text()
    return _SCRIPT


def call(transport: Transport, op: str, **args: Any) -> dict[str, Any]:
    """Run one host-helper operation and return its JSON answer (errors raised): through
    the host's resident agent when a context attached one, else by a one-off
    ``python3 -c``."""
    request = {"op": op, **args}
    if transport.channel is not None:
        answer = transport.channel.request(request, timeout=CALL_TIMEOUT)
    else:
        answer = _call_once(transport, request)
    if "error" in answer:
        error = transport.masker(str(answer["error"]))
        hint = transport.masker(str(answer["hint"])) if answer.get("hint") else None
        raise SlipwayError(f"on {transport.name} host, {op} failed: {error}", hint=hint)
    return answer


def _call_once(transport: Transport, request: dict[str, Any]) -> dict[str, Any]:
    data = json.dumps(request).encode()
    result = transport.run(python_script(host_script()), stdin=data, timeout=CALL_TIMEOUT)
    try:
        answer: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        tail = transport.masker(result.tail())
        raise SlipwayError(f"host helper {request['op']!r} printed no JSON: {tail}") from exc
    return answer


def attach_agent(transport: Transport, root: str) -> None:
    """Let every helper call on ``transport`` go through a resident agent kept under
    ``<root>/.slipway`` (started on the first call)."""
    agent.attach(transport, f"{root}/.slipway", host_script())


def read_text(transport: Transport, path: str) -> str | None:
    """A small file on the host, or None when it cannot be read (through the agent: no
    process start or SSH channel per file)."""
    if transport.channel is None:
        result = transport.run(["cat", "--", path], check=False)
        return result.stdout if result.ok else None
    text: str | None = call(transport, "read", path=path)["text"]
    return text


def read_json_object(transport: Transport, path: str) -> dict[str, Any] | None:
    """A small JSON file on the host holding one object (slipway's own state files), or
    None when it is missing, unreadable or not an object."""
    text = read_text(transport, path)
    try:
        found = json.loads(text) if text else None
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def read_link(transport: Transport, path: str) -> str | None:
    """Where a symlink on the host points, or None."""
    if transport.channel is None:
        result = transport.run(readlink(path), check=False)
        return result.stdout.strip() or None if result.ok else None
    target: str | None = call(transport, "readlink", path=path)["target"]
    return target


def install_file(transport: Transport, directory: str, stem: str, text: str) -> str:
    """Put ``text`` on the host as ``<directory>/<stem>-<sha256>.py`` (0600 in a 0700
    directory) unless that exact file is already there; return its path. Scripts run on
    the host this way never travel in argv, where every user of the host sees them."""
    sha = agent.script_sha(text)
    path = f"{directory}/{stem}-{sha}.py"
    if call(transport, "file_sha256", path=path)["sha256"] != sha:
        agent.put_script(transport, directory, path, text)
    return path


def helper_argv(transport: Transport) -> list[str]:
    """The command that runs the helper on its own (a detached job adds one request
    argument): the uploaded agent file, else the script in argv."""
    if isinstance(transport.channel, agent.AgentPool):
        return transport.channel.argv()
    return python_script(host_script())


@dataclass(frozen=True)
class Layout:
    """Where an environment lives under the deploy root (Capistrano's shape)."""

    root: str
    env: str

    @property
    def base(self) -> str:
        return f"{self.root}/{self.env}"

    @property
    def releases(self) -> str:
        return f"{self.base}/releases"

    @property
    def tools_bin(self) -> str:
        """Where ``slipway setup`` puts the tools it installs (on the PATH of every
        command slipway runs on the host, after ``host_path``)."""
        return f"{self.root}/.slipway/tools/bin"

    def release(self, release_id: str) -> str:
        return f"{self.releases}/{release_id}"

    @property
    def current(self) -> str:
        return f"{self.base}/current"

    @property
    def shared(self) -> str:
        return f"{self.base}/shared"

    @property
    def state_dir(self) -> str:
        return f"{self.base}/.slipway"

    @property
    def records(self) -> str:
        return f"{self.state_dir}/records.db"

    @property
    def lock_file(self) -> str:
        return f"{self.state_dir}/lock"

    @property
    def lock_info(self) -> str:
        return f"{self.state_dir}/lock.json"

    @property
    def backups(self) -> str:
        return f"{self.base}/backups"

    @property
    def logs(self) -> str:
        return f"{self.shared}/logs"

    def database(self, relative: str) -> str:
        """The database lives in shared state under the root, never inside a release."""
        return f"{self.root}/{relative}"
