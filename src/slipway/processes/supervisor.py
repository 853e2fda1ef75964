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
from slipway.processes.base import AppSpec, ProcessManager, ProcessState, with_missing
from slipway.transports.base import Transport

DEFAULT_HOME = "~/.slipway-supervisor"
MIN_UPTIME_SECONDS = 1
# sockaddr_un.sun_path is 108 bytes with its NUL, and supervisord binds a temporary
# "<path>.<pid>" first (up to 8 more bytes).
MAX_SOCKET_PATH = 99

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


# ConfigParser (supervisor sets inline comment prefixes) cuts a line at whitespace
# followed by one of these, inside quotes too.
_COMMENT = re.compile(r"\s[;#]")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNWRITABLE = "\n\r\x00"


def _refused(what: str, why: str) -> SlipwayError:
    return SlipwayError(
        f"supervisor cannot be given {what}: {why}",
        hint='change it, or use process_manager = "pm2"',
    )


def _env_value(key: str, value: str) -> str:
    """One ``environment`` value, quoted as supervisor's parser reads it: a non-POSIX
    shlex takes a value whole between one kind of quote, with no escapes, then strips
    every quote character from both ends. What it would change is refused by name
    (never echoed: it may be a secret)."""
    if not _KEY.fullmatch(key):
        raise _refused(f"the variable {key!r}", "its name is not a plain identifier")
    if any(c in value for c in _UNWRITABLE):
        raise _refused(f"the value of {key}", "it holds a line break or NUL")
    if value[:1] in ("'", '"') or value[-1:] in ("'", '"'):
        raise _refused(f"the value of {key}", "it starts or ends with a quote")
    if _COMMENT.search(value):
        raise _refused(f"the value of {key}", "a space before ';' or '#' starts a comment")
    if '"' not in value:
        return f'"{_escape(value)}"'
    if "'" not in value:
        return f"'{_escape(value)}'"
    raise _refused(f"the value of {key}", "it holds both kinds of quote")


def _command(argv: Sequence[str]) -> str:
    """argv as supervisor splits it (``shlex.split``), with a ``;``/``#`` after a space
    quoted on its own so ConfigParser does not take it for a comment."""
    for word in argv:
        if any(c in word for c in _UNWRITABLE):
            raise _refused("a command word", "it holds a line break or NUL")
    joined = shlex.join(argv)
    return _escape(re.sub(r"(\s)([;#])", lambda m: f"{m[1]}'\"{m[2]}\"'", joined))


def _path(what: str, path: str) -> str:
    if any(c in path for c in _UNWRITABLE) or _COMMENT.search(path):
        raise _refused(what, f"{path!r} holds a line break or a space before ';'/'#'")
    return _escape(path)


def program(app: AppSpec) -> str:
    """The ``[program:<name>]`` file for ``app`` (pure; tests read it back)."""
    env = ",".join(f"{key}={_env_value(key, value)}" for key, value in app.env.items())
    lines = [
        f"[program:{app.name}]",
        f"command={_command(app.argv)}",
        f"directory={_path('a working directory', app.cwd)}",
        "autostart=true",
        "autorestart=true",
        f"startsecs={MIN_UPTIME_SECONDS}",
        f"startretries={app.max_restarts}",
        "stopsignal=INT",
        f"stopwaitsecs={max(1, app.kill_timeout_ms // 1000)}",
        "stopasgroup=true",
        "killasgroup=true",
        f"stdout_logfile={_path('a log directory', app.log_dir)}/{app.name}.out.log",
        f"stderr_logfile={_path('a log directory', app.log_dir)}/{app.name}.err.log",
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
    return with_missing(found, names)


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
            said = _unquoted(result.stdout + result.stderr)
            raise SlipwayError(
                f"supervisorctl {' '.join(args)} failed: {said}",
                hint=f"see {self.home}/supervisord.log",
            )
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
        # A clean environment: supervisord hands its own to every app it starts, and the
        # command that happens to start it (a CI job, a shell) must not leak into them.
        # A second command starting it at the same moment fails to bind: it then waits
        # for the first one's daemon like the first does.
        script = 'exec env -i HOME="$HOME" PATH="$1" LANG=C.UTF-8 supervisord -c "$2"'
        path = self.env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        conf = f"{home}/supervisord.conf"
        self.transport.run(["sh", "-c", script, "sh", path, conf], env=self.env, check=False)
        deadline = time.monotonic() + 15
        while not self._running():  # it answers once its socket is up
            if time.monotonic() > deadline:
                raise SlipwayError(f"supervisord did not start: see {home}/supervisord.log")
            time.sleep(0.1)

    def _running(self) -> bool:
        return self._ctl("pid", check=False).strip().isdigit()

    def check(self, apps: Sequence[AppSpec]) -> None:
        """Every app's file can be written as supervisor reads it: raised before the
        flow stops anything (a refused value would otherwise fail the start with the
        live release already stopped)."""
        for app in apps:
            _check_name(app.name)
            program(app)

    def start(self, apps: Sequence[AppSpec], config_path: str) -> None:
        """Write each app's file, ``update`` those names (supervisord adds and starts
        them), then ``start`` them: an unchanged app that had stopped or failed (a
        router that crash-looped) is started again, as PM2 does."""
        self.check(apps)
        self.ensure_daemon()
        texts = {app.name: program(app) for app in apps}
        for name, text in texts.items():
            self.transport.put_text(text, f"{self.home}/apps/{name}.conf", mode=0o600)
        self.transport.put_text("\n".join(texts.values()), config_path, mode=0o600)
        names = list(texts)
        self._ctl("update", *names)
        self._ctl("start", *names, check=False)  # "already started" is fine
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
        for name in names:
            _check_name(name)
        # Every named file goes, even of an app not running now (its daemon down): a
        # file left behind would start a stopped colour at the daemon's next start.
        files = [f"{self.home}/apps/{name}.conf" for name in names]
        present = [n for n, s in self.status(names).items() if s.status != "missing"]
        if present:
            self._ctl("stop", *present, check=False)  # an already-stopped app is an "error"
        self.transport.run(["rm", "-f", "--", *files], env=self.env)
        if present:
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
        # "stop" of an app already stopped exits non-zero; the job needs every other
        # command to succeed ("update" removes the group, stopping what still runs).
        tolerant = 'supervisorctl -c "$0" stop "$@" || true'
        return [
            ["sh", "-c", tolerant, conf, *names],
            ["rm", "-f", "--", *files],
            ["supervisorctl", "-c", conf, "update", *names],
        ]


def _unquoted(text: str) -> str:
    """supervisorctl's complaint without anything quoted in it: a parse error quotes
    the whole ``environment=`` line, secrets of any environment included."""
    first = text.strip().splitlines()[0] if text.strip() else "no output"
    return re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", first)


def _check_name(name: str) -> None:
    """Only slipway's own names, never ``all`` or a group pattern."""
    if name in ("all", "") or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise ValueError(f"refusing to give supervisor the name {name!r}")
