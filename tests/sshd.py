"""A real OpenSSH server on 127.0.0.1 with its own host key and authorized_keys."""

from __future__ import annotations

import getpass
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import free_port

SSHD_PATHS = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    wrong_known_hosts: Path

    @property
    def host(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@contextmanager
def running_sshd(base: Path) -> Iterator[SshServer]:
    sshd = next((p for p in SSHD_PATHS if Path(p).exists()), None)
    if sshd is None or shutil.which("ssh-keygen") is None:
        pytest.skip("needs openssh-server (sshd) and ssh-keygen: apt-get install openssh-server")
    base.mkdir(parents=True, exist_ok=True)
    host_pub = _keygen(base / "host_key")
    client_pub = _keygen(base / "client_key")
    other_pub = _keygen(base / "other_key")
    (base / "authorized_keys").write_text(client_pub + "\n")
    port = free_port()
    key_type, key_data = host_pub.split()[:2]
    (base / "known_hosts").write_text(f"[127.0.0.1]:{port} {key_type} {key_data}\n")
    other_type, other_data = other_pub.split()[:2]
    (base / "wrong_known_hosts").write_text(f"[127.0.0.1]:{port} {other_type} {other_data}\n")
    config = base / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\n"
        f"AuthorizedKeysFile {base / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\n"
        f"StrictModes no\nPidFile {base / 'sshd.pid'}\nSubsystem sftp internal-sftp\n"
        "MaxSessions 50\nMaxStartups 50\nPermitRootLogin prohibit-password\nLogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                raise RuntimeError(
                    f"sshd exited: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
            time.sleep(0.05)
        yield SshServer(
            port,
            getpass.getuser(),
            base / "client_key",
            base / "known_hosts",
            base / "wrong_known_hosts",
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
