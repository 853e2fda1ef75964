"""Incident reports: what happened in a failed deploy or a rollback, as Markdown.

Written on the host next to the records (``.slipway/incidents/<time>-<id>.md``, mode
0600) so an operator, a workflow run or a later GitHub issue can attach it. Every text
in it has already passed through the deploy's Masker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slipway.commands import host as cmd

if TYPE_CHECKING:
    from slipway.deploy.context import HostContext


@dataclass(frozen=True)
class Incident:
    env: str
    kind: str  # "failed deploy" | "rollback"
    deployment_id: str
    actor: str
    release: str
    previous: str | None
    commit: str
    failed_step: str | None
    error: str
    outcome: str  # what the rollback did
    rolled_back: bool
    backup: str | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    at: float = field(default_factory=time.time)
    previous_commit: str | None = None  # the previous release's own commit


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def render(incident: Incident) -> str:
    """The report's Markdown (pure: tests compare it)."""
    state = "previous release serving" if incident.rolled_back else "ROLLBACK INCOMPLETE"
    lines = [
        f"# Incident: {incident.kind} in {incident.env} ({state})",
        "",
        f"- **When:** {_when(incident.at)}",
        f"- **Deployment:** `{incident.deployment_id}` by {incident.actor}",
        f"- **Release:** `{incident.release}` (commit `{incident.commit[:12]}`)",
        f"- **Previous release:** `{incident.previous or '-'}`"
        + (f" (commit `{incident.previous_commit[:12]}`)" if incident.previous_commit else ""),
        f"- **Failed step:** {incident.failed_step or '-'}",
        f"- **Backup:** {incident.backup or 'none taken'}",
        "",
        "## Timeline",
        "",
        "| time | step | seconds | result |",
        "|---|---|---|---|",
    ]
    for step in incident.steps:
        at = time.strftime("%H:%M:%S", time.gmtime(step.get("at", incident.at)))
        result = "ok" if step.get("ok") else "**failed**"
        lines.append(f"| {at} | {step['step']} | {step['seconds']} | {result} |")
    lines += ["", "## Error", "", "```", incident.error.strip() or "-", "```", ""]
    lines += ["## Rollback", "", incident.outcome or "-", ""]
    return "\n".join(lines)


def write(d: HostContext, incident: Incident) -> str:
    """Save the report on the host and audit it; returns its path."""
    directory = f"{d.layout.state_dir}/incidents"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(incident.at))
    path = f"{directory}/{stamp}-{incident.deployment_id}.md"
    d.transport.run(cmd.mkdir_p(directory))
    text = d.masker(render(incident))
    d.transport.put_text(text, path, mode=0o600)
    d.last_incident = (path, text)
    d.audit("incident.written", path=path, kind=incident.kind)
    return path
