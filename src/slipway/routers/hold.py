"""Start and steer the holding proxy (:mod:`slipway.routers.holdproxy`) on a host.

The proxy runs detached (``setsid``), outside the process manager: it must end when its
job is done or its deadline passes, never be restarted into an empty queue.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from slipway.commands import host as cmd
from slipway.errors import RouterError, SlipwayError
from slipway.state.host import call, install_file
from slipway.transports.base import Transport

START_SECONDS = 10.0  # how long the proxy may take to listen
DEADLINE_GRACE = 30.0  # the proxy's own deadline is slipway's plus this (slipway checks first)
LINGER_SECONDS = 600.0  # connections still open after the release are served this long
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with its terminating NUL


@functools.cache
def proxy_script() -> str:
    """The proxy's source, uploaded to the host content-addressed."""
    return resources.files("slipway.routers").joinpath("holdproxy.py").read_text()


@dataclass(frozen=True)
class HoldResult:
    """What a hold cost: how many requests waited, and the longest wait."""

    state: str  # released | aborted | gone
    held: int
    longest_wait: float
    failed: int
    why: str = ""

    def summary(self) -> str:
        if self.state == "released":
            return f"{self.held} held requests released, longest wait {self.longest_wait:.2f}s"
        return (
            f"hold {self.state} ({self.why}): {self.failed} requests answered 503,"
            f" longest wait {self.longest_wait:.2f}s"
        )


class HoldingProxy:
    """One holding proxy of one environment on one host."""

    def __init__(
        self, transport: Transport, socket_path: str, log_path: str, script_dir: str
    ) -> None:
        if len(socket_path.encode()) > MAX_SOCKET_PATH:
            raise RouterError(
                f"the holding proxy's control socket path is {len(socket_path.encode())}"
                f" bytes, over the {MAX_SOCKET_PATH} a Unix socket allows: {socket_path}",
                hint="use a shorter deploy root (the environment's 'root')",
            )
        self.transport = transport
        self.socket_path = socket_path
        self.log_path = log_path
        self.script_dir = script_dir

    def start(
        self, processes: list[str], deadline: float, grace: float = DEADLINE_GRACE
    ) -> dict[str, int]:
        """Start the proxy (holding from its first connection); return its ports. It
        gives up by itself ``grace`` seconds after slipway's deadline."""
        request = {
            "op": "serve",
            "processes": processes,
            "socket": self.socket_path,
            "deadline": deadline + grace,
            "linger": LINGER_SECONDS,
        }
        script = install_file(self.transport, self.script_dir, "holdproxy", proxy_script())
        argv = ["setsid", "-f", "python3", script, json.dumps(request)]
        self.transport.run(cmd.detached(self.log_path, argv))
        until = time.monotonic() + START_SECONDS
        while time.monotonic() < until:
            answer = self.command("status")
            if answer.get("state") == "holding" and len(answer.get("ports", {})) == len(processes):
                return {name: int(port) for name, port in answer["ports"].items()}
            time.sleep(0.05)
        raise RouterError(
            f"the holding proxy did not start within {START_SECONDS:g}s",
            hint=f"see {self.log_path} on the host",
        )

    def command(self, what: str, **args: Any) -> dict[str, Any]:
        """One control command; a proxy that cannot be asked answers ``{"error": ...}``."""
        message = {"cmd": what, **args}
        try:
            answer = call(self.transport, "ask_socket", path=self.socket_path, message=message)
        except SlipwayError as exc:
            return {"error": f"the holding proxy could not be asked: {exc}"}
        reply: dict[str, Any] = answer["answer"]
        return reply

    def release(self, ports: Mapping[str, int]) -> HoldResult:
        """Send every held request to ``ports`` (the colour now live)."""
        # One host call: the router already sends new connections to the live colour.
        return _result(self.command("release", ports=dict(ports), stop=True))

    def abort(self, why: str) -> HoldResult:
        """Answer every held request 503 (nothing healthy to send them to)."""
        return _result(self.command("abort", why=why))


def _result(answer: dict[str, Any]) -> HoldResult:
    state = str(answer.get("state", "gone"))
    why = str(answer.get("error") or answer.get("why") or "")
    return HoldResult(
        state=state,
        held=int(answer.get("released", 0)),
        longest_wait=float(answer.get("longest_wait", 0.0)),
        failed=int(answer.get("failed", 0)),
        why=why,
    )
