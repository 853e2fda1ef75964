"""The SSH transport: one asyncssh connection per host, reused for every step.

asyncssh is asynchronous; slipway's deploy code is sequential, so the connection lives
on a private event loop thread and each call waits for its result. Host keys are checked
against known_hosts unless the configuration explicitly turns that off. Commands are
argv lists joined with ``shlex.join`` (each word quoted), never strings with user input.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shlex
import threading
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from slipway.config.model import HostSpec, SshConfig
from slipway.errors import TransportError
from slipway.secrets import Masker
from slipway.transports.base import Handle, Transport

SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"

T = TypeVar("T")


def remote_command(
    argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None
) -> str:
    """The shell line for ``argv``: ``env [-C cwd] K=V... argv``, every word quoted."""
    words: list[str] = []
    if env or cwd:
        words.append("env")
        if cwd:
            words += ["-C", cwd]
        words += [f"{key}={value}" for key, value in (env or {}).items()]
    words += list(argv)
    return shlex.join(words)


class SshHandle(Handle):
    def __init__(self, transport: SshTransport, process: Any) -> None:
        self._t = transport
        self._process = process

    def readline(self, timeout: float) -> str | None:
        async def read() -> str | None:
            try:
                line: str = await asyncio.wait_for(self._process.stdout.readline(), timeout)
            except TimeoutError:
                return None
            return line.rstrip("\n") if line else None

        return self._t._call(read())

    def exit_code(self, timeout: float) -> int | None:
        if timeout <= 0:  # a poll: the transport's event loop thread records the exit
            status = self._process.exit_status
            return None if status is None else int(status)

        async def wait() -> int | None:
            try:
                done = await asyncio.wait_for(self._process.wait(), timeout)
            except TimeoutError:
                return None
            code = done.exit_status
            return int(code) if code is not None else 255

        return self._t._call(wait())

    def write(self, text: str) -> None:
        async def send() -> None:
            self._process.stdin.write(text)
            await self._process.stdin.drain()

        try:
            self._t._call(send())
        except (OSError, asyncssh.Error) as exc:
            raise TransportError(f"the command's stdin is closed: {exc}") from exc

    def close(self) -> None:
        async def stop() -> None:
            self._process.stdin.write_eof()
            self._process.close()

        if not self._t.closed:
            self._t._call(stop())


def _ip_or_empty(address: str) -> str:
    """``address`` when it is an IP address (known_hosts may list it by address), else
    "": asyncssh's lookup wants an address there, never a name."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return ""


PREFERRED_CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]


class SshTransport(Transport):
    name = "ssh"

    def __init__(self, host: HostSpec, ssh: SshConfig, masker: Masker | None = None) -> None:
        super().__init__(masker)
        self.name = str(host)  # which host, in output and in the audit heads' keys
        self.host = host
        self.ssh = ssh
        self.closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._tunnels: dict[int, int] = {}
        self._conn: Any = self._call(self._connect())

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _known_hosts_files(self) -> list[str]:
        """slipway's own known_hosts: the configured file, else the user's and the
        system's default files, whatever ``~/.ssh/config`` says (a
        ``UserKnownHostsFile none`` there once let an unknown host in)."""
        if self.ssh.known_hosts:
            return [os.path.expanduser(self.ssh.known_hosts)]
        defaults = [os.path.expanduser("~/.ssh/known_hosts"), SYSTEM_KNOWN_HOSTS]
        return [path for path in defaults if os.path.exists(path)]

    def _trusted_keys(self) -> asyncssh.SSHKnownHosts:
        files = self._known_hosts_files()
        if not files:
            raise TransportError(
                f"{self.host}: no known_hosts file to verify its host key against"
                " (~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts)",
                hint="set environments.<env>.ssh.known_hosts to a file holding the host's"
                " key, checked out of band (on the host: `ssh-keygen -lf"
                " /etc/ssh/ssh_host_ed25519_key.pub`)",
            )
        try:
            text = "".join(Path(path).read_text() + "\n" for path in files)
            return asyncssh.import_known_hosts(text)
        except (OSError, ValueError, asyncssh.Error) as exc:
            raise TransportError(f"{self.host}: cannot read known_hosts {files}: {exc}") from exc

    async def _connect(self) -> Any:
        known_hosts: Any = self._trusted_keys() if self.ssh.verify_host_keys else None
        options: dict[str, Any] = {
            "port": self.host.port,
            "known_hosts": known_hosts,
            "connect_timeout": self.ssh.connect_timeout_seconds,
            "keepalive_interval": 5,
            "keepalive_count_max": 3,
            # AES-GCM first: asyncssh builds a new ChaCha20 cipher object per packet,
            # which cost a fleet deploy about a fifth of its CPU; both are AEAD ciphers
            # every OpenSSH server offers. Anything else asyncssh supports stays after.
            "encryption_algs": PREFERRED_CIPHERS
            + [
                alg.decode()
                for alg in asyncssh.encryption.get_encryption_algs()
                if alg.decode() not in PREFERRED_CIPHERS
            ],
        }
        if self.host.user:
            options["username"] = self.host.user
        if self.ssh.key:
            options["client_keys"] = [os.path.expanduser(self.ssh.key)]
        try:
            return await asyncssh.connect(self.host.address, **options)
        except asyncssh.HostKeyNotVerifiable as exc:
            raise TransportError(
                f"{self.host}: host key not verified ({exc.reason}): "
                + await self._fingerprints(known_hosts),
                hint="check the host's key out of band before trusting it: on the host,"
                " `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints its fingerprint;"
                " add the key to known_hosts only if it matches what `ssh-keyscan` offers",
            ) from exc
        except asyncssh.PermissionDenied as exc:
            raise TransportError(
                f"{self.host}: SSH authentication failed",
                hint="check the user and the key (environments.<env>.ssh.key)",
            ) from exc
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            raise TransportError(
                f"{self.host}: cannot use the SSH key {self.ssh.key}: {exc}",
                hint="environments.<env>.ssh.key must be an unencrypted OpenSSH private key"
                " file (or use ssh-agent)",
            ) from exc
        except (OSError, asyncssh.Error) as exc:
            raise TransportError(f"{self.host}: cannot connect: {exc}") from exc

    async def _fingerprints(self, known: asyncssh.SSHKnownHosts) -> str:
        """Both sides of a refused host key: the one presented, the ones trusted."""
        address = str(self.host.address)
        try:
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(address, self.host.port),
                self.ssh.connect_timeout_seconds,
            )
        except (OSError, asyncssh.Error):  # TimeoutError is an OSError
            key = None
        presented = key.get_fingerprint() if key else "no key (it could not be read again)"
        trusted = [
            k.get_fingerprint()
            for k in known.match(address, _ip_or_empty(address), self.host.port)[0]
        ]
        files = ", ".join(self._known_hosts_files())
        expected = ", ".join(trusted) if trusted else "no key for this host"
        return f"it presented {presented}; {files} has {expected}"

    def _run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None,
        cwd: str | None,
        stdin: bytes | None,
        timeout: float,
    ) -> tuple[int, str, str]:
        async def go() -> tuple[int, str, str]:
            try:
                result = await self._conn.run(
                    remote_command(argv, env, cwd), input=stdin, timeout=timeout, encoding=None
                )
            except asyncssh.TimeoutError as exc:
                return 124, _text(exc.stdout), f"timed out after {timeout:.0f}s"
            except (OSError, asyncssh.Error) as exc:
                raise TransportError(f"{self.host}: connection lost: {exc}") from exc
            code = result.exit_status if result.exit_status is not None else 255
            return int(code), _text(result.stdout), _text(result.stderr)

        return self._call(go())

    def spawn(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Handle:
        async def start() -> Any:
            return await self._conn.create_process(remote_command(argv, env), encoding="utf-8")

        return SshHandle(self, self._call(start()))

    def put(self, local: Path, remote: str, *, mode: int = 0o644) -> None:
        self._put(local.read_bytes(), remote, mode)

    def put_text(self, text: str, remote: str, *, mode: int = 0o644) -> None:
        self._put(text.encode(), remote, mode)

    def _put(self, data: bytes, remote: str, mode: int) -> None:
        async def go() -> None:
            tmp = f"{remote}.tmp-{uuid.uuid4().hex[:8]}"  # two writers never share one
            async with self._conn.start_sftp_client() as sftp:
                async with sftp.open(tmp, "wb", asyncssh.SFTPAttrs(permissions=mode)) as f:
                    await f.write(data)
                    with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                        await f.fsync()  # OpenSSH's fsync@openssh.com: survive a reboot
                await sftp.chmod(tmp, mode)
                await sftp.posix_rename(tmp, remote)

        try:
            self._call(go())
        except (OSError, asyncssh.Error) as exc:
            raise TransportError(f"{self.host}: cannot write {remote}: {exc}") from exc

    def tunnel(self, port: int) -> int:
        if port not in self._tunnels:

            async def forward() -> int:
                listener = await self._conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", port)
                return int(listener.get_port())

            self._tunnels[port] = self._call(forward())
        return self._tunnels[port]

    def close(self) -> None:
        if self.closed:
            return
        self.close_channel()
        self.closed = True

        async def shut() -> None:
            self._conn.close()
            await self._conn.wait_closed()

        try:
            self._call(shut())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)


def _text(data: Any) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return str(data)
