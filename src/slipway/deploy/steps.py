"""The strategy-neutral steps of a deploy: nothing here changes what serves.

upload (``git archive`` of the resolved commit into a new release directory), link (the
env file, mode 0600, must hold every required key; the database directory), install
(the virtualenv shared with earlier releases of the same lock, or made; ``npm ci`` or
the previous release's ``node_modules`` when the lock file is unchanged), build (the
frontend, or the previous build when its sources and build-time variables are
unchanged; the release's run spec is saved), backup (a one-step online SQLite backup),
and the deployer-side hooks. The strategy's steps
(start, health, switch, watch, promote) follow them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import shlex
import subprocess
from typing import TYPE_CHECKING, Any

from slipway.commands import host as cmd
from slipway.config.model import ProcessConfig, ProcessKind
from slipway.deploy import runspec, venvs
from slipway.deploy.context import PUBLIC_BUILD, RELEASE_META
from slipway.errors import SlipwayError
from slipway.project.node import detect_node, read_next
from slipway.state.host import call

if TYPE_CHECKING:
    from slipway.deploy.context import HostContext
    from slipway.deploy.run import RunState
    from slipway.deploy.source import Source


def upload(d: HostContext, source: Source, release: str) -> None:
    archive = source.archive()
    target = d.layout.release(release)
    remote_tar = f"{target}.tar"
    try:
        d.run(cmd.mkdir_p(target, d.layout.shared, d.layout.logs))
        d.transport.put(archive, remote_tar, mode=0o600)
        d.run(cmd.extract_tar(remote_tar, target))
        meta = {"commit": source.commit, "ref": source.ref, "message": source.message}
        d.transport.put_text(json.dumps(meta), f"{target}/{RELEASE_META}")
    finally:
        archive.unlink(missing_ok=True)
        d.transport.run(cmd.remove_tree(remote_tar), check=False)


def mask_env_file_early(d: HostContext) -> None:
    """Know the secrets before hooks run; a missing file is reported by the link step."""
    with contextlib.suppress(SlipwayError):
        d.read_env_file()


def link_shared(d: HostContext, release: str) -> None:
    values = d.read_env_file()
    missing = [key for key in d.env.required_env if not values.get(key)]
    if missing:
        raise SlipwayError(
            f"env file {d.env_file_path()} lacks required keys: {', '.join(missing)}"
        )
    path = d.env_file_path()
    if path is not None:
        d.run(cmd.chmod("600", path))
        target = f"{d.layout.release(release)}/{d.env.env_file}"
        d.run(["ln", "-sfn", path, target])
    db_dir = d.layout.database(d.env.database).rsplit("/", 1)[0]
    d.run(cmd.mkdir_p(db_dir))


def reuse(
    d: HostContext, source: Source, release: str, previous: str | None, path: str, what: str
) -> bool:
    """Hard-link the frontend's ``path`` from the previous release when its inputs
    (lock file for node_modules; sources and build-time env for the build) are
    unchanged. Releases stay immutable: hard links share files, never directories."""
    frontend = d.config.processes.get("frontend")
    key = content_key(d, source, what)
    if frontend is None or key is None:
        return False
    # The previous release first; blue-green alternates colours, so a build for this
    # colour is usually the one before it.
    kept = [r for r in reversed(d.list_releases()) if r not in (release, previous)]
    for candidate in [previous, *kept][:4]:
        if candidate is None or d.release_meta(candidate).get(what) != key:
            continue
        src = f"{d.workdir(candidate, frontend)}/{path}"
        if not d.transport.run(["test", "-e", src], check=False).ok:
            continue
        d.run(cmd.hardlink_copy(src, f"{d.workdir(release, frontend)}/{path}"))
        return True
    return False


def content_key(d: HostContext, source: Source, what: str) -> str | None:
    frontend = d.config.processes.get("frontend")
    if frontend is None:
        return None
    if what == "node_modules":
        deps = detect_node(source, frontend.workdir)
        if deps is None or deps.lock is None or not lock_is_local(deps.lock, frontend.workdir):
            return None  # a workspace's lock: packages hoisted above the workdir
        return source.tree(deps.lock)
    tree = source.tree(frontend.workdir)
    if tree is None:
        return None
    env = json.dumps(d.build_env(frontend), sort_keys=True)
    return hashlib.sha256(f"{tree}\n{env}".encode()).hexdigest()


def lock_is_local(lock: str, workdir: str) -> bool:
    """Is the lock the workdir's own? Reuse links only ``<workdir>/node_modules``; a
    workspace keeps packages in the root's, which that would miss."""
    folder = posixpath.dirname(lock)
    return folder == ("" if workdir in (".", "") else workdir.strip("/"))


def install_argv(source: Source, process: ProcessConfig) -> list[str] | None:
    """The configured ``install``, else what the lock file says (npm, pnpm or yarn)."""
    if process.install:
        return list(process.install)
    if process.kind is not ProcessKind.NODE:
        return None
    deps = detect_node(source, process.workdir)
    return list(deps.install) if deps is not None else None


def install(d: HostContext, source: Source, release: str, previous: str | None) -> None:
    done = venvs.install(d, source, release)
    if done:
        d.emit("install", "info", detail=f"python: {done}")
    for name, process in d.config.processes.items():
        argv = install_argv(source, process)
        if argv is None:
            continue
        if name == "frontend" and reuse(
            d, source, release, previous, "node_modules", "node_modules"
        ):
            d.emit("install", "info", detail=f"{name}: node_modules unchanged, reused")
        else:
            d.run(argv, cwd=d.workdir(release, process), timeout=900)
    key = content_key(d, source, "node_modules")
    if key:
        d.save_meta(release, node_modules=key)


def build(d: HostContext, source: Source, release: str, previous: str | None) -> None:
    for name, process in d.config.processes.items():
        if not process.build:
            continue
        workdir = d.workdir(release, process)
        if name == "frontend" and reuse(d, source, release, previous, ".next", "build"):
            d.emit("build", "info", detail=f"{name}: sources unchanged, build reused")
            continue
        d.run(process.build, cwd=workdir, env_extra=d.build_env(process))
        next_app = read_next(source, process.workdir)
        if next_app is not None and next_app.standalone:
            complete_standalone(d, workdir)
    key = content_key(d, source, "build")
    if key:
        d.save_meta(release, build=key, built_for=PUBLIC_BUILD)
    runspec.save(
        d.transport,
        d.layout.release(release),
        d.configured_processes(),
        list(d.read_env_file()),
    )


def complete_standalone(d: HostContext, workdir: str) -> None:
    """A Next.js ``output: "standalone"`` build serves ``public/`` and ``.next/static``
    only when they are copied beside its ``server.js`` (Next leaves that to the
    deployer, as its documentation says)."""
    standalone = f"{workdir}/.next/standalone"
    if not d.transport.run(["test", "-f", f"{standalone}/server.js"], check=False).ok:
        raise SlipwayError(
            f'{workdir}: next.config sets output "standalone" but the build made no'
            " .next/standalone/server.js"
        )
    for src, dest in (
        (f"{workdir}/public", f"{standalone}/public"),
        (f"{workdir}/.next/static", f"{standalone}/.next/static"),
    ):
        if d.transport.run(["test", "-d", src], check=False).ok:
            d.run(cmd.remove_tree(dest))
            d.run(["cp", "-a", "--", src, dest])


def backup(d: HostContext, release: str, live: str | None, state: RunState) -> None:
    """Always taken (the automatic rollback restores from it); sealed (encrypted) and
    subject to retention when the deploy ends. Labelled with the release that was live
    (and its commit): the data is that release's. Its description (rows, schema,
    migrations) is the "before" a failed release is judged against: one pass over the
    live database, not two. Only ``quick_check`` runs here; the full integrity check
    follows once the deploy is over (``finish_backup``)."""
    db = d.layout.database(d.env.database)
    # The database holds the app's data: its owner's only (or database_group's).
    call(d.transport, "db_modes", db=db, group=d.env.database_group)
    commit = d.release_meta(live).get("commit") if live else None
    manifest = d.backups.create(
        db, reason="pre-deploy", release=live, commit=commit, deploying=release, quick=True
    )
    if manifest is None:
        state.db_before = {"exists": False}
        d.emit("backup", "info", detail="no database yet: nothing to back up")
        return
    state.db_before = described_by(manifest)
    state.backup = manifest
    state.backup_path = d.backups.path_of(manifest)
    d.emit(
        "backup",
        "info",
        detail=f"{state.backup_path} ({manifest['size']} bytes, {manifest['seconds']}s)",
    )


def described_by(manifest: dict[str, Any]) -> dict[str, Any]:
    """A backup's manifest as the host helper's ``describe`` of the database it copied."""
    keys = ("tables", "schema", "schema_version", "schema_hash", "migrations", "integrity")
    return {"exists": True, **{key: manifest.get(key) for key in keys}}


def run_hooks(d: HostContext, which: str, source: Source, release: str) -> None:
    hooks = getattr(d.env.hooks, which)
    env = {
        "SLIPWAY_ENV": d.env_name,
        "SLIPWAY_REF": source.ref,
        "SLIPWAY_COMMIT": source.commit,
        "SLIPWAY_RELEASE": release,
        "SLIPWAY_ACTOR": d.actor,
        "SLIPWAY_HOOK": which,
    }
    for argv in hooks:
        with d.step(f"hook {which}"):
            result = subprocess.run(
                argv,
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                cwd=d.loaded.base_dir,
                check=False,
            )
            if result.returncode != 0:
                tail = d.masker((result.stdout + result.stderr).strip()[-800:])
                command = d.masker(shlex.join(argv))
                raise SlipwayError(
                    f"{which} hook failed (exit {result.returncode}): {command}\n{tail}",
                    hint="nothing was changed" if which == "pre_deploy" else None,
                )
