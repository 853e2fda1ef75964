"""Hosts made of Linux network namespaces: each its own loopback, its own address on a
veth pair to this machine, its own sshd on port 22 and its own view of the deploy root.

Like separate machines, every host uses the same ports and the same root path: the
root is a bind mount made inside the host's mount namespace (``ip netns exec`` gives
each command one), so ``<root>`` on host 2 is ``<base>/host-2/root`` here and nobody
else's. Every program an SSH session starts (PM2, Traefik, the app) runs in its host's
namespaces. Traffic goes only to these addresses and to loopback. Needs root.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from sshd import SSHD_PATHS

SSH_PORT = 22


@dataclass(frozen=True)
class NsHost:
    index: int
    namespace: str
    address: str
    data: Path  # what the host sees at the fleet's root
    config: Path  # its sshd_config

    @property
    def spec(self) -> str:
        return f"{getpass.getuser()}@{self.address}:{SSH_PORT}"

    def pids(self) -> list[int]:
        out = subprocess.run(
            ["ip", "netns", "pids", self.namespace], capture_output=True, text=True, check=False
        ).stdout
        return [int(p) for p in out.split()]

    def kill_sshd(self) -> int:
        """Every sshd of this host (its listener and each session): its connections
        drop as on a host whose sshd died. Returns how many were killed."""
        killed = 0
        for pid in self.pids():
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm == "sshd" or comm.startswith("sshd-"):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        return killed

    def exec_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]


@dataclass(frozen=True)
class NsFleet:
    hosts: list[NsHost]
    root: Path  # the mount point: the same path on every host
    client_key: Path
    known_hosts: Path

    def ssh_table(self, env: str = "testing") -> str:
        return (
            f"[environments.{env}.ssh]\n"
            f'key = "{self.client_key}"\nknown_hosts = "{self.known_hosts}"\n'
        )

    def hosts_list(self) -> str:
        return "[" + ", ".join(f'"{h.spec}"' for h in self.hosts) + "]"


def require_netns() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns) for network-namespace hosts")
    if next((p for p in SSHD_PATHS if Path(p).exists()), None) is None:
        pytest.skip("needs openssh-server (sshd): apt-get install openssh-server")


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _keygen(path: Path) -> str:
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path))
    return path.with_suffix(".pub").read_text().strip()


def _wait_for_port(address: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((address, port)) == 0:
                return
        if proc.poll() is not None:
            raise RuntimeError(
                f"sshd on {address} exited: {proc.stderr.read() if proc.stderr else ''!r}"
            )
        time.sleep(0.05)
    raise RuntimeError(f"sshd on {address}:{port} did not listen within 15 s")


@contextmanager
def netns_fleet(base: Path, count: int) -> Iterator[NsFleet]:
    """``count`` hosts under ``base``; everything made is removed afterwards."""
    require_netns()
    sshd = next(p for p in SSHD_PATHS if Path(p).exists())
    tag = f"{os.getpid() % 100000}"
    subnet = 100 + os.getpid() % 100  # 10.<subnet>.<host>.0/30: apart from other runs
    base.mkdir(parents=True, exist_ok=True)
    root = base / "root"
    root.mkdir()
    client_pub = _keygen(base / "client_key")
    made: list[NsHost] = []
    procs: list[subprocess.Popen[bytes]] = []
    known: list[str] = []
    try:
        for i in range(count):
            host = _make_host(base, tag, subnet, i, client_pub, known)
            made.append(host)
            procs.append(start_sshd(host, sshd, root))
        (base / "known_hosts").write_text("".join(known))
        for host, proc in zip(made, procs, strict=True):
            _wait_for_port(host.address, SSH_PORT, proc)
        yield NsFleet(made, root, base / "client_key", base / "known_hosts")
    finally:
        for host in made:
            _remove_host(host)
        for proc in procs:
            proc.wait(timeout=10)


def _make_host(
    base: Path, tag: str, subnet: int, i: int, client_pub: str, known: list[str]
) -> NsHost:
    namespace, outside, inside = f"slw{tag}h{i}", f"sw{tag}o{i}", f"sw{tag}i{i}"
    address = f"10.{subnet}.{i}.2"
    directory = base / f"host-{i}"
    (directory / "root").mkdir(parents=True)
    _run("ip", "netns", "add", namespace)
    _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
    _run("ip", "link", "set", inside, "netns", namespace)
    _run("ip", "addr", "add", f"10.{subnet}.{i}.1/30", "dev", outside)
    _run("ip", "link", "set", outside, "up")
    _run("ip", "netns", "exec", namespace, "ip", "addr", "add", f"{address}/30", "dev", inside)
    _run("ip", "netns", "exec", namespace, "ip", "link", "set", inside, "up")
    _run("ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up")
    host_pub = _keygen(directory / "host_key")
    (directory / "authorized_keys").write_text(client_pub + "\n")
    key_type, key_data = host_pub.split()[:2]
    known.append(f"{address} {key_type} {key_data}\n")
    config = directory / "sshd_config"
    config.write_text(
        f"Port {SSH_PORT}\nListenAddress {address}\nHostKey {directory / 'host_key'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\n"
        f"StrictModes no\nPidFile {directory / 'sshd.pid'}\nSubsystem sftp internal-sftp\n"
        "MaxSessions 50\nMaxStartups 50\nPermitRootLogin prohibit-password\nLogLevel ERROR\n"
    )
    return NsHost(i, namespace, address, directory / "root", config)


def start_sshd(host: NsHost, sshd: str, root: Path) -> subprocess.Popen[bytes]:
    """The host's sshd, in its namespace, with the host's own directory at ``root``."""
    Path("/run/sshd").mkdir(exist_ok=True)
    script = 'mount --bind "$1" "$2" && exec "$3" -D -e -f "$4"'
    argv = ["sh", "-c", script, "sh", str(host.data), str(root), sshd, str(host.config)]
    return subprocess.Popen(host.exec_argv(*argv), stderr=subprocess.PIPE)


def restart_sshd(host: NsHost, root: Path) -> subprocess.Popen[bytes]:
    sshd = next(p for p in SSHD_PATHS if Path(p).exists())
    proc = start_sshd(host, sshd, root)
    _wait_for_port(host.address, SSH_PORT, proc)
    return proc


def _remove_host(host: NsHost) -> None:
    """Every process of the host (PM2, Traefik, the app, sshd), then its namespace (its
    end of the veth pair goes with it, and so does ours)."""
    for _ in range(3):
        pids = host.pids()
        if not pids:
            break
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    subprocess.run(["ip", "netns", "del", host.namespace], check=False, capture_output=True)
