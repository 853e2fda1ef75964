"""Calls into :mod:`slipway.state.hostscript` on a host, and the deploy root's layout."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from slipway.commands.host import python_script
from slipway.errors import SlipwayError
from slipway.transports.base import Transport

_SCRIPT: str | None = None


def host_script() -> str:
    global _SCRIPT
    if _SCRIPT is None:
        _SCRIPT = resources.files("slipway.state").joinpath("hostscript.py").read_text()
    return _SCRIPT


def call(transport: Transport, op: str, **args: Any) -> dict[str, Any]:
    """Run one host-script operation and return its JSON answer (errors raised)."""
    request = json.dumps({"op": op, **args}).encode()
    result = transport.run(python_script(host_script()), stdin=request, timeout=300)
    try:
        answer: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        tail = transport.masker(result.tail())
        raise SlipwayError(f"host helper {op!r} printed no JSON: {tail}") from exc
    if "error" in answer:
        error = transport.masker(str(answer["error"]))
        raise SlipwayError(f"on {transport.name} host, {op} failed: {error}")
    return answer


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
