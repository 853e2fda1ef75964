"""The router interface: who owns an environment's public ports, and how traffic moves.

A router listens on the public ports (production 8200 / 8100) and forwards each to one
colour's private ports. A switch is three moves, the same for every backend:

1. validate the candidate configuration (and that the target answers) BEFORE applying;
2. apply it atomically (temp file + rename);
3. confirm it took effect: the backend's own view where it has one (Traefik's API), and
   a request through each public port answered under the new colour's marker header.

If confirmation fails before the deadline, the previous configuration is put back and
confirmed, and :class:`~slipway.errors.RouterError` is raised: a bad configuration never
keeps traffic. The router runs under the process manager (PM2 restarts it if it dies).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from slipway import localhttp
from slipway.errors import RouterError
from slipway.processes.base import AppSpec, ProcessManager
from slipway.state.host import read_text
from slipway.transports.base import Transport

COLOR_HEADER = "X-Slipway-Color"
# Marks slipway's own probes: the holding proxy answers them at once instead of queueing.
PROBE_HEADERS = {"X-Slipway-Probe": "1"}
# An app marks a converting answer with this response header: an A/B split counts them.
CONVERSION_HEADER = "X-Slipway-Conversion"
ROUTER_RESTARTS = 1000  # a router is supervised without a restart budget
CONFIRMATIONS = 3  # consecutive confirmations a switch needs (see Router.confirmations)


@dataclass(frozen=True)
class Target:
    """Where the public ports should send traffic: one colour's private ports."""

    color: str
    ports: Mapping[str, int]  # process name -> private port on 127.0.0.1


@dataclass(frozen=True)
class Split:
    """A canary's routes: ``weight`` percent of requests to ``canary``, the rest to
    ``stable``, a client kept on its side by ``cookie``."""

    stable: Target
    canary: Target
    weight: int  # 1..99; 0 and 100 are plain routes to one colour
    cookie: str

    def sides(self) -> list[tuple[Target, int]]:
        return [(self.stable, 100 - self.weight), (self.canary, self.weight)]

    def marker(self) -> str:
        return f"canary={self.canary.color}:{self.weight}"


@dataclass(frozen=True)
class RouterSetup:
    """Everything a router needs to know about one environment on one host."""

    app_name: str  # process-manager name, e.g. codeframe-mini-production-router
    directory: str  # the router's own directory on the host (configs, logs)
    public: Mapping[str, int]  # process name -> public port
    bind: str
    api_port: int
    binary: str
    probe_paths: Mapping[str, str]  # process name -> path to confirm a switch with
    env: Mapping[str, str]  # environment for the router process (PATH ...)
    switch_timeout: float = 5.0


@dataclass(frozen=True)
class SwitchReport:
    color: str
    previous: str | None
    seconds: float  # from apply to confirmed


class Router(ABC):
    """One backend (Traefik, nginx). Subclasses render configs and apply them."""

    kind: str
    # Confirmations in a row a switch needs: a router whose old workers may still accept
    # a connection after a reload (nginx) needs a streak; one that swaps its routing
    # table at once (Traefik) needs its own state plus one probe per public port.
    confirmations: int = CONFIRMATIONS
    confirm_poll: float = 0.05  # seconds between two looks: a streak must span a reload

    def __init__(self, transport: Transport, pm: ProcessManager, setup: RouterSetup) -> None:
        self.transport = transport
        self.pm = pm
        self.setup = setup

    # --- what a backend provides -----------------------------------------------------

    @abstractmethod
    def start_argv(self) -> list[str]:
        """How the process manager runs the router in the foreground."""

    @abstractmethod
    def write_static(self) -> None:
        """Write the static configuration (listeners), idempotently."""

    @abstractmethod
    def render_routes(self, target: Target) -> str:
        """The dynamic configuration sending the public ports to ``target``."""

    @abstractmethod
    def validate(self, text: str) -> None:
        """Raise RouterError if ``text`` would not be accepted by the router."""

    @abstractmethod
    def apply(self, text: str) -> None:
        """Make ``text`` the live dynamic configuration (atomically)."""

    def backend_confirms(self, target: Target) -> bool:
        """The router's own view agrees with ``target`` (where it has an API)."""
        return self.settled()

    def settled(self) -> bool:
        """The last applied routes are fully in force (no part of the router still runs
        the previous ones); routers that swap their table at once are always settled."""
        return True

    # --- shared behaviour ------------------------------------------------------------

    @property
    def routes_path(self) -> str:
        return f"{self.setup.directory}/{self.routes_name}"

    routes_name = "routes"

    def current_routes(self) -> str | None:
        text = read_text(self.transport, self.routes_path)
        return text if text and text.strip() else None

    def active_color(self) -> str | None:
        """The colour the applied routes point at (None before the first switch)."""
        text = self.current_routes()
        if text is None:
            return None
        first = text.splitlines()[0] if text else ""
        marker = "# slipway color="
        if not first.startswith(marker):
            return None
        return first.removeprefix(marker).split(" ", 1)[0].strip() or None

    def canary_weight(self) -> int:
        """The percent of requests the applied routes give a canary (0: no split)."""
        text = self.current_routes() or ""
        first = text.splitlines()[0] if text else ""
        _, found, rest = first.partition(" canary=")
        return int(rest.rsplit(":", 1)[1]) if found else 0

    def app_spec(self) -> AppSpec:
        return AppSpec(
            self.setup.app_name,
            self.start_argv(),
            self.setup.directory,
            dict(self.setup.env),
            kill_timeout_ms=15000,
            log_dir=f"{self.setup.directory}/logs",
            max_restarts=ROUTER_RESTARTS,
        )

    def running(self) -> bool:
        state = self.pm.status([self.setup.app_name])[self.setup.app_name]
        return state.online

    def ensure_running(self, target: Target) -> bool:
        """Start the router if it is not running, routing to ``target``. True if started.
        A running router's static configuration is rewritten all the same (it reads it
        when it next starts: a router started by an older slipway, restarted by the
        process manager, then logs what this version reads)."""
        if self.running():
            self.write_static()
            return False
        self.transport.run(["mkdir", "-p", "--", f"{self.setup.directory}/logs"])
        self.write_static()
        if self.current_routes() is None:
            text = self.render_routes(target)
            self.validate(text)
            self.apply(text)
        self.pm.start([self.app_spec()], f"{self.setup.directory}/ecosystem.json")
        self._wait_ready()
        return True

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + max(20.0, self.setup.switch_timeout)
        while time.monotonic() < deadline:
            if self.ready():
                return
            time.sleep(0.1)
        raise RouterError(
            f"{self.kind} router {self.setup.app_name} did not come up",
            hint=f"see its logs in {self.setup.directory}/logs",
        )

    def ready(self) -> bool:
        """The router answers on every public port (any HTTP answer counts)."""
        return all(self.probe(process) is not None for process in self.setup.public)

    def probe(self, process: str) -> str | None:
        """The colour header of one request through ``process``'s public port, or None
        when nothing answered. ``""`` means answered without a colour (e.g. 502)."""
        port = self.transport.tunnel(self.setup.public[process])
        url = f"http://127.0.0.1:{port}{self.setup.probe_paths.get(process, '/')}"
        try:
            response = localhttp.client().get(
                url, timeout=2.0, headers={"Connection": "close", **PROBE_HEADERS}
            )
        except httpx.HTTPError:
            return None
        if response.status_code >= 500:
            return ""
        color: str = response.headers.get(COLOR_HEADER, "")
        return color

    def target_answers(self, target: Target) -> str | None:
        """Why ``target`` cannot take traffic (None when every port answers)."""
        for process, private in target.ports.items():
            port = self.transport.tunnel(private)
            url = f"http://127.0.0.1:{port}{self.setup.probe_paths.get(process, '/')}"
            try:
                response = localhttp.client().get(url, timeout=2.0, headers=PROBE_HEADERS)
            except httpx.HTTPError as exc:
                return f"{target.color} {process} (port {private}) does not answer: {exc}"
            if response.status_code >= 500:
                return f"{target.color} {process} (port {private}) answers {response.status_code}"
        return None

    def confirmed(self, target: Target) -> bool:
        """The router's own state names ``target``, then every public port answers as
        it (the probes are only sent once the state agrees: they are the slow part)."""
        if not self.backend_confirms(target):
            return False
        return all(self.probe(process) == target.color for process in self.setup.public)

    def switch(self, target: Target, *, check_target: bool = True) -> SwitchReport:
        """Validate, apply, confirm; on failure put the previous routes back and raise.
        ``check_target=False``: a canary's abort, which goes back to the stable colour
        whatever its health path says (it was serving until the split)."""
        problem = self.target_answers(target) if check_target else None
        if problem:
            raise RouterError(f"not switching to {target.color}: {problem}")
        text = self.render_routes(target)
        self.validate(text)
        previous_text = self.current_routes()
        previous = self.active_color()
        started = time.monotonic()
        self.apply(text)
        if self._wait_confirmed(target):
            return SwitchReport(target.color, previous, round(time.monotonic() - started, 3))
        back = "none to put back"
        if previous_text is not None:
            self.apply(previous_text)
            back = "confirmed" if previous and self._wait_color(previous) else "NOT confirmed"
        raise RouterError(
            f"switch to {target.color} was not confirmed within"
            f" {self.setup.switch_timeout:g}s through the public ports; the previous"
            f" routes ({previous or 'none'}) were put back ({back})",
            hint=f"see the router's logs in {self.setup.directory}/logs",
        )

    def _wait_confirmed(self, target: Target) -> bool:
        return self._in_a_row(lambda: self.confirmed(target), self.confirmations)

    def _wait_color(self, color: str) -> bool:
        """Every public port answers as ``color`` (a put-back's confirmation)."""
        return self._in_a_row(
            lambda: self.settled() and all(self.probe(p) == color for p in self.setup.public),
            CONFIRMATIONS,
        )

    def _in_a_row(self, check: Callable[[], bool], needed: int) -> bool:
        """``check`` held ``needed`` times in a row before the switch timeout."""
        deadline = time.monotonic() + self.setup.switch_timeout
        streak = 0
        while True:
            streak = streak + 1 if check() else 0
            if streak >= needed:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(self.confirm_poll)

    def stop(self) -> None:
        self.pm.stop([self.setup.app_name])

    # --- canaries --------------------------------------------------------------------

    def render_split(self, split: Split) -> str:
        """The dynamic configuration sharing each public port between two colours."""
        raise RouterError(f"the {self.kind} router cannot split traffic (use traefik)")

    def backend_confirms_split(self, split: Split) -> bool:
        """The router's own view has ``split``'s weights."""
        return self.settled()

    def split(self, split: Split) -> SwitchReport:
        """Share traffic between the stable colour and the canary, confirmed by the
        router's view and an answer through each public port; on failure the previous
        routes are put back and RouterError raised (as :meth:`switch`)."""
        problem = self.target_answers(split.canary)
        if problem:
            raise RouterError(f"not sending {split.weight}% to {split.canary.color}: {problem}")
        text = self.render_split(split)
        self.validate(text)
        previous_text = self.current_routes()
        started = time.monotonic()
        self.apply(text)
        try:
            confirmed = self._in_a_row(
                lambda: self.backend_confirms_split(split)
                and all(self.probe(p) is not None for p in self.setup.public),
                1,
            )
        except BaseException:  # Ctrl-C, a transport failure: never leave a split behind
            if previous_text is not None:
                self.apply(previous_text)
            raise
        if confirmed:
            return SwitchReport(
                split.canary.color, split.stable.color, round(time.monotonic() - started, 3)
            )
        if previous_text is not None:
            self.apply(previous_text)
        raise RouterError(
            f"{split.weight}% to {split.canary.color} was not confirmed within"
            f" {self.setup.switch_timeout:g}s; the previous routes were put back",
            hint=f"see the router's logs in {self.setup.directory}/logs",
        )
