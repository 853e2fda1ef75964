"""The design's monthly restore test, end to end: the backend started against a backup.

``verify`` proves a backup is a sound SQLite file with the expected rows; this proves
the app can run on it. A scratch copy of the backup (a sealed backup is never written,
so copying the file is safe) is handed to the live release's backend, started outside
the process manager on a free port (never the public ones, never the live database),
with its migrations applied to the copy as a deploy would. Its API and database checks
must pass; then the backend is stopped and the copy removed, whatever happened.
"""

from __future__ import annotations

import shlex
import time
from typing import TYPE_CHECKING, Any

from slipway.config.model import HttpCheck
from slipway.errors import BackupError, UsageError
from slipway.health.checks import http_check
from slipway.health.gate import wait_healthy
from slipway.state.host import call

if TYPE_CHECKING:
    from pathlib import Path

    from slipway.deploy.context import HostContext

# Runs the backend in the background and stops it (SIGTERM) when our stdin closes, so
# closing the handle ends the trial over SSH as well as locally.
_SUPERVISE = (
    'cd "$1" || exit 1; shift; "$@" & child=$!; cat >/dev/null; kill "$child"; wait "$child"'
)


def trial_checks(d: HostContext) -> list[HttpCheck]:
    """The backend's own readiness path plus the database checks the monitor uses."""
    backend = d.config.processes.get("backend")
    if backend is None:
        raise UsageError(f"{d.transport.name} runs no backend (roles): start the app on its host")
    found = [HttpCheck(name="api", path=backend.health_path)]
    wanted = set(d.env.monitor.database_checks)
    found += [
        c for c in d.config.health.comprehensive if c.name in wanted and c.process == "backend"
    ]
    return found


def start_app_on_copy(
    d: HostContext, manifest: dict[str, Any], identity: Path | None
) -> dict[str, Any]:
    release = d.current_release()
    if release is None:
        raise BackupError("nothing is deployed here: there is no backend to start on the copy")
    commit = str(d.release_meta(release).get("commit", "unknown"))
    with d.backups.scratch() as directory:
        scratch = f"{directory}/trial.db"
        with d.backups.plaintext(manifest, identity) as path:
            d.run(["cp", "--", path, scratch])
        return _run_on_copy(d, release, commit, scratch)


def _run_on_copy(d: HostContext, release: str, commit: str, scratch: str) -> dict[str, Any]:
    """Start ``release``'s backend on the copy at ``scratch`` and run the checks."""
    port = int(call(d.transport, "free_port")["port"])
    started = time.monotonic()
    spec = next(
        s
        for s in d.app_specs(release, commit, ports={"backend": port})
        if s.name == d.app_name("backend")
    )
    process = d.processes_of(release)["backend"]
    env = {**spec.env, **process.database_vars(scratch)}
    handle = d.transport.spawn(["sh", "-c", _SUPERVISE, "sh", spec.cwd, *spec.argv], env=env)
    try:
        health = d.config.health
        checks = [
            http_check(c, lambda _: d.transport.tunnel(port), health.timeout_seconds)
            for c in trial_checks(d)
        ]
        gate = wait_healthy(
            checks, passes=1, interval=health.interval_seconds, deadline=health.deadline_seconds
        )
    finally:
        handle.close()
    return {
        "ok": gate.ok,
        "release": release,
        "port": port,
        "seconds": round(time.monotonic() - started, 2),
        "checks": [r.__dict__ for r in gate.last],
        "summary": gate.summary(),
        "command": d.masker(shlex.join(spec.argv)),
    }
