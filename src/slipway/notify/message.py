"""What a notification says, independent of where it goes.

The design lists the contents: on success the environment, commit, duration, health
results and URLs; on failure the environment, the failed stage, the error's last lines,
the rollback status and what to do next. Builders here take plain values (already masked
by the caller) and return a :class:`Notification`; :mod:`slipway.notify.formats` turns
it into Slack blocks, a Discord embed or Markdown for Apprise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from slipway.config.model import NotifyEvent
from slipway.health.checks import CheckResult

ERROR_LINES = 15  # the last lines of a failure's output shown in a notification


@dataclass(frozen=True)
class Notification:
    event: NotifyEvent
    env: str
    title: str
    ok: bool  # green or red
    fields: list[tuple[str, str]] = field(default_factory=list)
    details: str = ""  # preformatted: the error's last lines, or check results
    next_steps: str = ""
    url: str | None = None

    def text(self) -> str:
        """A plain-text rendering: the fallback text and the audit's copy."""
        lines = [self.title, *(f"{k}: {v}" for k, v in self.fields)]
        if self.details:
            lines.append(self.details)
        if self.next_steps:
            lines.append(f"Next: {self.next_steps}")
        if self.url:
            lines.append(self.url)
        return "\n".join(lines)


def last_lines(text: str, count: int = ERROR_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-count:])


def health_lines(results: Sequence[CheckResult]) -> str:
    return "\n".join(
        f"{'ok  ' if r.ok else 'FAIL'} {r.name:<12} {r.latency_ms:7.1f} ms {r.error or ''}".rstrip()
        for r in results
    )


def deployed(
    *,
    project: str,
    env: str,
    release: str,
    commit: str,
    message: str,
    actor: str,
    seconds: float,
    checks: Sequence[CheckResult],
    url: str | None,
    extra: Sequence[tuple[str, str]] = (),
) -> Notification:
    subject = message.strip().splitlines()[0] if message.strip() else ""
    return Notification(
        event=NotifyEvent.SUCCESS,
        env=env,
        title=f"{project}: {release} deployed to {env}",
        ok=True,
        fields=[
            ("Environment", env),
            ("Release", release),
            ("Commit", f"{commit[:12]} {subject}".strip()),
            ("By", actor),
            ("Duration", f"{seconds:.1f}s"),
            *extra,
        ],
        details=health_lines(checks),
        url=url,
    )


def deploy_failed(
    *,
    project: str,
    env: str,
    release: str,
    commit: str,
    actor: str,
    step: str,
    error: str,
    rolled_back: bool,
    rollback: str,
    url: str | None,
) -> Notification:
    status = "rolled back, the previous release serves" if rolled_back else "ROLLBACK INCOMPLETE"
    if rolled_back:
        todo = f"fix the cause and deploy again; details: slipway logs {env}, slipway status {env}"
    else:
        todo = f"act now: slipway status {env}, then slipway rollback {env}"
    return Notification(
        event=NotifyEvent.FAILURE,
        env=env,
        title=f"{project}: deploy of {release} to {env} FAILED at {step}",
        ok=False,
        fields=[
            ("Environment", env),
            ("Failed step", step),
            ("Release", release),
            ("Commit", commit[:12]),
            ("By", actor),
            ("Rollback", f"{status}: {rollback}" if rollback else status),
        ],
        details=last_lines(error),
        next_steps=todo,
        url=url,
    )


def rolled_back(
    *,
    project: str,
    env: str,
    release: str,
    previous: str | None,
    actor: str,
    seconds: float,
    notes: str,
    url: str | None,
) -> Notification:
    return Notification(
        event=NotifyEvent.ROLLBACK,
        env=env,
        title=f"{project}: {env} rolled back to {release}",
        ok=True,
        fields=[
            ("Environment", env),
            ("Now live", release),
            ("Replaced", previous or "-"),
            ("By", actor),
            ("Duration", f"{seconds:.1f}s"),
        ],
        details=notes,
        next_steps="find the cause before deploying the replaced release again",
        url=url,
    )


def rollback_failed(
    *, project: str, env: str, target: str, actor: str, error: str, url: str | None
) -> Notification:
    return Notification(
        event=NotifyEvent.ROLLBACK,
        env=env,
        title=f"{project}: rollback of {env} to {target} FAILED",
        ok=False,
        fields=[("Environment", env), ("Target", target), ("By", actor)],
        details=last_lines(error),
        next_steps=f"slipway status {env}; the release that was live was started again",
        url=url,
    )


def alert(
    *,
    project: str,
    env: str,
    name: str,
    firing: bool,
    value: str,
    threshold: str,
    since: str,
    url: str | None,
) -> Notification:
    state = "FIRING" if firing else "resolved"
    return Notification(
        event=NotifyEvent.ALERT,
        env=env,
        title=f"{project}: {env} alert {name} {state}",
        ok=not firing,
        fields=[
            ("Environment", env),
            ("Alert", name),
            ("Value", value),
            ("Threshold", threshold),
            ("Since", since),
        ],
        next_steps=f"slipway monitor {env} --once; slipway health {env}" if firing else "",
        url=url,
    )


def test_message(*, project: str, env: str, actor: str, url: str | None) -> Notification:
    return Notification(
        event=NotifyEvent.SUCCESS,
        env=env,
        title=f"{project}: test notification for {env}",
        ok=True,
        fields=[("Environment", env), ("Sent by", actor)],
        details="slipway notify test: if you can read this, this channel works.",
        url=url,
    )
