"""A/B splits: two kept releases side by side, a fixed share each, for as long as wanted.

``slipway split ENV start --a RELEASE --b RELEASE --percent P`` (the command holds the
lock only while it changes things): one of the two releases is the live one on the live
colour; the other starts on the free colour and must pass the environment's gate; then
the router sends ``P`` % of clients to B and the rest to A, each client kept on its side
by a cookie. ``status`` counts, per side, requests, 5xx, p50/p95 and conversions (hits
on a path) from the router's access log since the start. ``end --keep a|b`` sends every
request to the kept side: keeping B makes it the live release (``current`` moves, A stays
warm as blue-green's standby); keeping A stops B.

Both releases share the database, so B must fit the live schema (the rule a rollback
uses). Deploys and rollbacks are refused while a split runs. ``<env>/.slipway/split.json``
is the split's journal: written before each change, so a command killed while starting
or ending a split is finished by the next command that takes the lock
(:func:`settle_leftovers`): a start is undone, an end completed.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from slipway.config.model import RouterKind
from slipway.deploy import bluegreen
from slipway.deploy.database import schema_fits
from slipway.deploy.run import RunState
from slipway.errors import HealthCheckFailed, UsageError
from slipway.routers import Split
from slipway.state.colors import other
from slipway.state.host import call, read_text

if TYPE_CHECKING:
    from slipway.deploy.context import HostContext


def path_of(d: HostContext) -> str:
    return f"{d.layout.state_dir}/split.json"


def read(d: HostContext) -> dict[str, Any] | None:
    text = read_text(d.transport, path_of(d))
    try:
        found = json.loads(text) if text else None
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _write(d: HostContext, data: dict[str, Any]) -> None:
    d.transport.put_text(json.dumps(data), path_of(d), mode=0o600)


def _remove(d: HostContext) -> None:
    d.transport.run(["rm", "-f", "--", path_of(d)])


def refuse_while_active(d: HostContext, what: str) -> None:
    """A deploy or rollback would change one side of a running split: refused first."""
    found = read(d)
    if found is not None:
        raise UsageError(
            f"{d.env_name} runs an A/B split ({found['a']['release']} /"
            f" {found['b']['release']}): a {what} would change one side of it",
            hint=f"end it first: slipway split {d.env_name} end --keep a|b",
        )


def start(
    d: HostContext,
    a: str,
    b: str,
    percent: int,
    cookie: str,
    conversion_path: str | None,
) -> dict[str, Any]:
    """With the lock held: validate everything, then start the side that is not live
    and split the traffic. Returns the split's state."""
    live = d.read_colors()["live"]
    current = d.current_release()
    _check(d, a, b, percent, live, current)
    live_color = str(live["color"])
    other_release = b if a == current else a
    color = other(live_color)
    sides = {
        "a": {"release": a, "color": live_color if a == current else color},
        "b": {"release": b, "color": live_color if b == current else color},
    }
    data: dict[str, Any] = {
        "state": "starting",
        "a": sides["a"],
        "b": sides["b"],
        "percent": percent,
        "cookie": cookie,
        "conversion_path": conversion_path,
        "actor": d.actor,
        "started_at": time.time(),
    }
    _write(d, data)  # the journal first: a kill from here on is undone by the next command
    colors = d.read_colors()
    if colors["standby"]:  # the free colour is about to run B: its retirement is cancelled
        d.write_colors({**colors, "standby": None})
    with d.step("start"):
        gate = bluegreen.start_on(d, other_release, color)
    if not gate.ok:
        d.pm.stop(d.app_names_of(color))
        _remove(d)
        raise HealthCheckFailed(f"{other_release} is not healthy on {color}: {gate.summary()}")
    router = d.router()
    data["offset"] = call(d.transport, "sides", log=_log(d), offset=None)["offset"]
    with d.step("split"):
        router.split(_routes(d, data))
    data["state"] = "active"
    _write(d, data)
    d.audit("split.started", a=a, b=b, percent=percent, cookie=cookie)
    return data


def _check(
    d: HostContext,
    a: str,
    b: str,
    percent: int,
    live: dict[str, Any] | None,
    current: str | None,
) -> None:
    if not d.env.strategy.coloured or d.env.blue_green.router is not RouterKind.TRAEFIK:
        raise UsageError(
            f"an A/B split needs a blue-green or canary environment with Traefik;"
            f" {d.env_name} uses {d.env.strategy.value}"
        )
    if read(d) is not None:
        raise UsageError(f"{d.env_name} already runs a split: end it first")
    if not 1 <= percent <= 99:
        raise UsageError(f"--percent {percent}: give B 1 to 99 percent of the clients")
    if a == b:
        raise UsageError(f"--a and --b are both {a}: a split needs two releases")
    if live is None or current not in (a, b):
        raise UsageError(
            f"one side must be the live release ({current or 'none'}); {a} and {b} are not",
            hint="the other side starts on the free colour beside it",
        )
    other_release = b if a == current else a
    fits, why = schema_fits(d, current, other_release)
    if not fits:
        raise UsageError(f"{other_release} cannot share {d.env_name}'s database: {why}")


def _routes(d: HostContext, data: dict[str, Any]) -> Split:
    return Split(
        d.target(data["a"]["color"]),
        d.target(data["b"]["color"]),
        int(data["percent"]),
        str(data["cookie"]),
    )


def _log(d: HostContext) -> str:
    return f"{d.router().setup.directory}/logs/access.log"


def figures(d: HostContext, data: dict[str, Any]) -> dict[str, Any]:
    """Per side since the split started: requests, 5xx, p50/p95, conversions."""
    found = call(
        d.transport,
        "sides",
        log=_log(d),
        offset=int(data.get("offset", 0)),
        conversion_path=data.get("conversion_path"),
    )
    result: dict[str, Any] = {}
    for name in ("a", "b"):
        color = data[name]["color"]
        mine = [f for s, f in found["sides"].items() if s.split("@", 1)[0].endswith(f"-{color}")]
        ms = sorted(v for f in mine for v in f["ms"])
        requests = sum(f["requests"] for f in mine)
        errors = sum(f["errors"] for f in mine)
        result[name] = {
            "release": data[name]["release"],
            "color": color,
            "requests": requests,
            "errors": errors,
            "error_rate": round(errors / requests, 4) if requests else 0.0,
            "p50_ms": _nearest(ms, 50),
            "p95_ms": _nearest(ms, 95),
            "conversions": sum(f.get("conversions", 0) for f in mine),
        }
    return result


def _nearest(ordered: list[float], pct: int) -> float | None:
    if not ordered:
        return None
    return ordered[max(0, -(-len(ordered) * pct // 100) - 1)]


def end(d: HostContext, keep: str) -> dict[str, Any]:
    """With the lock held: every request to the kept side; the other stops (A) or
    stays warm as the standby (when B becomes the live release)."""
    data = read(d)
    if data is None:
        raise UsageError(f"{d.env_name} runs no A/B split")
    if keep not in ("a", "b"):
        raise UsageError(f"--keep {keep}: say a or b")
    data.update(state="ending", keep=keep)
    _write(d, data)
    _finish_end(d, data)
    return data


def _finish_end(d: HostContext, data: dict[str, Any]) -> None:
    """Idempotent: a killed ``end`` is completed by running this again."""
    kept, dropped = data[data["keep"]], data["b" if data["keep"] == "a" else "a"]
    live = d.read_colors()["live"] or {}
    router = d.router()
    with d.step("switch"):
        router.switch(d.target(kept["color"]), check_target=False)
    if kept["color"] == live.get("color"):
        d.pm.stop(d.app_names_of(dropped["color"]))
        d.pm.save()
    else:
        state = RunState(old_color=live.get("color"))
        bluegreen.finish(d, kept["release"], kept["color"], live.get("release"), state)
    _remove(d)
    d.audit("split.ended", kept=kept["release"], dropped=dropped["release"])


def settle_leftovers(d: HostContext) -> str | None:
    """A split a killed command was starting is undone; one it was ending is ended.
    An active split is left as it is. Returns what was done, for the output."""
    data = read(d)
    if data is None or data.get("state") == "active":
        return None
    if data.get("state") == "ending":
        _finish_end(d, data)
        return f"finished ending the A/B split (kept {data['keep']})"
    live = d.read_colors()["live"] or {}
    if live.get("color"):
        d.router().switch(d.target(str(live["color"])), check_target=False)
        d.pm.stop(d.app_names_of(other(str(live["color"]))))
    _remove(d)
    return "undid an A/B split that was being started"
