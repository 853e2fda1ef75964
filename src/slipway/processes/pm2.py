"""PM2, driven by exact app names inside slipway's own namespace.

The real CodeFRAME's deploy script ran ``pm2 delete all`` and took down every other app
on the server; slipway only ever names ``<project>-<env>-<process>``. Each start reads a
freshly generated ecosystem file, so new ``.env`` keys always reach the new processes
(``pm2 restart --update-env`` missed them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from slipway.commands import pm2 as cmd
from slipway.errors import SlipwayError
from slipway.processes.base import AppSpec, ProcessManager, ProcessState, with_missing
from slipway.state.host import call
from slipway.transports.base import Transport

NAMESPACE = "slipway"


def ecosystem(apps: Sequence[AppSpec]) -> dict[str, Any]:
    """The PM2 ecosystem document for ``apps`` (pure; tests check it exactly)."""
    return {
        "apps": [
            {
                "name": app.name,
                "namespace": NAMESPACE,
                "script": app.argv[0],
                "args": app.argv[1:],
                "interpreter": "none",
                "cwd": app.cwd,
                "env": dict(app.env),
                "kill_timeout": app.kill_timeout_ms,
                "autorestart": True,
                "max_restarts": app.max_restarts,
                "min_uptime": 3000,
                "restart_delay": 500,
                "out_file": f"{app.log_dir}/{app.name}.out.log",
                "error_file": f"{app.log_dir}/{app.name}.err.log",
                "time": True,
            }
            for app in apps
        ]
    }


def parse_jlist(text: str, names: Sequence[str]) -> dict[str, ProcessState]:
    # The first pm2 call of a fresh PM2_HOME prints daemon start-up lines before the JSON.
    lines = text.splitlines()
    start = next(
        (i for i, line in enumerate(lines) if line.startswith("[{") or line.strip() == "[]"),
        len(lines),
    )
    text = "\n".join(lines[start:])
    try:
        listed = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise SlipwayError(f"pm2 jlist printed something that is not JSON: {exc}") from exc
    found: dict[str, ProcessState] = {}
    for proc in listed:
        name = proc.get("name")
        if name in names:
            env = proc.get("pm2_env", {})
            found[name] = ProcessState(
                name=name,
                status=str(env.get("status", "unknown")),
                pid=proc.get("pid") or None,
                restarts=int(env.get("restart_time", 0)),
                started_at=float(env["pm_uptime"]) / 1000 if env.get("pm_uptime") else None,
            )
    return with_missing(found, names)


class Pm2(ProcessManager):
    def __init__(self, transport: Transport, env: Mapping[str, str]) -> None:
        self.transport = transport
        self.env = dict(env)

    @property
    def pm2_home(self) -> str | None:
        return self.env.get("PM2_HOME")

    def start(self, apps: Sequence[AppSpec], config_path: str) -> None:
        self.transport.put_text(json.dumps(ecosystem(apps), indent=2), config_path, mode=0o600)
        self.transport.run(cmd.start(config_path), env=self.env, timeout=120)

    def stop(self, names: Sequence[str]) -> None:
        """``pm2 delete`` of each app that exists, asked of the daemon over its RPC
        socket (the CLI costs a Node start, about 0.3 s, per call); the CLI when the
        socket cannot be used. Returns once the apps have exited."""
        present = [n for n, state in self.status(names).items() if state.status != "missing"]
        if not present:
            return
        for name in present:
            cmd.delete(name)  # the same refusals as the CLI path: never all or an id
        try:
            call(self.transport, "pm2_delete", names=present, pm2_home=self.pm2_home, timeout=120)
            return
        except SlipwayError:
            pass
        for name, state in self.status(present).items():
            if state.status != "missing":
                self.transport.run(cmd.delete(name), env=self.env, timeout=120)

    def status(self, names: Sequence[str]) -> dict[str, ProcessState]:
        """Asked of the daemon over its RPC socket (a few ms); ``pm2 jlist`` (a Node CLI,
        ~200 ms, and it starts a daemon when none runs) when that is not possible."""
        try:
            answer = call(self.transport, "pm2_status", names=list(names), pm2_home=self.pm2_home)
        except SlipwayError:
            result = self.transport.run(cmd.jlist(), env=self.env, timeout=60)
            return parse_jlist(result.stdout, names)
        found = {
            name: ProcessState(name, p["status"], p["pid"], int(p["restarts"]), p.get("started_at"))
            for name, p in answer["processes"].items()
        }
        return with_missing(found, names)

    def save(self) -> None:
        """What PM2 resurrects at boot (``pm2 save --force``), written by the host agent
        from the daemon's list (0600: it holds every app's environment); the CLI when
        the daemon's socket cannot be used."""
        try:
            call(self.transport, "pm2_save", pm2_home=self.pm2_home)
        except SlipwayError:
            self.transport.run(cmd.save(), env=self.env, timeout=60)
            self._make_private()

    def _make_private(self) -> None:
        """PM2_HOME 0700, its dumps 0600 (the CLI writes them with the default mode)."""
        try:
            call(self.transport, "pm2_private", pm2_home=self.pm2_home)
        except SlipwayError:
            if self.pm2_home:
                for name in ("dump.pm2", "dump.pm2.bak"):
                    path = f"{self.pm2_home}/{name}"
                    self.transport.run(["chmod", "600", "--", path], check=False)
