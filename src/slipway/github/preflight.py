"""``slipway preflight ENV --ref REF``: what must hold before a production deploy starts.

Each check gives one line; any failure stops the workflow before anything changes:

- the ref is a semantic-version tag ``vX.Y.Z`` (known to the local clone);
- its commit is on ``main`` (GitHub's compare: main is ahead of it, or identical);
- CI passed on that commit: every check run completed as success, neutral or skipped,
  and the combined commit status is success (or there are no statuses);
- the tag is newer than the release live on the host (when that one came from a tag);
- the actor may deploy (``deployers`` in the environment, besides GitHub's reviewers);
- the env file on the host has every ``required_env`` key.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from slipway.errors import SlipwayError
from slipway.github.api import GitHub
from slipway.state import records

if TYPE_CHECKING:
    from slipway.deploy.context import HostContext

SEMVER = re.compile(r"^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
GOOD_CONCLUSIONS = {"success", "neutral", "skipped"}


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.check:<10} {self.detail}"


def version(tag: str) -> tuple[int, int, int] | None:
    match = SEMVER.fullmatch(tag)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def tag_commit(repo: Path, tag: str) -> str | None:
    result = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "-q", f"refs/tags/{tag}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or None


def check_tag(repo: Path, ref: str) -> tuple[Finding, str | None]:
    if version(ref) is None:
        return Finding("tag", False, f"{ref!r} is not a version tag like v1.2.3"), None
    sha = tag_commit(repo, ref)
    if sha is None:
        return Finding("tag", False, f"tag {ref} does not exist (git fetch --tags?)"), None
    return Finding("tag", True, f"{ref} is commit {sha[:12]}"), sha


def check_on_main(gh: GitHub, ref: str, sha: str) -> Finding:
    status = gh.compare(sha, "main").get("status")
    if status in ("ahead", "identical"):
        return Finding("main", True, f"{ref} is on main")
    return Finding("main", False, f"{ref} ({sha[:12]}) is not on main (compare: {status})")


def check_ci(gh: GitHub, sha: str) -> Finding:
    runs = gh.check_runs(sha)
    combined = gh.combined_status(sha)
    bad = [
        f"{r.get('name')}: {r.get('conclusion') or r.get('status')}"
        for r in runs
        if r.get("status") != "completed" or r.get("conclusion") not in GOOD_CONCLUSIONS
    ]
    statuses = combined.get("statuses", [])
    if statuses and combined.get("state") != "success":
        bad += [
            f"{s.get('context')}: {s.get('state')}" for s in statuses if s.get("state") != "success"
        ]
    if not runs and not statuses:
        return Finding("ci", False, f"no CI result for {sha[:12]}: CI has not run on it")
    if bad:
        return Finding("ci", False, "CI did not pass: " + "; ".join(bad))
    return Finding("ci", True, f"{len(runs)} check runs and {len(statuses)} statuses passed")


def live_ref(d: HostContext) -> str | None:
    """The ref the live release was deployed from (a rollback to it, whose record's ref
    is ``rollback:<release>``, does not change where it came from)."""
    current = d.current_release()
    if current is None:
        return None
    for row in records.deployments(d.transport, d.layout, limit=200):
        if row.get("kind", "deploy") != "deploy":
            continue
        if row.get("release") == current and row.get("status") == "succeeded":
            ref = row.get("ref")
            return str(ref) if ref else None
    return None


def check_newer(d: HostContext, ref: str) -> Finding:
    live = live_ref(d)
    if live is None:
        return Finding("newer", True, "nothing live yet")
    wanted, running = version(ref), version(live)
    if running is None:
        return Finding("newer", True, f"the live release came from {live!r}, not a version tag")
    if wanted is not None and wanted > running:
        return Finding("newer", True, f"{ref} is newer than the live {live}")
    return Finding("newer", False, f"{ref} is not newer than the live {live}")


def check_actor(d: HostContext, actor: str) -> Finding:
    allowed = d.env.deployers
    if not allowed:
        return Finding("actor", True, f"{actor} (no deployers list; GitHub's reviewers decide)")
    if actor in allowed:
        return Finding("actor", True, f"{actor} may deploy {d.env_name}")
    return Finding(
        "actor", False, f"{actor} is not in {d.env_name}'s deployers ({', '.join(allowed)})"
    )


def check_env_file(d: HostContext) -> Finding:
    try:
        missing = d.missing_env_keys()
    except SlipwayError as exc:
        return Finding("env file", False, str(exc))
    if missing:
        return Finding("env file", False, f"the env file lacks: {', '.join(missing)}")
    return Finding("env file", True, f"has all {len(d.env.required_env)} required keys")


def run(d: HostContext, gh: GitHub, repo: Path, ref: str, actor: str) -> list[Finding]:
    """Every check, in order; GitHub checks are skipped when the tag itself is wrong."""
    tag, sha = check_tag(repo, ref)
    findings = [tag]
    if sha is not None:
        findings += [check_on_main(gh, ref, sha), check_ci(gh, sha)]
    findings += [check_newer(d, ref), check_actor(d, actor), check_env_file(d)]
    return findings
