"""Which blue-green colour is live and which is the warm standby, kept on the host.

``<env>/.slipway/colors.json`` (mode 0600, written atomically):
``{"live": {color, release, since} | null, "standby": {color, release, until, token,
draining?} | null}``. A standby marked ``draining`` is the colour an instant rollback
left: a job on the host is stopping it, and nothing may switch back to it.
An unreadable file means no colour is known (the next deploy starts blue and the router
is pointed at it), never a crash.
"""

from __future__ import annotations

import json
from typing import Any

from slipway.commands import host as cmd
from slipway.config.model import COLORS
from slipway.state.host import Layout, read_text
from slipway.transports.base import Transport


def path_of(layout: Layout) -> str:
    return f"{layout.state_dir}/colors.json"


def read(transport: Transport, layout: Layout) -> dict[str, Any]:
    text = read_text(transport, path_of(layout))
    try:
        data: dict[str, Any] = json.loads(text) if text is not None else {}
    except json.JSONDecodeError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    return {"live": data.get("live"), "standby": data.get("standby")}


def write(transport: Transport, layout: Layout, data: dict[str, Any]) -> None:
    transport.run(cmd.mkdir_p(layout.state_dir))
    transport.put_text(json.dumps(data, indent=2), path_of(layout), mode=0o600)


def other(color: str) -> str:
    return COLORS[1] if color == COLORS[0] else COLORS[0]


def warm_standby(data: dict[str, Any]) -> dict[str, Any] | None:
    """The standby a rollback may switch to instantly (never one being drained)."""
    standby: dict[str, Any] | None = data.get("standby")
    return standby if standby and not standby.get("draining") else None
