"""Over SSH to a real OpenSSH server: transport contract, host keys, deploy, lock."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apprepo import make_repo, write_config, write_env_file
from sshd import SshServer, running_sshd
from support import TOOLS_BIN, require_binary, run_cli, stop_pm2

from slipway.config import load_config
from slipway.config.model import SshConfig, parse_host
from slipway.deploy.engine import Deployer
from slipway.errors import CommandFailed, DeployFailed, LockHeld, TransportError
from slipway.secrets import Masker
from slipway.state import records
from slipway.state.host import Layout
from slipway.state.lock import DeployLock, force_release, is_held
from slipway.transports import connect
from slipway.transports import ssh as ssh_module
from slipway.transports.local import LocalTransport
from slipway.transports.ssh import SshTransport

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as srv:
        yield srv


def ssh_config(server: SshServer, **kw) -> SshConfig:
    return SshConfig(key=str(server.client_key), known_hosts=str(server.known_hosts), **kw)


def transport(server: SshServer, masker: Masker | None = None) -> SshTransport:
    t = connect(parse_host(server.host), ssh_config(server), masker)
    assert isinstance(t, SshTransport)
    return t


@pytest.mark.parametrize("kind", ["local", "ssh"])
def test_transport_contract(server: SshServer, tmp_path: Path, kind: str):
    """The same behaviour from both transports (one contract suite)."""
    t = (
        LocalTransport(Masker(["s3cret-value"]))
        if kind == "local"
        else transport(server, Masker(["s3cret-value"]))
    )
    with t:
        result = t.run(["printf", "%s|%s", "a b", "$(id)"])
        assert result.stdout == "a b|$(id)" and result.ok
        assert t.run(["pwd"], cwd=str(tmp_path)).stdout.strip() == str(tmp_path)
        assert t.run(["sh", "-c", 'printf %s "$FOO"'], env={"FOO": "x y"}).stdout == "x y"
        assert t.run(["cat"], stdin=b"in put").stdout == "in put"
        with pytest.raises(CommandFailed) as info:
            t.run(["sh", "-c", "echo s3cret-value; exit 3"])
        assert info.value.exited == 3
        assert "s3cret-value" not in str(info.value) and "*****" in str(info.value)
        assert t.run(["false"], check=False).exited == 1
        assert t.run(["sleep", "5"], timeout=0.5, check=False).exited == 124
        target = tmp_path / f"file-{kind}"
        t.put_text("hello", str(target), mode=0o600)
        assert target.read_text() == "hello"
        assert oct(target.stat().st_mode & 0o777) == "0o600"
        src = tmp_path / "src.bin"
        src.write_bytes(b"\x00\x01")
        t.put(src, str(tmp_path / f"copy-{kind}"))
        assert (tmp_path / f"copy-{kind}").read_bytes() == b"\x00\x01"
        handle = t.spawn(["sh", "-c", "echo ready; exec cat >/dev/null"])
        assert handle.readline(timeout=5) == "ready"
        assert handle.exit_code(timeout=0.2) is None
        handle.close()


def test_unknown_host_key_is_refused(server: SshServer):
    bad = SshConfig(key=str(server.client_key), known_hosts=str(server.wrong_known_hosts))
    with pytest.raises(TransportError) as info:
        connect(parse_host(server.host), bad)
    assert "host key not verified" in str(info.value)
    # Both fingerprints, so the user can compare the presented one out of band.
    presented = _fingerprint(server.known_hosts.parent / "host_key.pub")
    trusted = _fingerprint(server.known_hosts.parent / "other_key.pub")
    assert f"it presented {presented}; {server.wrong_known_hosts} has {trusted}" in str(info.value)
    hint = info.value.hint or ""
    assert "known_hosts" in hint and "out of band" in hint
    assert ">> known_hosts" not in hint  # never "trust whatever key is presented"


def _fingerprint(public_key: Path) -> str:
    line = subprocess.run(
        ["ssh-keygen", "-lf", str(public_key)], capture_output=True, text=True, check=True
    ).stdout
    return line.split()[1]  # "256 SHA256:... comment (ED25519)"


def test_host_keys_are_verified_whatever_the_users_ssh_config_says(
    server: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """With no ssh.known_hosts and `UserKnownHostsFile none` in ~/.ssh/config, slipway
    once connected to a host it had never seen."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        "Host *\n  UserKnownHostsFile none\n  StrictHostKeyChecking no\n"
    )
    monkeypatch.setenv("HOME", str(home))
    no_file = SshConfig(key=str(server.client_key))
    monkeypatch.setattr(ssh_module, "SYSTEM_KNOWN_HOSTS", str(tmp_path / "none"))
    with pytest.raises(TransportError, match="no known_hosts file to verify its host key"):
        connect(parse_host(server.host), no_file)
    (home / ".ssh" / "known_hosts").write_text(server.wrong_known_hosts.read_text())
    with pytest.raises(TransportError, match="host key not verified"):
        connect(parse_host(server.host), no_file)
    (home / ".ssh" / "known_hosts").write_text(server.known_hosts.read_text())
    with connect(parse_host(server.host), no_file) as t:  # the user's default file
        assert t.run(["true"]).ok


def test_wrong_client_key_is_refused(server: SshServer, tmp_path: Path):
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True
    )
    bad = SshConfig(key=str(tmp_path / "k"), known_hosts=str(server.known_hosts))
    with pytest.raises(TransportError, match="authentication failed"):
        connect(parse_host(server.host), bad)


def test_nothing_listening_is_a_clear_error(server: SshServer):
    from support import free_port

    config = SshConfig(known_hosts=str(server.known_hosts), connect_timeout_seconds=2)
    with pytest.raises(TransportError, match="cannot connect"):
        connect(parse_host(f"root@127.0.0.1:{free_port()}"), config)


def test_tunnel_reaches_a_host_port(server: SshServer):
    import http.server
    import threading

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with transport(server) as t:
            local = t.tunnel(httpd.server_address[1])
            assert local != httpd.server_address[1]
            assert httpx.get(f"http://127.0.0.1:{local}/").status_code == 200
            assert t.tunnel(httpd.server_address[1]) == local  # reused
    finally:
        httpd.shutdown()


HOLDER = """
import sys, time
from slipway.config.model import SshConfig, parse_host
from slipway.state.host import Layout
from slipway.state.lock import DeployLock
from slipway.transports import connect
t = connect(parse_host(sys.argv[1]), SshConfig(key=sys.argv[2], known_hosts=sys.argv[3]))
DeployLock(t, Layout(sys.argv[4], "testing")).acquire(actor="killed", ref="v1", reason="deploy")
print("held", flush=True)
time.sleep(600)
"""


def test_lock_is_freed_when_the_holder_is_killed_over_ssh(server: SshServer, tmp_path: Path):
    require_binary("flock")
    root = str(tmp_path / "srv")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER,
            server.host,
            str(server.client_key),
            str(server.known_hosts),
            root,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        layout = Layout(root, "testing")
        with transport(server) as t:
            assert is_held(t, layout)
            with pytest.raises(LockHeld, match="killed@"):
                DeployLock(t, layout).acquire(actor="me", ref="v2", reason="deploy")
            proc.kill()  # SIGKILL: no cleanup, the TCP connection just dies
            proc.wait()
            started = time.monotonic()
            while is_held(t, layout) and time.monotonic() - started < 15:
                time.sleep(0.1)
            freed_after = time.monotonic() - started
            assert not is_held(t, layout)
            assert freed_after < 15
            lock = DeployLock(t, layout)
            lock.acquire(actor="me", ref="v2", reason="deploy")
            assert not lock.lost()
            # `slipway lock --release --force`: the holder ends, and the deploy that
            # held the lock sees it is lost (a poll over the SSH channel, no wait).
            assert force_release(t, layout) is not None
            deadline = time.monotonic() + 10
            while not lock.lost() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert lock.lost()
            lock.release()
            assert not is_held(t, layout)
    finally:
        proc.kill()


def test_deploy_and_rollback_over_ssh(server: SshServer, tmp_path: Path):
    require_binary("pm2", path=str(TOOLS_BIN))
    repo = make_repo(tmp_path / "repo")
    root = tmp_path / "srv"
    ssh = (
        "[environments.testing.ssh]\n"
        f'key = "{server.client_key}"\nknown_hosts = "{server.known_hosts}"\n'
    )
    config = write_config(repo, root, hosts=f'["{server.host}"]', ssh=ssh)
    write_env_file(root, "API_TOKEN=ssh-secret-123\n")
    loaded = load_config(config)
    env = loaded.config.environment("testing")
    try:
        with connect(env.parsed_hosts()[0], env.ssh, Masker()) as t:
            outcome = Deployer(loaded, "testing", t, actor="ssh-tester").deploy("v1")
            assert outcome.status == "succeeded"
            health = httpx.get(f"http://127.0.0.1:{env.ports.backend}/health").json()
            assert health["release"] == outcome.release
            with pytest.raises(DeployFailed) as info:
                Deployer(loaded, "testing", t).deploy("broken/health500")
            assert info.value.step == "health" and info.value.rolled_back
            assert "ssh-secret-123" not in str(info.value)
            again = httpx.get(f"http://127.0.0.1:{env.ports.backend}/health").json()
            assert again["release"] == outcome.release
            rows = records.deployments(t, Layout(str(root), "testing"))
            assert [r["status"] for r in rows] == ["rolled_back", "succeeded"]
    finally:
        stop_pm2(root / "pm2")


def test_unverified_host_keys_are_warned_about_on_every_run(
    server: SshServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`verify_host_keys = false` connects (a throwaway test's setting) and says so on
    every command; with verification on, nothing is said."""
    repo = make_repo(tmp_path / "repo")
    for verify, warned in (("false", True), ("true", False)):
        ssh = (
            "[environments.testing.ssh]\n"
            f'key = "{server.client_key}"\nknown_hosts = "{server.known_hosts}"\n'
            f"verify_host_keys = {verify}\n"
        )
        config = write_config(repo, tmp_path / "srv", hosts=f'["{server.host}"]', ssh=ssh)
        code, _, err = run_cli(["--config", str(config), "status", "testing"], capsys)
        assert code == 0, err
        assert ("host keys are not verified" in err) is warned, err
        assert "Traceback" not in err and "host key not verified" not in err


def test_a_refused_key_of_a_host_given_by_name_shows_both_fingerprints(
    server: SshServer, tmp_path: Path
) -> None:
    """asyncssh's lookup wants an address where slipway passed the host's name: a
    mismatch on any host given by name was an internal error instead of this message."""
    other = server.wrong_known_hosts.read_text().split(maxsplit=1)[1]
    known = tmp_path / "known_hosts"
    known.write_text(f"[localhost]:{server.port} {other}")
    config = SshConfig(key=str(server.client_key), known_hosts=str(known))
    with pytest.raises(TransportError) as info:
        connect(parse_host(f"{server.user}@localhost:{server.port}"), config)
    presented = _fingerprint(server.known_hosts.parent / "host_key.pub")
    trusted = _fingerprint(server.known_hosts.parent / "other_key.pub")
    assert f"it presented {presented}; {known} has {trusted}" in str(info.value)
