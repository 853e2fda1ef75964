"""supervisor (supervisord, Python's own process manager) behind the same interface as
PM2, for hosts that would rather not run Node for it.

slipway runs its own supervisord per user, in ``SUPERVISOR_HOME`` (the environment's
``supervisor_home``, default ``~/.slipway-supervisor``, 0700): a ``supervisord.conf``
that includes ``apps/*.conf``, one file per app (0600: it holds the app's environment),
and a unix socket only its owner can use. Starting an app writes its file and runs
``supervisorctl update`` for exactly that name; stopping stops it, removes the file and
updates again, so the files on disk are always the set of running apps: what
supervisord starts at boot is what ran (``save`` has nothing to write). As with PM2,
only slipway's exact app names are ever given, never ``all``.

The mapping of PM2's settings: ``stopsignal = INT`` and ``stopwaitsecs`` from the
kill timeout (the app drains, then is killed), ``startsecs = 1`` and ``startretries``
from ``max_restarts`` (a process that dies within 1 s that many times in a row is
``FATAL``: a crash loop), ``autorestart`` for a crash after that. ``start`` returns once
no app it started is still ``STARTING`` (about a second): PM2 calls a process online as
soon as it runs, and the checks right after a start (the router's, in blue-green's
watch) must not see "launching" where PM2 would say online. supervisor keeps no
restart count, so a crash loop shows as its ``BACKOFF``/``FATAL`` state instead.
Blue-green's router runs under it like any app; the standby's retirement job runs
:meth:`Supervisor.stop_commands`.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Mapping, Sequence

from slipway.errors import SlipwayError
from slipway.processes.base import AppSpec, ProcessManager, ProcessState
from slipway.transports.base import Transport

DEFAULT_HOME = "~/.slipway-supervisor"
MIN_UPTIME_SECONDS = 1
MAX_SOCKET_PATH = 107  # sockaddr_un.sun_path is 108 bytes with its NUL

# supervisorctl's state names -> the states slipway's checks know (see ProcessState).
STATES = {
    "RUNNING": "online",
    "STARTING": "launching",
    "BACKOFF": "errored",  # died while starting; retrying: a crash loop in the making
    "FATAL": "errored",
    "STOPPING": "stopping",
    "STOPPED": "stopped",
    "EXITED": "stopped",
    "UNKNOWN": "unknown",
}
_STATUS_LINE = re.compile(r"^(?P<name>\S+)\s+(?P<state>[A-Z]+)\s*(?P<rest>.*)$")
_PID = re.compile(r"pid (\d+)")


def _escape(text: str) -> str:
    """supervisor expands ``%(name)s`` in its files: a literal ``%`` is ``%%``."""
    return text.replace("%", "%%")


def _env_value(key: str, value: str) -> str:
    """One ``environment`` value, quoted as supervisor's parser reads it (a shlex in
    non-POSIX mode: a value is taken whole between one kind of quote, with no escapes).
    A value that holds both quotes or a line break cannot be written: refused by name."""
    if "\n" in value or "\r" in value or "\x00" in value:
        raise SlipwayError(f"supervisor cannot pass {key}: its value holds a line break")
    if '"' not in value:
        return f'"{_escape(value)}"'
    if "'" not in value:
        return f"'{_escape(value)}'"
    raise SlipwayError(
        f"supervisor cannot pass {key}: its value holds both kinds of quote",
        hint='use process_manager = "pm2", or change the value',
    )


def program(app: AppSpec) -> str:
    """The ``[program:<name>]`` file for ``app`` (pure; tests read it back)."""
    env = ",".join(f"{key}={_env_value(key, value)}" for key, value in app.env.items())
    lines = [
        f"[program:{app.name}]",
        f"command={_escape(shlex.join(app.argv))}",
        f"directory={_escape(app.cwd)}",
        "autostart=true",
        "autorestart=true",
        f"startsecs={MIN_UPTIME_SECONDS}",
        f"startretries={app.max_restarts}",
        "stopsignal=INT",
        f"stopwaitsecs={max(1, app.kill_timeout_ms // 1000)}",
        "stopasgroup=true",
        "killasgroup=true",
        f"stdout_logfile={_escape(app.log_dir)}/{app.name}.out.log",
        f"stderr_logfile={_escape(app.log_dir)}/{app.name}.err.log",
        "stdout_logfile_maxbytes=10MB",
        "stderr_logfile_maxbytes=10MB",
    ]
    if env:
        lines.append(f"environment={env}")
    return "\n".join(lines) + "\n"


def daemon_config(home: str) -> str:
    """supervisord's own file: a socket only its owner may use, apps from ``apps/``."""
    return "\n".join(
        [
            "[unix_http_server]",
            f"file={home}/supervisor.sock",
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={home}/supervisord.log",
            f"pidfile={home}/supervisord.pid",
            f"childlogdir={home}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{home}/supervisor.sock",
            "",
            "[include]",
            f"files = {home}/apps/*.conf",
            "",
        ]
    )


def parse_status(text: str, names: Sequence[str]) -> dict[str, ProcessState]:
    """``supervisorctl status NAME...`` lines -> states (``missing`` when not known)."""
    found: dict[str, ProcessState] = {}
    for line in text.splitlines():
        match = _STATUS_LINE.match(line.strip())
        if not match or match["name"] not in names or match["state"] not in STATES:
            continue
        pid = _PID.search(match["rest"])
        found[match["name"]] = ProcessState(
            match["name"], STATES[match["state"]], int(pid.group(1)) if pid else None, 0
        )
    for name in names:
        found.setdefault(name, ProcessState(name, "missing", None, 0))
    return found


class Supervisor(ProcessManager):
    def __init__(self, transport: Transport, env: Mapping[str, str]) -> None:
        self.transport = transport
        self.env = dict(env)
        self._home: str | None = None

    @property
    def home(self) -> str:
        """``SUPERVISOR_HOME`` made absolute on the host (``~`` is the host user's)."""
        if self._home is None:
            given = self.env.get("SUPERVISOR_HOME") or DEFAULT_HOME
            if given.startswith("~"):
                home = self.transport.run(["sh", "-c", 'printf %s "$HOME"'], env=self.env)
                given = home.stdout.strip() + given[1:]
            self._home = given.rstrip("/")
        return self._home

    def _ctl(self, *args: str, check: bool = True) -> str:
        conf = f"{self.home}/supervisord.conf"
        result = self.transport.run(
            ["supervisorctl", "-c", conf, *args], env=self.env, check=False, timeout=180
        )
        if check and not result.ok:
            said = self.transport.masker((result.stdout + result.stderr).strip())
            raise SlipwayError(f"supervisorctl {' '.join(args)} failed: {said}")
        return result.stdout

    def ensure_daemon(self) -> None:
        """supervisord running for this home (started once, as PM2's daemon is)."""
        home = self.home
        socket_path = f"{home}/supervisor.sock"
        if len(socket_path.encode()) > MAX_SOCKET_PATH:
            raise SlipwayError(
                f"{socket_path} is {len(socket_path.encode())} bytes: longer than a unix"
                f" socket's path may be ({MAX_SOCKET_PATH})",
                hint="set supervisor_home to a shorter path",
            )
        self.transport.run(["mkdir", "-p", "-m", "700", "--", f"{home}/apps"], env=self.env)
        self.transport.run(["chmod", "700", "--", home], env=self.env)
        self.transport.put_text(daemon_config(home), f"{home}/supervisord.conf", mode=0o600)
        if self._running():
            return
        self.transport.run(["supervisord", "-c", f"{home}/supervisord.conf"], env=self.env)
        deadline = time.monotonic() + 15
        while not self._running():  # it answers once its socket is up
            if time.monotonic() > deadline:
                raise SlipwayError(f"supervisord did not start: see {home}/supervisord.log")
            time.sleep(0.1)

    def _running(self) -> bool:
        return self._ctl("pid", check=False).strip().isdigit()

    def start(self, apps: Sequence[AppSpec], config_path: str) -> None:
        """Write each app's file, then ``update`` those names: supervisord starts them
        (asynchronously, as PM2 does; the health gate waits for them)."""
        self.ensure_daemon()
        for app in apps:
            _check_name(app.name)
            self.transport.put_text(program(app), f"{self.home}/apps/{app.name}.conf", mode=0o600)
        self.transport.put_text(
            "".join(program(app) + "\n" for app in apps), config_path, mode=0o600
        )
        names = [app.name for app in apps]
        self._ctl("update", *names)
        deadline = time.monotonic() + MIN_UPTIME_SECONDS + 5
        while time.monotonic() < deadline:
            states = self.status(names).values()
            # Just after update an app may not be spawned yet (STOPPED): wait for it too.
            if not any(state.status in ("launching", "stopped") for state in states):
                return  # running, or failed (the gate says so)
            time.sleep(0.1)

    def stop(self, names: Sequence[str]) -> None:
        """Stop (SIGINT, then SIGKILL after the kill timeout) and forget exactly these
        apps; returns once they have exited. Absent ones are fine."""
        present = [n for n, s in self.status(names).items() if s.status != "missing"]
        if not present:
            return
        for name in present:
            _check_name(name)
        self._ctl("stop", *present, check=False)  # an already-stopped app is an "error"
        files = [f"{self.home}/apps/{name}.conf" for name in present]
        self.transport.run(["rm", "-f", "--", *files], env=self.env)
        self._ctl("update", *present)

    def status(self, names: Sequence[str]) -> dict[str, ProcessState]:
        if not names:
            return {}
        conf = f"{self.home}/supervisord.conf"
        if not self.transport.run(["test", "-S", f"{self.home}/supervisor.sock"], check=False).ok:
            return parse_status("", names)  # no daemon yet: nothing runs
        result = self.transport.run(
            ["supervisorctl", "-c", conf, "status", *names], env=self.env, check=False, timeout=60
        )
        return parse_status(result.stdout, names)

    def save(self) -> None:
        """Nothing to write: the app files on disk are the running set (see above)."""

    def stop_commands(self, names: Sequence[str]) -> list[list[str]]:
        """What :meth:`stop` runs, as commands a detached job runs in order."""
        for name in names:
            _check_name(name)
        conf = f"{self.home}/supervisord.conf"
        files = [f"{self.home}/apps/{name}.conf" for name in names]
        return [
            ["supervisorctl", "-c", conf, "stop", *names],
            ["rm", "-f", "--", *files],
            ["supervisorctl", "-c", conf, "update", *names],
        ]


def _check_name(name: str) -> None:
    """Only slipway's own names, never ``all`` or a group pattern."""
    if name in ("all", "") or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise ValueError(f"refusing to give supervisor the name {name!r}")
