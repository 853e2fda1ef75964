"""``slipway split ENV start|status|end``: two kept releases side by side (A/B)."""

from __future__ import annotations

import re
from typing import Any

import click

from slipway.cli.context import echo_json, echo_json_line, loaded_config
from slipway.cli.hosts import host_session
from slipway.cli.output import Progress
from slipway.deploy import recovery, split, targets
from slipway.deploy.context import HostContext
from slipway.deploy.rollback import kept_releases

COOKIE = re.compile(r"[A-Za-z0-9_]{1,40}")
PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,200}")


@click.command(name="split")
@click.argument("environment")
@click.argument("action", type=click.Choice(["start", "status", "end"]))
@click.option("--a", "side_a", default=None, help="start: release A (id, prefix, tag, commit).")
@click.option("--b", "side_b", default=None, help="start: release B.")
@click.option(
    "--percent",
    type=click.IntRange(1, 99),
    default=50,
    show_default=True,
    help="start: the share of clients sent to B.",
)
@click.option(
    "--cookie",
    default=None,
    help="start: the cookie that keeps a client on its side (default: one named after"
    " this split).",
)
@click.option(
    "--conversion-path",
    default=None,
    help="start: a path whose 2xx answers count as conversions (e.g. /api/checkout);"
    " answers the app marks with an X-Slipway-Conversion header always count.",
)
@click.option("--keep", type=click.Choice(["a", "b"]), default=None, help="end: the side kept.")
@click.option("--actor", default=None, help="Who acts (default: your user name).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def command(
    ctx: click.Context,
    environment: str,
    action: str,
    side_a: str | None,
    side_b: str | None,
    percent: int,
    cookie: str | None,
    conversion_path: str | None,
    keep: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Run two kept releases of ENVIRONMENT side by side, each client kept on its side.

    \b
    start   one of --a/--b is the live release; the other starts on the free colour,
            must pass the health gate, then gets --percent of the clients (a cookie
            keeps each client on its side). Both share the database, so the other
            release must fit the live schema. Deploys and rollbacks are refused
            until the split ends.
    status  per side since the start: requests, 5xx share, p50/p95, conversions
            (answers marked X-Slipway-Conversion, or 2xx at --conversion-path)
    end     --keep a|b: every request to the kept side, which must answer first;
            keeping the release that was not live makes it live (backed up before,
            recorded; the other stays warm for a rollback)

    start and end show their steps as they go (with --json: JSON Lines, one per step,
    then {"event": "result", ...}). One host only. Exit codes: 0 done, 1 a failure
    (a start that failed was undone), 2 bad usage (nothing changed), 3 the
    environment's lock is held.

    \b
    Example:
      slipway split production start --a v1.4.0 --b v1.5.0 --percent 10 \\
          --conversion-path /api/checkout
      slipway split production status
      slipway split production end --keep b
    """
    loaded = loaded_config(ctx)
    _check_options(action, side_a, side_b, keep, cookie, conversion_path)
    report = []
    progress = Progress(as_json=as_json, color=not ctx.obj["no_color"])
    for d in host_session(loaded, environment, actor=actor, emit=progress):
        if action == "status":
            found = split.read(d)
            result: dict[str, Any] = {"host": d.transport.name, "split": found}
            if found is not None and found.get("state") == "active":
                result["figures"] = split.figures(d, found)
        else:
            result = {
                "host": d.transport.name,
                "split": _change(d, action, side_a, side_b, keep, percent, cookie, conversion_path),
            }
        report.append(result)
        if not as_json:
            click.echo(_describe(d, result))
    if as_json and action == "status":
        echo_json(report if len(report) > 1 else report[0])
    elif as_json:  # JSON Lines, as deploy's: the steps, then the result
        echo_json_line({"event": "result", **report[0]})


def _check_options(
    action: str,
    side_a: str | None,
    side_b: str | None,
    keep: str | None,
    cookie: str | None,
    conversion_path: str | None,
) -> None:
    if action == "start" and not (side_a and side_b):
        raise click.UsageError("start needs --a RELEASE and --b RELEASE")
    if action == "end" and keep is None:
        raise click.UsageError("end needs --keep a or --keep b")
    if cookie is not None and not COOKIE.fullmatch(cookie):
        raise click.UsageError(f"--cookie {cookie!r}: A-Z, a-z, 0-9 and _ only (at most 40)")
    if conversion_path is not None and not (
        conversion_path.startswith("/")
        and conversion_path.isprintable()
        and " " not in conversion_path
    ):
        raise click.UsageError(
            f"--conversion-path {conversion_path!r}: a path such as /api/checkout"
        )


def _change(
    d: HostContext,
    action: str,
    side_a: str | None,
    side_b: str | None,
    keep: str | None,
    percent: int,
    cookie: str | None,
    conversion_path: str | None,
) -> dict[str, Any]:
    lock = recovery.take_lock(d, ref=f"split {action}", reason=f"split {action}", wait=0)
    try:
        if action == "end":
            return split.end(d, str(keep))
        kept = kept_releases(d)
        a = targets.resolve(str(side_a), kept, d.env_name, "--a").release
        b = targets.resolve(str(side_b), kept, d.env_name, "--b").release
        return split.start(d, a, b, percent, cookie, conversion_path)
    finally:
        lock.release()


def _describe(d: HostContext, result: dict[str, Any]) -> str:
    found = result["split"]
    if found is None:
        return f"{d.transport.name}: no A/B split in {d.env_name}"
    lines = [
        f"{d.transport.name}: A {found['a']['release']} ({found['a']['color']}) /"
        f" B {found['b']['release']} ({found['b']['color']}), {found['percent']}% to B,"
        f" {found['state']}" + (f", kept {found['keep']}" if found.get("keep") else "")
    ]
    for name, f in (result.get("figures") or {}).items():
        lines.append(f"  {name.upper()} {_line(f)}")
        if len(f["processes"]) > 1:
            lines += [f"    {p}: {_line(pf)}" for p, pf in f["processes"].items()]
    return "\n".join(lines)


def _line(f: dict[str, Any]) -> str:
    return (
        f"{f['requests']} req, {f['error_rate']:.1%} 5xx, p50 {f['p50_ms']} ms,"
        f" p95 {f['p95_ms']} ms, {f['conversions']} conversions"
    )
