"""The migration rehearsal: a release's migrations run on a copy before anything live changes.

After the build, a consistent snapshot of the live database is taken into a private
scratch directory (``<env>/.slipway/rehearsal``, 0700) and the new release's backend is
started on a copy of it, on a free port, outside the process manager (as ``backup verify
--start-app`` does). Its start-up migrations run against the copy; once it answers HTTP
(any status: the gate judges health later) it is stopped, and the copy is compared with
the snapshot: tables, columns, indexes and row counts
(:func:`slipway.deploy.database.classify`). The class decides the rest of the deploy:

- **destructive** is refused unless every table that loses rows is allowed
  (``--allow-data-loss``): the deploy fails here, and nothing live has changed;
- **breaking** (and allowed destructive) take the hold: no old code ever runs on the
  new schema, and no write is acknowledged by the old code after the backup;
- **unchanged** and **additive** keep the normal switch.

A backend that exits or never answers on the copy fails the deploy here as well, with
the last lines of its output: it would not have started live either. The backend is
stopped when slipway's end of its stdin closes, so a slipway killed mid-rehearsal takes
it down too; the next rehearsal clears the scratch directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shlex
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from slipway.commands import host as cmd
from slipway.config.model import ProcessKind
from slipway.deploy import database, venvs
from slipway.deploy.database import Classification, classify
from slipway.errors import DataLossRefused, RehearsalFailed
from slipway.state.host import call

if TYPE_CHECKING:
    from slipway.deploy.context import HostContext
    from slipway.deploy.source import Source
    from slipway.transports.base import Handle

LOG_LINES = 30  # lines of the backend's output kept for an error report
POLL_SECONDS = 0.03

# Runs the backend in a session of its own with its output in a log file; when our
# stdin closes (over SSH as well as locally) the whole session is sent SIGTERM, then
# SIGKILL 5 s later (a start command wrapped in ``sh -c`` or ``uv run`` dies too); prints
# the backend's exit code when it ends on its own. (A background job's stdin is
# /dev/null unless redirected: fd 3 keeps ours; dash's kill takes -PGID, not -- -PGID.)
_SUPERVISE = (
    'cd "$1" || exit 1; log=$2; shift 2; exec 3<&0;'
    ' setsid "$@" >"$log" 2>&1 </dev/null 3<&- & child=$!;'
    ' (cat <&3 >/dev/null; kill -TERM -"$child"; sleep 5; kill -KILL -"$child")'
    " >/dev/null 2>&1 &"
    ' exec 3<&-; wait "$child"; echo "exited $?"'
)


@dataclass(frozen=True)
class Rehearsal:
    """What the release's migrations did to a copy of the live database."""

    classification: Classification
    seconds: float
    allowed: tuple[str, ...] = ()  # destructive tables the deployer allowed to lose rows

    @property
    def holds(self) -> bool:
        return self.classification.holds

    def summary(self) -> str:
        allowed = f"; data loss allowed: {', '.join(self.allowed)}" if self.allowed else ""
        return self.classification.summary() + allowed

    def to_json(self) -> dict[str, Any]:
        return {
            **self.classification.to_json(),
            "seconds": round(self.seconds, 2),
            "allowed_data_loss": list(self.allowed),
        }


def scratch_dir(d: HostContext) -> str:
    return f"{d.layout.state_dir}/rehearsal"


def rehearse(
    d: HostContext, release: str, commit: str, allow_data_loss: tuple[str, ...] = ()
) -> Rehearsal | None:
    """Run ``release``'s migrations on a copy of the live database and classify them.
    None when there is nothing to rehearse (no database yet, or no Python process)."""
    process = _migrating_process(d, release)
    if process is None:
        return None
    scratch = scratch_dir(d)
    d.run(cmd.remove_tree(scratch))
    d.run(["mkdir", "-p", "-m", "0700", "--", scratch])
    started = time.monotonic()
    try:
        # Scratch copies: their structure is checked (quick_check), the full integrity
        # check and the live database's hash are not what a rehearsal asks.
        live = d.layout.database(d.env.database)
        before = call(d.transport, "backup", db=live, dest=f"{scratch}/a.db", check="quick_check")
        if not before.get("exists"):
            return None
        copy = f"{scratch}/b.db"
        d.run(["cp", "--", f"{scratch}/a.db", copy])
        _run_on_copy(d, release, commit, process, copy)
        after = call(d.transport, "describe", db=copy, check="quick_check", hash=False)
    finally:
        d.run(cmd.remove_tree(scratch), check=False)
    found = classify(before, after)
    wanted = {name.lower() for name in allow_data_loss}  # SQLite names ignore case
    allowed = tuple(t.table for t in found.lost() if t.table.lower() in wanted)
    return Rehearsal(found, time.monotonic() - started, allowed)


def backend_inputs(d: HostContext, source: Source) -> str | None:
    """A hash of what decides what the migrating backend does to the database: every
    file at the commit except those inside a non-Python process's own directory (a
    frontend's), its virtualenv's key, its configuration, the env file's values and
    the database path. Files outside the backend's directory count (a root-level
    migrations folder, a shared package), and so does a directory holding the
    backend's. None when it cannot be told (no Python process; a lock that installs
    the release's own code)."""
    python = venvs.python_processes(d)
    env_key = venvs.venv_key(d, source)
    if not python or env_key is None:
        return None
    process = python[0]

    def inside(path: str, directory: str) -> bool:
        return directory == "." or path == directory or path.startswith(directory + "/")

    others = [
        p.workdir
        for p in d.config.processes.values()
        if p.kind is not ProcessKind.PYTHON and not inside(process.workdir, p.workdir)
    ]
    files = [
        f"{path}\0{blob}"
        for path, blob in source.files()
        if not any(inside(path, other) for other in others)
    ]
    parts = [
        *files,
        env_key,
        json.dumps(process.model_dump(mode="json"), sort_keys=True),
        json.dumps(sorted(d.read_env_file().items())),
        d.env.database,
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def unchanged_since(d: HostContext, inputs: str | None, live: str | None) -> bool:
    """Is the backend to deploy the live release's, on the schema that release left?
    Then its migrations already ran on this database: there is nothing to rehearse. The
    schema check catches a database restored to an older state since (the same code
    would migrate it again)."""
    if inputs is None or live is None:
        return False
    meta = d.release_meta(live)
    if meta.get("backend_inputs") != inputs or "schema" not in meta:
        return False
    return bool(database.live_schema(d) == meta["schema"])


def refuse_data_loss(found: Rehearsal) -> None:
    """Refuse a release whose migrations lose rows in a table not allowed to."""
    refused = [t for t in found.classification.lost() if t.table not in found.allowed]
    if not refused:
        return
    tables = "; ".join(t.describe() for t in refused)
    names = ",".join(t.table for t in refused)
    raise DataLossRefused(
        f"this release's migrations lose data: {tables}",
        hint="fix the migration so it keeps the rows (copy them"
        f" into the new table), or deploy again with --allow-data-loss {names} to accept"
        " the loss (audited, notified, written up as an incident)",
    )


def _migrating_process(d: HostContext, release: str) -> str | None:
    """The process that owns the database: the first Python process (it is told
    where the database is)."""
    for name, process in d.processes_of(release).items():
        if process.kind is ProcessKind.PYTHON:
            return name
    return None


def _run_on_copy(d: HostContext, release: str, commit: str, process: str, copy: str) -> None:
    port = int(call(d.transport, "free_port")["port"])
    spec = next(
        s
        for s in d.app_specs(release, commit, ports={process: port})
        if s.name == d.app_name(process)
    )
    log = f"{scratch_dir(d)}/backend.log"
    env = {**spec.env, **d.processes_of(release)[process].database_vars(copy)}
    handle = d.transport.spawn(["sh", "-c", _SUPERVISE, "sh", spec.cwd, log, *spec.argv], env=env)
    d.emit("rehearse", "info", detail=f"{process} migrating a copy of the database on port {port}")
    try:
        problem = _wait_answering(d, handle, port, d.processes_of(release)[process].health_path)
    finally:
        handle.close()
    if problem is not None:
        tail = d.run(["tail", "-n", str(LOG_LINES), "--", log], check=False)
        raise RehearsalFailed(
            f"the release's {process} {problem} on a copy of the database"
            f" ({d.masker(shlex.join(spec.argv))}); last lines of its output:\n"
            + d.masker(tail.rstrip() or "(no output)"),
            hint="the release would not have started live either",
        )


def _wait_answering(d: HostContext, handle: Handle, port: int, path: str) -> str | None:
    """None once the backend answers HTTP on ``port``; else what went wrong."""
    deadline = time.monotonic() + d.config.health.deadline_seconds
    local = d.transport.tunnel(port)
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            code = handle.exit_code(0)
            if code is not None:
                return f"exited (code {_exit_code(handle, code)}) before it answered"
            with contextlib.suppress(httpx.HTTPError):
                client.get(f"http://127.0.0.1:{local}{path}")
                return None
            time.sleep(POLL_SECONDS)
    return f"did not answer within {d.config.health.deadline_seconds:g}s"


def _exit_code(handle: Handle, shell_code: int) -> str:
    """The backend's own exit code, which the supervising shell printed."""
    line = handle.readline(0.5)
    if line and line.startswith("exited "):
        return line.removeprefix("exited ")
    return str(shell_code)
