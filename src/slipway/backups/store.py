"""Backups of one environment's SQLite database on one host.

A backup is a one-step online copy (``Connection.backup``: consistent, the app's
writers are not blocked; never a file copy: docs/architecture.md, "SQLite facts"),
checked with ``integrity_check``, described by a manifest (:mod:`slipway.backups.manifest`), mode
0600, and encrypted with age when the environment lists recipients. A deploy's own
pre-deploy backup stays plaintext until the deploy ends (an automatic rollback needs
it at once) and is then sealed.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slipway.backups import manifest as mf
from slipway.commands import age
from slipway.commands import host as cmd
from slipway.config.model import BackupConfig
from slipway.errors import BackupError, SlipwayError, UsageError
from slipway.state.host import Layout, call
from slipway.transports.base import Transport

Manifests = list[dict[str, Any]]


class BackupStore:
    def __init__(
        self,
        transport: Transport,
        layout: Layout,
        env_name: str,
        config: BackupConfig,
        env: dict[str, str] | None = None,
    ) -> None:
        self.transport = transport
        self.layout = layout
        self.env_name = env_name
        self.config = config
        self.env = env or {}
        self.directory = config.path or layout.backups

    def _path(self, name: str) -> str:
        """``name`` inside the backups directory; anything else is refused (a manifest
        once named ``../../victim.txt`` and prune deleted it)."""
        bare = name.removeprefix(".")  # .scratch
        if not mf.is_plain_name(bare):
            raise BackupError(f"refusing backup file name {name!r}: not a plain file name")
        return f"{self.directory}/{name}"

    def path_of(self, manifest: dict[str, Any]) -> str:
        return self._path(manifest["file"])

    def remove(self, manifest: dict[str, Any]) -> None:
        self.transport.run(
            ["rm", "-f", "--", self.path_of(manifest), self._path(f"{manifest['id']}.json")]
        )

    # --- taking backups -----------------------------------------------------------------

    def create(
        self,
        db: str,
        *,
        reason: str,
        release: str | None,
        commit: str | None,
        deploying: str | None = None,
        quick: bool = False,
    ) -> dict[str, Any] | None:
        """Back up ``db`` now; None when there is no database yet. Not yet sealed.
        ``release`` and ``commit`` are what was live (whose data it is); ``deploying``
        names the release whose deploy it precedes (its id says so). ``quick``: only
        ``quick_check`` now, the full check later (:meth:`full_check`)."""
        at = time.time()
        name = mf.backup_id(reason, deploying or release, at)
        check = "quick_check" if quick else "integrity_check"
        dest = self._path(f"{name}.db")
        info = call(self.transport, "backup", db=db, dest=dest, check=check)
        if not info.get("exists"):
            return None
        manifest = mf.build(
            info,
            env=self.env_name,
            reason=reason,
            release=release,
            commit=commit,
            at=at,
            file=f"{name}.db",
        )
        if deploying:
            manifest["deploying"] = deploying
        self._write_manifest(manifest)
        return manifest

    def full_check(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The full ``integrity_check`` of a backup taken with ``quick_check`` (before it
        is sealed); the manifest says which check passed. Raises when it fails."""
        if manifest.get("check") != "quick_check" or manifest["encrypted"]:
            return manifest
        found = call(self.transport, "check", path=self._path(manifest["file"]))["integrity"]
        if found != "ok":
            raise BackupError(f"backup {manifest['id']} failed integrity_check: {found}")
        updated = {**manifest, "check": "integrity_check"}
        self._write_manifest(updated)
        return updated

    def seal(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Encrypt a plaintext backup for the configured recipients (if any)."""
        if manifest["encrypted"] or not self.config.age_recipients:
            return manifest
        plain = self._path(manifest["file"])
        sealed = f"{manifest['file']}.age"
        self.transport.run(
            age.encrypt(list(self.config.age_recipients), plain, self._path(sealed)),
            env=self.env,
        )
        self.transport.run(cmd.chmod("600", self._path(sealed)))
        digest = self.transport.run(["sha256sum", "--", self._path(sealed)]).stdout.split()[0]
        updated = {**manifest, "file": sealed, "encrypted": True, "file_sha256": digest}
        self._write_manifest(updated)
        self.transport.run(["rm", "-f", "--", plain])
        return updated

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, sort_keys=True)
        self.transport.put_text(text, self._path(f"{manifest['id']}.json"), mode=0o600)

    # --- reading them back -------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        """Every sound backup, newest first."""
        return self.scan()[0]

    def scan(self) -> tuple[Manifests, Manifests]:
        """Sound backups (newest first) and broken manifests (``name``, ``problems``):
        a manifest that is unreadable, misses a field or names a file outside this
        directory is reported and never followed: not restored, not pruned."""
        answer = call(self.transport, "manifests", dir=self.directory)
        sound: list[dict[str, Any]] = []
        broken = [{"name": name, "problems": ["not readable JSON"]} for name in answer["broken"]]
        for name, manifest in zip(answer["names"], answer["manifests"], strict=True):
            found = mf.problems(manifest, name)
            if found:
                broken.append({"name": name, "problems": found})
            else:
                sound.append(manifest)
        sound.sort(key=lambda m: m["created_at"], reverse=True)
        return sound, broken

    def get(self, backup_id: str) -> dict[str, Any]:
        manifests = self.list()
        for m in manifests:
            if m["id"] == backup_id:
                return m
        known = ", ".join(m["id"] for m in manifests[:5]) or "none"
        raise UsageError(
            f"no backup {backup_id!r} in {self.env_name}", hint=f"newest backups: {known}"
        )

    def latest(self, *, release: str | None = None, reason: str | None = None) -> dict[str, Any]:
        for m in self.list():
            if (release is None or m["release"] == release) and (
                reason is None or m["reason"] == reason
            ):
                return m
        what = " ".join(filter(None, [reason, f"of {release}" if release else None]))
        raise UsageError(f"no {what or ''} backup in {self.env_name}".replace("  ", " "))

    def before_deploy_of(self, release: str) -> dict[str, Any]:
        """The backup taken just before ``release`` was deployed (older manifests, which
        were labelled with the release deployed, are found too)."""
        for m in self.list():
            if m["reason"] == "pre-deploy" and m.get("deploying", m["release"]) == release:
                return m
        raise UsageError(f"no backup was taken before {release} was deployed in {self.env_name}")

    def newest_of_live(self) -> dict[str, Any]:
        """The newest backup of the live database: never a copy a restore set aside."""
        for m in self.list():
            if m["reason"] != "pre-restore":
                return m
        raise UsageError(
            f"no backup of the live database in {self.env_name}",
            hint="copies set aside by a restore are verified by id: slipway backup ENV list",
        )

    @property
    def scratch_root(self) -> str:
        return self._path(".scratch")

    @contextlib.contextmanager
    def scratch(self) -> Iterator[str]:
        """A private directory on the host for one command's decrypted copies and keys:
        0700 in a 0700 parent, files 0600, removed at the end; one a killed command left
        is removed by the next command (the host agent holds a lock on it while the
        command lives)."""
        held = self.transport.channel is not None
        entry = call(self.transport, "scratch_open", dir=self.scratch_root, hold=held)["path"]
        try:
            yield entry
        finally:
            with contextlib.suppress(SlipwayError):
                call(self.transport, "scratch_close", path=entry)

    def sweep_scratch(self) -> None:
        """Remove what killed commands left in the scratch directory."""
        call(self.transport, "scratch_sweep", dir=self.scratch_root)

    @contextlib.contextmanager
    def plaintext(self, manifest: dict[str, Any], identity: Path | None) -> Iterator[str]:
        """The host path of the backup's plaintext database (decrypted into a private
        scratch directory when encrypted; the identity is on the host only for that one
        command, in the same directory)."""
        if not manifest["encrypted"]:
            yield self._path(manifest["file"])
            return
        if identity is None:
            raise BackupError(
                f"backup {manifest['id']} is encrypted",
                hint="pass the age identity (private key) file with --identity",
            )
        with self.scratch() as scratch:
            key, plain = f"{scratch}/identity", f"{scratch}/decrypted.db"
            self.transport.put_text(identity.read_text(), key, mode=0o600)
            self.transport.put_text("", plain, mode=0o600)  # age keeps an existing mode
            result = self.transport.run(
                age.decrypt(key, self._path(manifest["file"]), plain), env=self.env, check=False
            )
            if not result.ok:
                raise BackupError(
                    f"cannot decrypt backup {manifest['id']}: {result.tail(3)}",
                    hint="is this the identity matching the environment's age_recipients?",
                )
            yield plain

    def verify(self, manifest: dict[str, Any], identity: Path | None) -> dict[str, Any]:
        """Restore into a scratch copy and check integrity, checksum and row counts."""
        if manifest["encrypted"]:
            found = self.transport.run(
                ["sha256sum", "--", self._path(manifest["file"])], check=False
            )
            digest = found.stdout.split()[0] if found.ok else None
            if digest != manifest.get("file_sha256"):
                return {
                    "ok": False,
                    "problems": ["the encrypted file's checksum differs from the manifest's"],
                }
        with self.plaintext(manifest, identity) as path, self.scratch() as scratch:
            copy = f"{scratch}/verify.db"
            return call(self.transport, "verify", path=path, manifest=manifest, scratch=copy)

    # --- retention ----------------------------------------------------------------------

    def prune(self, *, dry_run: bool = False, now: float | None = None) -> mf.RetentionPlan:
        manifests = self.list()
        plan = mf.retention(
            manifests,
            now=time.time() if now is None else now,
            days=self.config.retention_days,
            keep_last=self.config.keep_last,
        )
        if not dry_run:
            by_id = {m["id"]: m for m in manifests}
            for backup_id in plan.delete:
                self.remove(by_id[backup_id])
        return plan
