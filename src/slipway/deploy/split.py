"""A/B splits: two kept releases side by side, a fixed share each, for as long as wanted.

``slipway split ENV start --a RELEASE --b RELEASE --percent P`` (the command holds the
lock only while it changes things): one of the two releases is the live one on the live
colour; the other starts on the free colour and must pass the environment's gate; then
the router sends ``P`` % of clients to B and the rest to A, each client kept on its side
by a cookie. ``status`` counts, per side, requests, 5xx, p50/p95 and conversions (hits
on a path) from the router's access log since the start. ``end --keep a|b`` sends every
request to the kept side: keeping the side that was not live makes it the live release
(backed up before and recorded; ``current`` moves, the other stays warm as blue-green's
standby); keeping the live side stops the other.

Both releases share the database, so B must fit the live schema (the rule a rollback
uses). Deploys, rollbacks and restores are refused while a split runs (checked under
the lock). One host only. ``<env>/.slipway/split.json``
is the split's journal: written before each change, so a command killed while starting
or ending a split is finished by the next command that takes the lock
(:func:`settle_leftovers`): a start is undone, an end completed.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from slipway.deploy import bluegreen, steps
from slipway.deploy.database import live_schema, schema_fits
from slipway.deploy.run import RunState
from slipway.errors import HealthCheckFailed, SlipwayError, UsageError
from slipway.metrics.dora import percentile
from slipway.routers import Split
from slipway.state.colors import other
from slipway.state.host import call, read_json_object

if TYPE_CHECKING:
    from slipway.deploy.context import HostContext


def path_of(d: HostContext) -> str:
    return f"{d.layout.state_dir}/split.json"


def read(d: HostContext) -> dict[str, Any] | None:
    return read_json_object(d.transport, path_of(d))


def _write(d: HostContext, data: dict[str, Any]) -> None:
    d.transport.put_text(json.dumps(data), path_of(d), mode=0o600)


def _remove(d: HostContext) -> None:
    d.transport.run(["rm", "-f", "--", path_of(d)])


def refuse_while_active(d: HostContext, what: str) -> None:
    """A deploy, rollback or restore would change one side of a running split: refused
    (called with the lock held, after a killed split's leftovers were settled)."""
    found = read(d)
    if found is not None and found.get("state") == "active":
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
    cookie: str | None,
    conversion_path: str | None,
) -> dict[str, Any]:
    """With the lock held: validate everything, then start the side that is not live
    and split the traffic. Any failure (or Ctrl-C) on the way is undone before it is
    raised. Returns the split's state."""
    live = d.read_colors()["live"]
    current = d.current_release()
    _check(d, a, b, percent, live, current)
    live_color = str(live["color"])
    other_release = b if a == current else a
    color = other(live_color)
    colors = d.read_colors()
    data: dict[str, Any] = {
        "state": "starting",
        "a": {"release": a, "color": live_color if a == current else color},
        "b": {"release": b, "color": live_color if b == current else color},
        "percent": percent,
        # Named after this split: a client sorted by an earlier one (whose colours may
        # have swapped since) does not land on a side by accident.
        "cookie": cookie or f"slipway_ab_{d.deployment_id or time.time_ns() % 10**12}",
        "conversion_path": conversion_path,
        "actor": d.actor,
        "started_at": time.time(),
        "standby_before": colors["standby"],  # brought back if the start is undone
    }
    _write(d, data)  # the journal first: a kill from here on is undone by the next command
    try:
        _start_other(d, data, other_release, color, colors)
    except BaseException:
        _undo_start(d, data)
        raise
    d.audit(
        "split.started",
        a=a,
        b=b,
        percent=percent,
        cookie=data["cookie"],
        conversion_path=conversion_path,
    )
    return data


def _start_other(
    d: HostContext, data: dict[str, Any], release: str, color: str, colors: dict[str, Any]
) -> None:
    if colors["standby"]:  # the free colour is about to run B: its retirement is cancelled
        d.write_colors({**colors, "standby": None})
    with d.step("start"):
        gate = bluegreen.start_on(d, release, color)
    if not gate.ok:
        raise HealthCheckFailed(f"{release} is not healthy on {color}: {gate.summary()}")
    d.pm.save()  # a reboot during the split brings both sides back
    data["offset"] = call(d.transport, "sides", log=_log(d), offset=None)["offset"]
    with d.step("split"):
        d.router().split(_routes(d, data))
    data["state"] = "active"
    _write(d, data)


def _undo_start(d: HostContext, data: dict[str, Any]) -> str:
    """Every request to the live colour, the other stopped, the warm standby the start
    cancelled brought back for the rest of its period."""
    live = d.read_colors()["live"] or {}
    notes = []
    if live.get("color"):
        d.router().switch(d.target(str(live["color"])), check_target=False)
        d.pm.stop(d.app_names_of(other(str(live["color"]))))
        standby = data.get("standby_before")
        if standby:
            notes.append(bluegreen.restore_standby(d, standby))
        d.pm.save()
    _remove(d)
    return "; ".join(["undid an A/B split that was being started", *notes])


def _check(
    d: HostContext,
    a: str,
    b: str,
    percent: int,
    live: dict[str, Any] | None,
    current: str | None,
) -> None:
    if not d.env.strategy.coloured:
        raise UsageError(
            f"an A/B split needs a blue-green or canary environment; {d.env_name} uses"
            f" {d.env.strategy.value}"
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
    if len(d.env.hosts) > 1:
        raise UsageError(f"{d.env_name} has several hosts: A/B splits run on one host only")
    other_release = b if a == current else a
    if not isinstance(d.release_meta(other_release).get("schema"), dict):
        raise UsageError(
            f"{other_release} cannot be checked against {d.env_name}'s database: its schema"
            " was never recorded (it never went live, or an older slipway deployed it)"
        )
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
    """Per side since the split started, in all and per process: requests, 5xx,
    p50/p95, conversions."""
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
        by_process = {
            service.split("@", 1)[0].removesuffix(f"-{color}"): f
            for service, f in found["sides"].items()
            if service.split("@", 1)[0].endswith(f"-{color}")
        }
        result[name] = {
            "release": data[name]["release"],
            "color": color,
            **_summary(list(by_process.values())),
            # Each process apart too: frontend assets would hide a backend's errors.
            "processes": {p: _summary([f]) for p, f in sorted(by_process.items())},
        }
    return result


def _summary(found: list[dict[str, Any]]) -> dict[str, Any]:
    ms = [v for f in found for v in f["ms"]]
    requests = sum(f["requests"] for f in found)
    errors = sum(f["errors"] for f in found)
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "conversions": sum(f.get("conversions", 0) for f in found),
    }


def end(d: HostContext, keep: str) -> dict[str, Any]:
    """With the lock held: every request to the kept side, which must answer first; the
    other stops, or stays warm as the standby when the kept side becomes the live
    release (then backed up before, and recorded, as a deploy of it would be)."""
    data = read(d)
    if data is None or data.get("state") != "active":
        raise UsageError(f"{d.env_name} runs no A/B split")
    if keep not in ("a", "b"):
        raise UsageError(f"--keep {keep}: say a or b")
    kept = data[keep]
    problem = d.router().target_answers(d.target(kept["color"]))
    if problem or not d.color_online(kept["color"]):
        raise UsageError(
            f"--keep {keep}: {kept['release']} on {kept['color']} cannot take every request:"
            f" {problem or 'its processes are not online'}",
            hint="keep the other side",
        )
    data["figures"] = figures(d, data)
    live = d.read_colors()["live"] or {}
    backed_up = RunState()
    if kept["color"] != live.get("color"):
        # The kept release becomes live: its data's "before" is now (a later
        # rollback --restore-db must not go back to the backup of its first deploy).
        steps.backup(d, kept["release"], live.get("release"), backed_up)
    data.update(state="ending", keep=keep)
    _write(d, data)
    _finish_end(d, data)
    d.finish_backup(backed_up, keep=True)  # sealed (encrypted), retention applied
    return data


def _finish_end(d: HostContext, data: dict[str, Any]) -> None:
    """Idempotent: a killed ``end`` is completed by running this again."""
    kept, dropped = data[data["keep"]], data["b" if data["keep"] == "a" else "a"]
    colors = d.read_colors()
    live = colors["live"] or {}
    router = d.router()
    with d.step("switch"):
        router.switch(d.target(kept["color"]), check_target=False)
    if kept["color"] == live.get("color"):
        standby = colors["standby"] or {}
        if standby.get("color") != dropped["color"]:  # not the standby a rerun just made
            d.pm.stop(d.app_names_of(dropped["color"]))
            d.pm.save()
    else:
        _keep_other(d, kept["release"], kept["color"], live)
    _remove(d)
    d.audit(
        "split.ended",
        kept=kept["release"],
        dropped=dropped["release"],
        figures=data.get("figures"),
    )


def _keep_other(d: HostContext, release: str, color: str, live: dict[str, Any]) -> None:
    """The kept release was not live: it becomes live as a deploy of it would (record,
    schema remembered), the release it replaces warm for a rollback."""
    previous = live.get("release")
    d.deployment_id = uuid.uuid4().hex[:12]
    row = d.new_record(
        "split",
        ref=f"split end --keep {release}",
        release=release,
        previous=previous,
        commit=str(d.release_meta(release).get("commit", "")),
    )
    bluegreen.finish(d, release, color, previous, RunState(old_color=live.get("color")))
    with contextlib.suppress(SlipwayError):
        d.save_meta(release, schema=live_schema(d))
    row.update(status="succeeded", finished_at=time.time(), duration_s=0.0)
    d.record_event(row, "split.kept", release=release, previous=previous)


def settle_leftovers(d: HostContext) -> str | None:
    """A split a killed command was starting is undone; one it was ending is ended (or,
    when that cannot be done, every request goes to the live colour). An active split
    is left as it is. Returns what was done, for the output."""
    data = read(d)
    if data is None or data.get("state") == "active":
        return None
    if data.get("state") == "ending":
        try:
            _finish_end(d, data)
        except SlipwayError as exc:
            _undo_start(d, data)
            return f"could not finish ending the A/B split ({exc}): the live release serves"
        return f"finished ending the A/B split (kept {data['keep']})"
    return _undo_start(d, data)
