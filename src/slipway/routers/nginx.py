"""nginx: the router many of our users already run, switched by an include and a reload.

slipway runs its own nginx master per environment (under PM2, with its own prefix, so
the system's nginx is never touched). The upstreams and the colour marker live in one
include file: a switch writes a candidate, checks it with ``nginx -t`` against a copy of
the main configuration, renames it into place and reloads; the switch is confirmed
once none of the workers that served before the reload still takes connections.

The cost (docs/architecture.md, "Switching traffic"): a reload makes the old workers
close their idle keep-alive connections, so a keep-alive client that sends on such a
connection at that moment sees it closed, about one request per busy connection per
reload; clients using ``Connection: close`` lose nothing. ``worker_shutdown_timeout``
bounds how long old workers keep WebSockets. For zero loss, put this nginx (or Caddy) in
front for TLS and point it at slipway's Traefik router, so the outer proxy never reloads
on a deploy.

A canary's or an A/B split's routes (:func:`split_routes_config`) use the same include:
``split_clients`` gives a client without a side one at the canary's weight, and a
cookie keeps it there; every step is a reload with the cost above.
"""

from __future__ import annotations

import re

from slipway.errors import RouterError, SlipwayError
from slipway.routers.base import COLOR_HEADER, CONFIRMATIONS, Router, Split, Target
from slipway.state.host import call

_COLOR_RE = re.compile(r"^[a-z]+$")
_COOKIE_RE = re.compile(r"^[A-Za-z0-9_]{1,60}$")


def main_config(
    directory: str, bind: str, public: dict[str, int], routes_file: str, api_port: int
) -> str:
    """nginx.conf for this environment's router (pure: tests compare it)."""
    servers = "\n".join(f"""    server {{
        listen {bind}:{port};
        location / {{
            proxy_pass http://slipway_{process}_$slipway_{process}_side;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 3600s;
            proxy_next_upstream error timeout;
            add_header {COLOR_HEADER} $slipway_color always;
            add_header Set-Cookie $slipway_{process}_cookie always;
        }}
    }}""" for process, port in sorted(public.items()))
    return f"""# written by slipway: the router of one environment (do not edit)
worker_processes 1;
worker_shutdown_timeout 30s;
pid {directory}/nginx.pid;
error_log {directory}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    # JSON lines, the fields slipway monitor and canaries read (Traefik's names where
    # they exist; ServiceName is <process>-<colour>, from the routes).
    log_format slipway escape=json '{{"DownstreamStatus":$status,"request_time":$request_time,'
        '"entryPointName":"$server_port","RequestPath":"$uri",'
        '"ServiceName":"$slipway_service","request_X-Slipway-Probe":"$http_x_slipway_probe",'
        '"downstream_X-Slipway-Conversion":"$sent_http_x_slipway_conversion"}}';
    access_log {directory}/logs/access.log slipway;
    client_body_temp_path {directory}/spool/body;
    proxy_temp_path {directory}/spool/proxy;
    fastcgi_temp_path {directory}/spool/fastcgi;
    uwsgi_temp_path {directory}/spool/uwsgi;
    scgi_temp_path {directory}/spool/scgi;
    keepalive_timeout 65s;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    include {routes_file};
    server {{
        listen 127.0.0.1:{api_port};
        location = /ping {{ return 200 "OK"; }}
    }}
{servers}
}}
"""


def routes_config(target: Target) -> str:
    """Every public port to ``target``'s colour; no cookie set."""
    _check_color(target.color)
    upstreams = "\n".join(
        _upstream(process, target.color, port)
        + _upstream(process, None, port)
        + f'map "" $slipway_{process}_side {{ default "{target.color}"; }}\n'
        f'map "" $slipway_{process}_cookie {{ default ""; }}'
        for process, port in sorted(target.ports.items())
    )
    return (
        f"# slipway color={target.color}\n{upstreams}\n"
        f'map "" $slipway_color {{ default "{target.color}"; }}\n' + _service_map([target])
    )


def split_routes_config(split: Split) -> str:
    """Each public port shared by weight between the stable colour and the canary.

    A client's side is the colour in its cookie (``<cookie>_<process>``); a client
    without one is given a side by ``split_clients`` on the request's random id, at the
    canary's weight, and the answer sets the cookie to it. So a client keeps the side
    it got first, as with Traefik's sticky weighted services. The colour header and
    the log's ServiceName name the colour that answered."""
    for target in (split.stable, split.canary):
        _check_color(target.color)
    if not _COOKIE_RE.fullmatch(split.cookie):  # it is written into the configuration
        raise RouterError(f"invalid cookie name {split.cookie!r}")
    stable, canary = split.stable.color, split.canary.color
    blocks = []
    for process in sorted(split.stable.ports):
        name = f"{split.cookie}_{process}"
        upstreams = "".join(
            _upstream(process, t.color, t.ports[process]) for t in (split.stable, split.canary)
        ) + _upstream(process, None, split.stable.ports[process])
        blocks.append(
            upstreams + f'split_clients "$request_id" $slipway_{process}_pick'
            f" {{ {split.weight}% {canary}; * {stable}; }}\n"
            f"map $cookie_{name} $slipway_{process}_side"
            f" {{ {stable} {stable}; {canary} {canary}; default $slipway_{process}_pick; }}\n"
            f'map $cookie_{name} $slipway_{process}_cookie {{ "{stable}" ""; "{canary}" "";'
            f' default "{name}=$slipway_{process}_side; Path=/; HttpOnly; SameSite=Lax"; }}'
        )
    colors = "".join(
        f'    "127.0.0.1:{int(port)}" "{target.color}";\n'
        for target in (split.stable, split.canary)
        for port in target.ports.values()
    )
    return (
        f"# slipway color={stable} {split.marker()}\n"
        + "\n".join(blocks)
        + f'\nmap $upstream_addr $slipway_color {{\n{colors}    default "";\n}}\n'
        + _service_map([split.stable, split.canary])
    )


def _upstream(process: str, color: str | None, port: int) -> str:
    """``slipway_<process>_<colour>``; without a colour, the name an older slipway's main
    configuration proxies to (kept so that every mix of old and new files parses, for
    a router started by an older version)."""
    name = f"slipway_{process}_{color}" if color else f"slipway_{process}"
    return f"upstream {name} {{ server 127.0.0.1:{int(port)}; }}\n"


_LEGACY_UPSTREAM = re.compile(
    r"^upstream slipway_([a-z0-9_]+) \{ server 127\.0\.0\.1:(\d+); \}$", re.M
)


def upgraded_routes(text: str) -> str:
    """Routes an older slipway wrote (one upstream per process, no side map), in this
    version's form: this version's main configuration cannot load them."""
    if "_side " in text:
        return text
    first = text.splitlines()[0] if text else ""
    color = first.removeprefix("# slipway color=").split(" ", 1)[0].strip()
    ports = {process: int(port) for process, port in _LEGACY_UPSTREAM.findall(text)}
    if not first.startswith("# slipway color=") or not _COLOR_RE.fullmatch(color) or not ports:
        return text
    return routes_config(Target(color, ports))


def _service_map(targets: list[Target]) -> str:
    """``$slipway_service``: ``<process>-<colour>`` of the server that answered."""
    lines = "".join(
        f'    "127.0.0.1:{int(port)}" "{process}-{target.color}";\n'
        for target in targets
        for process, port in sorted(target.ports.items())
    )
    return f'map $upstream_addr $slipway_service {{\n{lines}    default "";\n}}\n'


def _check_color(color: str) -> None:
    if not _COLOR_RE.fullmatch(color):
        raise RouterError(f"invalid colour name {color!r}")


class Nginx(Router):
    kind = "nginx"
    routes_name = "routes.conf"
    # A switch is confirmed from nginx's own workers (see settled), so one look is
    # enough, as with Traefik's API; _workers_before_reload falls back to three.
    confirmations = 1
    confirm_poll = 0.01
    _reloaded_from: set[int] | None = None  # the workers serving before the last reload

    def _flags(self, conf: str) -> list[str]:
        d = self.setup.directory
        return ["-p", d, "-c", conf, "-e", f"{d}/logs/error.log"]

    def _main(self, routes_file: str) -> str:
        return main_config(
            self.setup.directory,
            self.setup.bind,
            dict(self.setup.public),
            routes_file,
            self.setup.api_port,
        )

    def start_argv(self) -> list[str]:
        conf = f"{self.setup.directory}/nginx.conf"
        return [self.setup.binary, *self._flags(conf), "-g", "daemon off;"]

    def current_routes(self) -> str | None:
        """The applied routes, in this version's form (see :func:`upgraded_routes`): a
        put-back or a restart never brings back a form the main configuration cannot
        load."""
        text = super().current_routes()
        return upgraded_routes(text) if text is not None else None

    def write_static(self) -> None:
        """The main configuration, after the routes it includes are in this version's
        form (a router started by an older slipway, then stopped, starts again)."""
        d = self.setup.directory
        self.transport.run(["mkdir", "-p", "--", f"{d}/spool", f"{d}/logs"])
        on_disk = super().current_routes()
        upgraded = upgraded_routes(on_disk) if on_disk is not None else None
        if upgraded != on_disk:
            self.transport.put_text(str(upgraded), self.routes_path, mode=0o600)
        self._write_main()

    def _write_main(self) -> None:
        self.transport.put_text(self._main(self.routes_path), self._main_path, mode=0o600)

    @property
    def _main_path(self) -> str:
        return f"{self.setup.directory}/nginx.conf"

    def render_routes(self, target: Target) -> str:
        return routes_config(target)

    def render_split(self, split: Split) -> str:
        return split_routes_config(split)

    def validate(self, text: str) -> None:
        """``nginx -t`` on the main configuration with the candidate routes included."""
        d = self.setup.directory
        candidate = f"{d}/routes.candidate"
        check_conf = f"{d}/nginx.check"
        self.transport.put_text(text, candidate, mode=0o600)
        self.transport.put_text(self._main(candidate), check_conf, mode=0o600)
        result = self.transport.run(
            [self.setup.binary, "-t", "-q", *self._flags(check_conf)],
            env=self.setup.env,
            check=False,
        )
        if not result.ok:
            raise RouterError(f"nginx rejected the new routes: {result.tail(5)}")

    def apply(self, text: str) -> None:
        before = self._workers_before_reload()  # before anything changes: it may fail
        # The main configuration too, after the routes: they were validated against this
        # version's (a router started by an older slipway logs fewer fields), a reload
        # reads both, and new routes also parse under an older main configuration.
        self.transport.put_text(text, self.routes_path, mode=0o600)
        self._write_main()
        self._reloaded_from = None
        if before is not None:
            self.transport.run(
                [self.setup.binary, *self._flags(self._main_path), "-s", "reload"],
                env=self.setup.env,
            )
            self._reloaded_from = before

    def _workers_before_reload(self) -> set[int] | None:
        """The workers taking connections now (None when nginx is not running). When
        they cannot be read, the switch falls back to three probes in a row."""
        if not self.running():
            return None
        try:
            before = self._serving_workers()
        except SlipwayError:
            self.confirmations, self.confirm_poll = CONFIRMATIONS, 0.05  # span the ~100 ms
            return set()
        self.confirmations, self.confirm_poll = 1, 0.01
        return before

    def _serving_workers(self) -> set[int]:
        answer = call(self.transport, "nginx_workers", pid_file=f"{self.setup.directory}/nginx.pid")
        return set(answer["serving"])

    def settled(self) -> bool:
        """The reload is over: new workers take connections and none of the workers
        that served before it still does (an old worker's answer would be the old
        colour). Then one probe per public port confirms a switch."""
        if not self._reloaded_from:
            return True
        try:
            serving = self._serving_workers()
        except SlipwayError:
            return False  # unknown: unconfirmed, and the switch times out and puts back
        return bool(serving) and not serving & self._reloaded_from
