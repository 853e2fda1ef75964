"""``slipway metrics [ENV]``: DORA figures from the hosts' deployment records."""

from __future__ import annotations

import time

import click

from slipway.cli.context import echo_json, loaded_config
from slipway.cli.hosts import host_session
from slipway.deploy.engine import Deployer
from slipway.metrics.dora import Metrics, compute, parse_since
from slipway.metrics.export import prometheus, to_csv
from slipway.state import records


def human_duration(seconds: float) -> str:
    """``4.2s``, ``3m 12s``, ``2h 5m``, ``9d 13h``: two units at most, as people read
    them (a lead time once printed as ``34428760.6s``)."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    units = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
    first = next(i for i, (_, size) in enumerate(units) if whole >= size)
    (big, big_size), (small, small_size) = units[first], units[first + 1]
    count, rest = divmod(whole, big_size)
    smaller = rest // small_size
    return f"{count}{big} {smaller}{small}" if smaller else f"{count}{big}"


def _fmt(value: float | None, unit: str = "s") -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value * 100:.1f}%"
    return human_duration(value)


def _fix_window(text: str) -> float:
    """``off`` (the default: a "fix:" commit alone marks nothing failed) or a window."""
    return 0.0 if text.strip().lower() in ("off", "0") else parse_since(text)


def _warn_unless_verified(deployer: Deployer, name: str) -> None:
    """Figures from records edited behind slipway's back would lie (a deleted failure
    makes a 0 % failure rate): say so whenever the audit chain does not hold."""
    report = records.verify(deployer.transport, deployer.layout)
    if not report["ok"]:
        click.echo(
            f"warning: {name} on {deployer.transport.name}: the records fail verification"
            f" ({report['problems'][0]}); these figures may be wrong: run"
            f" `slipway audit {name} --verify`",
            err=True,
        )


@click.command(name="metrics")
@click.argument("environment", required=False)
@click.option("--since", default="30d", show_default=True, help="Window: 90m, 12h, 30d, 4w.")
@click.option(
    "--fix-window",
    default="off",
    show_default=True,
    help="Also count a deploy as a change failure when one whose commit message starts"
    " with fix, hotfix or revert followed it within this window (e.g. 60m). Off by"
    " default: only rollbacks count.",
)
@click.option(
    "--explain",
    is_flag=True,
    help="List each change failure with the rule that counted it and its evidence.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "prometheus", "csv"]),
    default="table",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_context
def command(
    ctx: click.Context,
    environment: str | None,
    since: str,
    fix_window: str,
    explain: bool,
    fmt: str,
    as_json: bool,
) -> None:
    """Deployment frequency, duration, failure rate, change failure rate, time to
    restore and lead time, per environment (default: every deployed one).

    Read from the records on each environment's first host; definitions in the README.
    A change failure is a release a later rollback moved away from (and, with
    --fix-window, one a fix/hotfix/revert commit followed); --explain names each.
    """
    loaded = loaded_config(ctx)
    window, fix = parse_since(since), _fix_window(fix_window)
    names = (
        [environment]
        if environment
        else [name for name, env in loaded.config.environments.items() if env.root is not None]
    )
    now = time.time()
    results: list[Metrics] = []
    for name in names:
        for deployer in host_session(loaded, name):
            rows = records.deployments(deployer.transport, deployer.layout, 100_000)
            results.append(compute(rows, env=name, now=now, window_s=window, fix_window_s=fix))
            _warn_unless_verified(deployer, name)
            break  # every host of an environment holds the same deploys
    fmt = "json" if as_json else fmt
    if fmt == "json":
        echo_json([m.as_dict() for m in results])
    elif fmt == "prometheus":
        click.echo(prometheus(results), nl=False)
    elif fmt == "csv":
        click.echo(to_csv(results), nl=False)
    else:
        for m in results:
            click.echo(
                f"{m.env} (last {m.window_days:g} days): {m.successful} successful of"
                f" {m.deploys} deploys, {m.rollbacks} manual rollbacks\n"
                f"  frequency        {m.deploys_per_day:.2f}/day, {m.deploys_per_week:.2f}/week\n"
                f"  duration         median {_fmt(m.duration_median_s)},"
                f" p95 {_fmt(m.duration_p95_s)}\n"
                f"  failure rate     {_fmt(m.failure_rate, '%')}\n"
                f"  change failures  {_fmt(m.change_failure_rate, '%')} ({m.change_failures})\n"
                f"  time to restore  median {_fmt(m.time_to_restore_median_s)}"
                f" ({m.restores} restores)\n"
                f"  lead time        median {_fmt(m.lead_time_median_s)}"
            )
            if explain:
                _explain(m)


def _explain(m: Metrics) -> None:
    if not m.change_failure_list:
        click.echo("  no change failures: no rollback moved away from a release")
    for c in m.change_failure_list:
        click.echo(
            f"  - {c['release']} ({c['deployment_id']}): {c['rule']}, by {c['evidence']};"
            f" restored after {human_duration(c['restored_after_s'])}"
        )
