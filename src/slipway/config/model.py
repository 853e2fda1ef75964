"""The configuration model: what an app is made of and where each environment runs.

The model is strict on purpose: unknown keys are errors (a typo like ``prots`` must not
silently fall back to a default port), every string that ends up on a command line is
checked against a conservative pattern, and ports are whole numbers in range. The design's
environments (development, staging, production) come with the design's defaults, applied
in :mod:`slipway.config.defaults` before validation, so a two-line environment is valid.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Iterable
from enum import StrEnum
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

if TYPE_CHECKING:
    from slipway.state.host import Layout

# --- constrained scalar types -------------------------------------------------------

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_HEX = re.compile(r"[0-9a-f]+")
_ENV_KEY_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_BRANCH_RE = re.compile(r"^(?!.*\.\.)(?!/)(?!.*//)[A-Za-z0-9._/*-]{1,100}(?<!/)(?<!\.lock)$")
_HOST_RE = re.compile(
    r"^(?:(?P<user>[a-z_][a-z0-9_-]{0,31})@)?"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?$"
)


def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            "must be lowercase letters, digits and '-', starting with a letter (at most 40)"
        )
    return value


def _check_env_key(value: str) -> str:
    if not _ENV_KEY_RE.fullmatch(value):
        raise ValueError("must be an environment variable name like API_KEY (A-Z, 0-9, _)")
    return value


def _check_branch(value: str) -> str:
    if not _BRANCH_RE.fullmatch(value):
        raise ValueError(
            "must be a git branch name or pattern (letters, digits, '.', '_', '-', '/', '*';"
            " no '..', spaces or shell characters)"
        )
    return value


def _check_relative_path(value: str) -> str:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts or "\x00" in value:
        raise ValueError("must be a relative path inside the project, without '..'")
    if "\n" in value:
        raise ValueError("must not contain a newline")
    return value


def _check_absolute_path(value: str) -> str:
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts or "\x00" in value or "\n" in value:
        raise ValueError("must be an absolute path without '..' (for example /srv/codeframe)")
    return value


def _check_port(value: object) -> int:
    # bool is an int subclass in Python; `port = true` is a mistake, not port 1.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError("must be an integer from 1 to 65535")
    return value


def _check_number(value: object) -> object:
    # TOML has real numbers; "5" or true where a number belongs is a mistake to report.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


def _check_argv(value: list[str]) -> list[str]:
    # A NUL cannot reach exec(); found late it once stopped a rollback half way.
    for index, item in enumerate(value):
        if not item:
            raise ValueError(f"item {index} is empty")
        if any(ord(char) < 32 and char != "\t" for char in item):
            raise ValueError(f"item {index} contains a control character (NUL, newline, ...)")
    return value


def _check_env_value(value: str) -> str:
    # exec() cannot pass a NUL: found late, it failed a command half way through a run.
    if "\0" in value:
        raise ValueError("contains a NUL character, which no environment variable can hold")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
EnvKey = Annotated[str, AfterValidator(_check_env_key)]
EnvValue = Annotated[str, AfterValidator(_check_env_value)]
Branch = Annotated[str, AfterValidator(_check_branch)]
RelativePath = Annotated[str, AfterValidator(_check_relative_path)]
AbsolutePath = Annotated[str, AfterValidator(_check_absolute_path)]
Port = Annotated[int, BeforeValidator(_check_port)]
Number = Annotated[float, BeforeValidator(_check_number)]
Argv = Annotated[list[str], Field(min_length=1), AfterValidator(_check_argv)]


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, values are not coerced."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- enums ----------------------------------------------------------------------------


class ProcessKind(StrEnum):
    PYTHON = "python"
    NODE = "node"


class HealthLevel(StrEnum):
    NONE = "none"
    BASIC = "basic"
    COMPREHENSIVE = "comprehensive"


class DeployTrigger(StrEnum):
    NONE = "none"
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class Strategy(StrEnum):
    DIRECT = "direct"
    RESTART = "restart"
    BLUE_GREEN = "blue-green"
    CANARY = "canary"

    @property
    def coloured(self) -> bool:
        """Releases run on colours behind the router (blue-green and canary)."""
        return self in (Strategy.BLUE_GREEN, Strategy.CANARY)


class ProcessManagerName(StrEnum):
    NONE = "none"
    PM2 = "pm2"
    SUPERVISOR = "supervisor"


# --- the app ----------------------------------------------------------------------------


class ProjectConfig(Strict):
    name: Name = Field(description="Short name; PM2 apps are named <name>-<env>-<process>.")
    repository: str = Field(
        default=".",
        description="Git repository to deploy from: a path (relative to this file) or a URL.",
    )


class ProcessConfig(Strict):
    """One long-running process of the app (the backend or the frontend)."""

    kind: ProcessKind = Field(description="python: installed with uv; node: with npm.")
    workdir: RelativePath = Field(default=".", description="Directory inside the repository.")
    requirements: RelativePath | None = Field(
        default=None, description="Lock file the python kind installs (e.g. requirements.lock)."
    )
    install: Argv | None = Field(default=None, description="Install command (argv).")
    build: Argv | None = Field(default=None, description="Build command (argv), if any.")
    start: Argv = Field(description="Start command (argv). Placeholders: {port}, {host}, {python}.")
    port: Literal["backend", "frontend"] = Field(
        description="Which of the environment's ports this process listens on."
    )
    port_env: EnvKey | None = Field(
        default=None, description="Environment variable that also carries the port."
    )
    build_env: dict[EnvKey, EnvValue] = Field(
        default_factory=dict,
        description=(
            "Variables fixed at build time (Next.js NEXT_PUBLIC_*). Placeholders:"
            " {host}, {backend_port}, {frontend_port} (the environment's public ports,"
            " the same for both colours), {url} (its public address)."
        ),
    )
    bind_env: EnvKey | None = Field(
        default=None,
        description="Environment variable that carries the bind address (HOSTNAME for a"
        " Next.js standalone server; HOST is always set).",
    )
    database_env: EnvKey = Field(
        default="DATABASE_PATH",
        description="Variable that tells a python process where the SQLite file is.",
    )
    database_value: str = Field(
        default="{path}",
        pattern=r"^[^\x00]*\{path\}[^\x00]*$",
        description='How that variable is written: "{path}" (the file\'s absolute path) or'
        ' a URL around it, e.g. "sqlite:///{path}".',
    )
    health_path: str = Field(default="/", pattern=r"^/[A-Za-z0-9._~/-]*$")
    drain_seconds: Number = Field(default=5.0, gt=0, le=300)

    def database_vars(self, path: str) -> dict[str, str]:
        """The variables that point this process at the SQLite file ``path``."""
        return {self.database_env: self.database_value.replace("{path}", path)}


class HttpCheck(Strict):
    name: Name
    process: Literal["backend", "frontend"] = "backend"
    path: str = Field(pattern=r"^/[A-Za-z0-9._~/?=&-]*$")
    expect_status: StrictInt = Field(default=200, ge=100, le=599)
    expect_json: dict[str, str | int | bool] = Field(default_factory=dict)
    expect_text: str | None = None


class SqliteCheck(Strict):
    """A direct read-only query of the environment's SQLite file on the host, for apps
    without a database endpoint: proves the file opens and answers."""

    name: Name = "sqlite"
    query: str = Field(
        default="SELECT count(*) FROM sqlite_master",
        pattern=r"^(?i:select|pragma)\s[^;]*$",
        description="One SELECT or PRAGMA (read-only; no ';').",
    )


class WebSocketCheck(Strict):
    name: Name = "websocket"
    path: str = Field(default="/ws", pattern=r"^/[A-Za-z0-9._~/-]*$")
    send: str = '{"type": "ping"}'
    expect_text: str = "pong"


class HealthConfig(Strict):
    """Which checks each level runs; the gate needs `passes` passes in a row in time."""

    basic: list[HttpCheck] = Field(default_factory=list)
    comprehensive: list[HttpCheck] = Field(default_factory=list)
    websocket: WebSocketCheck | None = None
    sqlite: SqliteCheck | None = None
    processes: StrictBool = Field(
        default=True,
        description="Comprehensive checks include the process manager (online, no restart loop).",
    )
    disk: StrictBool = Field(
        default=True,
        description="Comprehensive checks include free disk space (monitor.disk_free_percent).",
    )
    passes: StrictInt = Field(default=3, ge=1, le=100)
    interval_seconds: Number = Field(default=1.0, gt=0, le=60)
    deadline_seconds: Number = Field(default=60.0, gt=0, le=3600)
    timeout_seconds: Number = Field(default=5.0, gt=0, le=120)


# --- environments --------------------------------------------------------------------


class Ports(Strict):
    backend: Port
    frontend: Port

    @model_validator(mode="after")
    def _distinct(self) -> Ports:
        if self.backend == self.frontend:
            raise ValueError("backend and frontend must use different ports")
        return self


class SshConfig(Strict):
    key: str | None = Field(default=None, description="Private key file (default: agent).")
    known_hosts: str | None = Field(
        default=None, description="known_hosts file (default ~/.ssh/known_hosts)."
    )
    verify_host_keys: StrictBool = Field(
        default=True, description="Never turn this off outside a throwaway test."
    )
    connect_timeout_seconds: Number = Field(default=10.0, gt=0, le=300)


_AGE_RE = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")


def _check_age_recipient(value: str) -> str:
    if not _AGE_RE.fullmatch(value):
        raise ValueError("must be an age public key (age1 followed by 58 characters)")
    return value


AgeRecipient = Annotated[str, AfterValidator(_check_age_recipient)]


class BackupConfig(Strict):
    enabled: StrictBool = True
    retention_days: StrictInt = Field(default=30, ge=1, le=3650)
    keep_last: StrictInt = Field(default=5, ge=1, le=1000)
    path: AbsolutePath | None = Field(
        default=None, description="Backup directory on the host (default <root>/<env>/backups)."
    )
    age_recipients: list[AgeRecipient] = Field(
        default_factory=list,
        description="age public keys; backups are encrypted for them (restores need a key).",
    )


_BIND_RE = re.compile(r"^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|\[?[0-9A-Fa-f:]+\]?)$")
_BINARY_RE = re.compile(r"^[A-Za-z0-9_./+-]{1,255}$")


def _check_bind(value: str) -> str:
    if not _BIND_RE.fullmatch(value):
        raise ValueError("must be an IP address to listen on, e.g. 127.0.0.1 or 0.0.0.0")
    return value


def _check_binary(value: str) -> str:
    if not _BINARY_RE.fullmatch(value) or ".." in value.split("/"):
        raise ValueError("must be a command name or an absolute path (letters, digits, ./_+-)")
    return value


class MonitorConfig(Strict):
    """Alert thresholds for ``slipway monitor`` (the design's defaults)."""

    error_rate_percent: Number = Field(default=5, ge=0, le=100, description="5xx share.")
    p95_seconds: Number = Field(default=2, gt=0, le=600, description="p95 response time.")
    websocket_drop_percent: Number = Field(default=10, ge=0, le=100)
    database_failures: StrictInt = Field(
        default=0, ge=0, description="Alert when a sample has more failed database probes."
    )
    disk_free_percent: Number = Field(default=10, ge=0, le=100)
    min_requests: StrictInt = Field(
        default=5, ge=1, description="Requests a sample needs before its error rate or p95 count."
    )
    interval_seconds: Number = Field(default=60, ge=1, le=86400)
    websocket_probes: StrictInt = Field(default=2, ge=0, le=50)
    database_checks: list[Name] = Field(
        default_factory=lambda: ["database"],
        description="Health checks that probe the database (besides a direct read-only query).",
    )


class NotifyKind(StrEnum):
    SLACK = "slack"
    DISCORD = "discord"
    APPRISE = "apprise"


class NotifyEvent(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    ROLLBACK = "rollback"
    ALERT = "alert"


class NotifyChannel(Strict):
    """One place notifications go. Its URL is a secret: read when sending from an
    environment variable (``url_env``) or a file (``url_file``), never written here."""

    kind: NotifyKind
    url_env: EnvKey | None = None
    url_file: str | None = Field(default=None, pattern=r"^[^\x00\n]+$")
    environments: list[Name] = Field(
        default_factory=list, description="Environments this channel hears about (default all)."
    )
    events: list[NotifyEvent] = Field(default_factory=lambda: list(NotifyEvent))
    timeout_seconds: Number = Field(
        default=5, gt=0, le=60, description="Deadline for all attempts together."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_url_in_clear(cls, data: object) -> object:
        if isinstance(data, dict) and "url" in data:
            raise ValueError(
                "a webhook URL is a secret and must not be in the config: name an environment"
                " variable with url_env (e.g. SLACK_WEBHOOK_URL) or a 0600 file with url_file"
            )
        return data

    @model_validator(mode="after")
    def _one_source(self) -> NotifyChannel:
        if (self.url_env is None) == (self.url_file is None):
            raise ValueError("give exactly one of url_env or url_file")
        return self

    @property
    def source(self) -> str:
        return f"${self.url_env}" if self.url_env else f"file {self.url_file}"


_DEFAULT_GATES: dict[str, list[str]] = {
    "format": ["black", "--check", "."],
    "lint": ["ruff", "check", "."],
    "types": ["mypy", "."],
    "tests": ["pytest", "--cov", "--cov-report=xml"],
}


def _check_advisory_id(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError(
            "must be an advisory id (e.g. GHSA-xxxx-xxxx-xxxx, PYSEC-2024-1), no spaces"
        )
    return value


class SecurityConfig(Strict):
    """Dependency vulnerability scanning (gates ``security:python`` and ``security:npm``).

    npm reports a severity per advisory, so ``severity`` is the threshold there; pip-audit
    reports none, so every known Python vulnerability fails unless its id (or an alias,
    e.g. its CVE) is in ``ignore``. Ignoring is explicit and per advisory so that an
    accepted risk is written down and reviewed, never a lowered bar for everything.
    """

    enabled: StrictBool = Field(
        default=True, description="Audit locked dependencies (pip-audit, npm audit)."
    )
    severity: Literal["low", "moderate", "high", "critical"] = Field(
        default="high", description="npm advisories at or above this fail the gate."
    )
    ignore: list[Annotated[str, AfterValidator(_check_advisory_id)]] = Field(
        default_factory=list,
        description="Advisory ids (or aliases such as a CVE) accepted as known risks.",
    )


class GatesConfig(Strict):
    """The app's quality gates (``slipway gates``), the same locally and in CI."""

    commands: dict[Name, Argv] = Field(
        default_factory=lambda: {k: list(v) for k, v in _DEFAULT_GATES.items()},
        description="Gate name -> argv, run in order from the repository root.",
    )
    frontend_build: StrictBool = Field(default=True, description="Build each node process.")
    coverage_xml: RelativePath = "coverage.xml"
    coverage_min: Number = Field(default=80, ge=0, le=100)
    new_code_min: Number = Field(default=90, ge=0, le=100, description="Diff coverage vs --base.")
    critical: dict[str, Number] = Field(
        default_factory=dict, description="Path glob -> minimum coverage (critical paths, 95)."
    )
    security: SecurityConfig = Field(
        default_factory=SecurityConfig,
        description="Dependency vulnerability scanning of the locked Python and npm packages.",
    )


def _check_release_pattern(value: str) -> str:
    if not value.strip() or any(c.isspace() for c in value):
        raise ValueError("must be a tag, ref, glob (e.g. 'v3.*') or commit prefix, no spaces")
    return value


class MigrationsConfig(Strict):
    """The database side of a deploy. Each release's migrations are rehearsed on a copy
    first; releases whose migrations the running release cannot live with (a dropped or
    changed column or table, found by the rehearsal or listed in ``breaking``) hold
    traffic at the proxy from the backup until the new release is live, so no write
    lands in between (blue-green); with the restart strategy the old processes stop
    before the backup instead."""

    breaking: list[Annotated[str, AfterValidator(_check_release_pattern)]] = Field(
        default_factory=list,
        description="Refs as deployed (tags, branches, globs like 'v3.*') or commit"
        " prefixes (7+ hex digits) whose migrations are breaking.",
    )
    rehearse: bool = Field(
        default=True,
        description="Run each release's migrations on a copy of the live database before"
        " anything live changes, and classify them (unchanged, additive, breaking,"
        " destructive): destructive is refused, breaking takes the hold.",
    )
    hold_seconds: Number = Field(
        default=60,
        gt=0,
        le=600,
        description="Deadline of a hold: past it the deploy fails and rolls back, and the"
        " held requests go to the old release.",
    )

    def is_breaking(self, ref: str, commit: str) -> bool:
        """Whether the release deployed as ``ref`` at ``commit`` is marked breaking."""
        for pattern in self.breaking:
            if fnmatch.fnmatchcase(ref, pattern):
                return True
            if len(pattern) >= 7 and _HEX.fullmatch(pattern) and commit.startswith(pattern):
                return True
        return False


class RouterKind(StrEnum):
    TRAEFIK = "traefik"
    NGINX = "nginx"


COLORS = ("blue", "green")


class BlueGreenConfig(Strict):
    """How a blue-green environment switches traffic (strategy = "blue-green").

    The router owns the environment's public ports; the colours listen on private ports,
    by default the public port + 1 (blue) and + 2 (green).
    """

    router: RouterKind = Field(
        default=RouterKind.TRAEFIK,
        description="traefik (zero-loss switch) or nginx (reload; see the README).",
    )
    router_binary: Annotated[str, AfterValidator(_check_binary)] | None = Field(
        default=None, description="Router executable on the host (default: traefik / nginx)."
    )
    bind: Annotated[str, AfterValidator(_check_bind)] = Field(
        default="127.0.0.1", description="Address the public ports listen on."
    )
    api_port: Port | None = Field(
        default=None, description="Router API/status port on 127.0.0.1 (default backend + 9)."
    )
    blue: Ports | None = Field(default=None, description="Blue's private ports.")
    green: Ports | None = Field(default=None, description="Green's private ports.")
    standby_seconds: Number = Field(
        default=600,
        ge=0,
        le=86400,
        description="How long the old colour stays warm for an instant rollback.",
    )
    watch_seconds: Number = Field(
        default=15, ge=0, le=3600, description="Post-switch checks before the deploy counts."
    )
    switch_timeout_seconds: Number = Field(
        default=5, gt=0, le=120, description="Deadline for a switch to be confirmed."
    )

    def color_ports(self, public: Ports) -> dict[str, Ports]:
        """Each colour's private ports (defaults derived from the public ones)."""
        return {
            "blue": self.blue or _offset(public, 1),
            "green": self.green or _offset(public, 2),
        }

    def api(self, public: Ports) -> int:
        return self.api_port or public.backend + 9


def _offset(public: Ports, delta: int) -> Ports:
    return Ports.model_construct(backend=public.backend + delta, frontend=public.frontend + delta)


class CanaryFallback(StrEnum):
    REFUSE = "refuse"
    BLUE_GREEN = "blue-green"


class CanaryConfig(Strict):
    """How a canary moves traffic and when it gives up (strategy = "canary"; the
    colours, router and standby are ``blue_green``'s). Absolute thresholds are the
    design's; relative ones compare the canary with the stable colour in the same
    window, so a slow machine does not abort a good release."""

    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [5, 25, 50, 100],
        description="Percent of requests on the canary at each step, rising, ending at 100.",
    )
    step_seconds: Number = Field(
        default=30, gt=0, le=3600, description="How long each step is held and analysed."
    )
    min_requests: StrictInt = Field(
        default=20,
        ge=1,
        le=1_000_000,
        description="Canary requests a step needs before its error rate and p95 count.",
    )
    max_error_rate: Number = Field(
        default=0.05, ge=0, le=1, description="Canary 5xx share above which it is aborted."
    )
    max_p95_ms: Number = Field(
        default=2000, gt=0, description="Canary p95 latency above which it is aborted."
    )
    error_factor: Number = Field(
        default=2.0, ge=1, description="Abort when canary errors > factor x stable + margin."
    )
    error_margin: Number = Field(default=0.01, ge=0, le=1, description="See error_factor.")
    latency_factor: Number = Field(
        default=2.0, ge=1, description="Abort when canary p95 > factor x stable p95 + margin."
    )
    latency_margin_ms: Number = Field(default=100, ge=0, description="See latency_factor.")
    ws_sessions: StrictInt = Field(
        default=4,
        ge=0,
        le=32,
        description="WebSocket sessions slipway holds on each side to count abnormal ends"
        " (the [health.websocket] check's path and message; 0: none).",
    )
    max_ws_drop_rate: Number = Field(
        default=0.10,
        ge=0,
        le=1,
        description="Share of the canary's held WebSocket sessions ended abnormally above"
        " which it is aborted (also relative: error_factor x stable + error_margin).",
    )
    fallback: CanaryFallback = Field(
        default=CanaryFallback.REFUSE,
        description="When the releases cannot share the database: refuse, or blue-green.",
    )
    cookie: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,40}$")] = Field(
        default="slipway_side", description="Sticky cookie (per process: <cookie>_<process>)."
    )

    @model_validator(mode="after")
    def _rising_to_all(self) -> CanaryConfig:
        if not self.steps or self.steps[-1] != 100:
            raise ValueError("steps must end at 100")
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError("steps must rise")
        return self


class HostSpec(Strict):
    """A parsed host: ``local`` or ``user@host:port``."""

    local: bool
    user: str | None = None
    address: str | None = None
    port: int = 22

    def __str__(self) -> str:
        if self.local:
            return "local"
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.address}:{self.port}"


def parse_host(value: str) -> HostSpec:
    """Parse ``local`` or ``[user@]host[:port]``; anything else is a ValueError."""
    if value == "local":
        return HostSpec(local=True)
    match = _HOST_RE.fullmatch(value)
    if not match:
        raise ValueError("must be 'local' or 'user@host:port' (e.g. deploy@10.0.0.5:22)")
    port = int(match["port"]) if match["port"] else 22
    _check_port(port)
    return HostSpec(local=False, user=match["user"], address=match["host"], port=port)


def _check_host(value: str) -> str:
    parse_host(value)
    return value


Host = Annotated[str, AfterValidator(_check_host)]


class HostOverrides(Strict):
    """What differs on one host of an environment (``[environments.X.host_overrides."host"]``):
    machines of one fleet built at different times rarely agree on where things live."""

    root: AbsolutePath | None = Field(default=None, description="This host's deploy root.")
    host_path: list[AbsolutePath] | None = Field(
        default=None, description="This host's PATH directories (replace the environment's)."
    )
    host_env: dict[EnvKey, EnvValue] = Field(
        default_factory=dict,
        description="Extra environment for this host (over the environment's host_env).",
    )
    pm2_home: AbsolutePath | None = Field(default=None, description="This host's PM2_HOME.")
    supervisor_home: AbsolutePath | None = Field(
        default=None, description="This host's supervisor directory."
    )

    def applied_to(self, env: EnvironmentConfig) -> dict[str, object]:
        """The fields of ``env`` this override replaces, with their new values."""
        update: dict[str, object] = {
            name: getattr(self, name)
            for name in ("root", "host_path", "pm2_home", "supervisor_home")
            if getattr(self, name) is not None
        }
        if self.host_env:
            update["host_env"] = {**env.host_env, **self.host_env}
        return update


class EnvironmentConfig(Strict):
    branches: list[Branch] = Field(default_factory=list)
    deploy: DeployTrigger = DeployTrigger.MANUAL
    hosts: list[Host] = Field(default_factory=lambda: ["local"])
    root: AbsolutePath | None = Field(
        default=None, description="Deploy root on each host; required unless deploy = 'none'."
    )
    env_file: RelativePath | None = Field(default=None, description="e.g. .env.staging")
    required_env: list[EnvKey] = Field(default_factory=list)
    database: RelativePath
    ports: Ports
    process_manager: ProcessManagerName = ProcessManagerName.PM2
    health: HealthLevel = HealthLevel.BASIC
    strategy: Strategy = Strategy.RESTART
    keep_releases: StrictInt = Field(default=5, ge=2, le=100)
    approval: StrictBool = Field(default=False, description="A manual approval gates this deploy.")
    ssh: SshConfig = Field(default_factory=SshConfig)
    host_path: list[AbsolutePath] = Field(
        default_factory=list,
        description="Directories put first on PATH for commands on the host (pm2, uv, node).",
    )
    host_env: dict[EnvKey, EnvValue] = Field(
        default_factory=dict,
        description="Extra environment for commands on the host (proxy, CA bundle, caches).",
    )
    supervisor_home: AbsolutePath | None = Field(
        default=None,
        description="supervisor's directory on the host (its config, apps and socket;"
        " default ~/.slipway-supervisor).",
    )
    pm2_home: AbsolutePath | None = Field(
        default=None, description="PM2_HOME on the host (default: PM2's own, ~/.pm2)."
    )
    database_group: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description="A group that may read and write the database files (0660); default"
        " none (0600, the deploying user only).",
    )
    url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description="Public address shown in notifications (default http://<host>:<port>).",
    )
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    deployers: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}(\[bot\])?$")]] = (
        Field(
            default_factory=list,
            description="GitHub logins allowed to deploy (checked by preflight, besides"
            " the GitHub environment's reviewers).",
        )
    )
    backups: BackupConfig = Field(default_factory=lambda: BackupConfig(enabled=False))
    blue_green: BlueGreenConfig = Field(default_factory=BlueGreenConfig)
    canary: CanaryConfig = Field(default_factory=lambda: CanaryConfig())
    hooks: HooksConfig = Field(default_factory=lambda: HooksConfig())
    fleet: FleetConfig = Field(default_factory=lambda: FleetConfig())
    roles: dict[Host, list[Literal["backend", "frontend"]]] = Field(
        default_factory=dict,
        description="Which processes run on a host (by its entry in hosts); a host not"
        " named runs every process. A host running the backend holds a database.",
    )
    host_overrides: dict[Host, HostOverrides] = Field(
        default_factory=dict,
        description="Settings that differ on one host (by its entry in hosts): root,"
        " host_path, host_env, pm2_home, supervisor_home.",
    )

    @model_validator(mode="after")
    def _deployable(self) -> EnvironmentConfig:
        if self.deploy is not DeployTrigger.NONE and self.root is None:
            raise ValueError("'root' is required for an environment that is deployed")
        if len(set(self.hosts)) != len(self.hosts):
            raise ValueError("hosts must not repeat")
        for host, processes in self.roles.items():
            if host not in self.hosts:
                raise ValueError(f"roles names {host!r}, which is not in hosts")
            if not processes or len(set(processes)) != len(processes):
                raise ValueError(f"roles.{host!r}: list each process once, at least one")
        for host in self.host_overrides:
            if host not in self.hosts:
                raise ValueError(f"host_overrides names {host!r}, which is not in hosts")
        if self.strategy.coloured:
            self._check_blue_green_ports()
        return self

    def used_ports(self) -> dict[str, int]:
        """Every port this environment listens on, by where the configuration sets it."""
        used = {"ports.backend": self.ports.backend, "ports.frontend": self.ports.frontend}
        if self.strategy.coloured:
            used["blue_green.api_port"] = self.blue_green.api(self.ports)
            for color, ports in self.blue_green.color_ports(self.ports).items():
                used[f"blue_green.{color}.backend"] = ports.backend
                used[f"blue_green.{color}.frontend"] = ports.frontend
        return used

    def machines(self) -> set[str]:
        """The machines this environment runs on (a host's address, whatever user or
        SSH port reaches it)."""
        return {"local" if h.local else str(h.address).lower() for h in self.parsed_hosts()}

    def _check_blue_green_ports(self) -> None:
        seen: dict[int, str] = {}
        for where, port in self.used_ports().items():
            if port > 65535:
                raise ValueError(f"{where} would be {port}: set blue_green ports explicitly")
            if port in seen:
                raise ValueError(f"{where} and {seen[port]} are both port {port}")
            seen[port] = where

    def parsed_hosts(self) -> list[HostSpec]:
        return [parse_host(h) for h in self.hosts]

    def on_host(self, host: str) -> EnvironmentConfig:
        """This environment as ``host`` (``str`` of its parsed entry, as a transport
        names it) sees it: its overrides applied, ``host_env`` merged."""
        for entry, override in self.host_overrides.items():
            if str(parse_host(entry)) == host:
                return self.model_copy(update=override.applied_to(self))
        return self

    def on_machine(self, machine: str) -> list[EnvironmentConfig]:
        """This environment on ``machine`` (an entry of :meth:`machines`), once per host
        entry that reaches it."""
        return [
            self.on_host(str(spec))
            for spec in self.parsed_hosts()
            if ("local" if spec.local else str(spec.address).lower()) == machine
        ]

    def processes_on(self, host: str, processes: Iterable[str]) -> list[str]:
        """The processes ``host`` runs (``str`` of its parsed entry, as a transport
        names it): its roles, or every process."""
        for entry, role in self.roles.items():
            if str(parse_host(entry)) == host:
                return [p for p in processes if p in role]
        return list(processes)


class FleetConfig(Strict):
    """How a deploy to several hosts proceeds: ``parallel`` hosts at a time, activated
    in waves of ``batch_size`` behind a barrier (the README's "Fleets")."""

    parallel: StrictInt = Field(
        default=10, ge=1, le=256, description="Hosts worked on at once (lock, prepare, promote)."
    )
    batch_size: StrictInt | None = Field(
        default=None,
        ge=1,
        description="Hosts activated per wave (default: all at once); each wave must pass"
        " before the next starts.",
    )


class HooksConfig(Strict):
    pre_deploy: list[Argv] = Field(default_factory=list)
    post_deploy: list[Argv] = Field(default_factory=list)


EnvironmentConfig.model_rebuild()


def _layout(name: str, env: EnvironmentConfig) -> Layout:
    """Where an environment's files live on a host (imported here, not at the top: only
    `check` and `deploy` ask, and loading a configuration stays light)."""
    from slipway.state.host import Layout

    return Layout(str(env.root), name)


def _database(name: str, env: EnvironmentConfig) -> str:
    return posixpath.normpath(_layout(name, env).database(env.database))


def _state_dirs(name: str, env: EnvironmentConfig) -> list[str]:
    """Where slipway keeps an environment's own files (never an app's database)."""
    layout = _layout(name, env)
    dirs = [layout.state_dir, layout.releases, layout.backups]
    return dirs + ([env.backups.path] if env.backups.path else [])


def _collisions(
    a: str, env_a: EnvironmentConfig, b: str, env_b: EnvironmentConfig, where: str
) -> list[str]:
    found: list[str] = []
    if a != b:
        ports_b = {port: spot for spot, port in env_b.used_ports().items()}
        found += [
            f"environments.{a}.{spot} and environments.{b}.{ports_b[port]} are both"
            f" port {port} {where}"
            for spot, port in env_a.used_ports().items()
            if port in ports_b
        ]
        db_a = _database(a, env_a)
        if db_a == _database(b, env_b):
            found.append(
                f"environments.{a}.database and environments.{b}.database are both {db_a} {where}"
            )
    pairs = ((a, env_a, b, env_b),) if a == b else ((a, env_a, b, env_b), (b, env_b, a, env_a))
    for first, env_first, second, env_second in pairs:
        db = _database(first, env_first)
        for state in _state_dirs(second, env_second):
            if db == state or db.startswith(posixpath.normpath(state) + "/"):
                found.append(
                    f"environments.{first}.database ({db}) is inside environments.{second}'s"
                    f" own state ({state}) {where}: slipway's records, releases or backups"
                    " would be the app's database"
                )
    return found


def _first_collisions(
    a: str, env_a: EnvironmentConfig, b: str, env_b: EnvironmentConfig
) -> list[str]:
    """The collisions of two environments on the first machine they share that has any
    (each host as its overrides make it: roots may differ per host)."""
    for machine in sorted(env_a.machines() & env_b.machines()):
        found: list[str] = []
        for on_a in env_a.on_machine(machine):
            for on_b in env_b.on_machine(machine):
                found += _collisions(a, on_a, b, on_b, f"on host {machine}")
        if found:
            return list(dict.fromkeys(found))
    return []


class SlipwayConfig(Strict):
    """The whole ``slipway.toml`` (or ``[tool.slipway]`` of ``pyproject.toml``)."""

    project: ProjectConfig
    processes: dict[Literal["backend", "frontend"], ProcessConfig]
    environments: dict[Name, EnvironmentConfig]
    health: HealthConfig = Field(default_factory=HealthConfig)
    notify: list[NotifyChannel] = Field(default_factory=list)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    migrations: MigrationsConfig = Field(default_factory=MigrationsConfig)

    @model_validator(mode="after")
    def _processes_cover_ports(self) -> SlipwayConfig:
        if "backend" not in self.processes:
            raise ValueError("processes.backend is required")
        for name, process in self.processes.items():
            if process.port != name:
                raise ValueError(f"processes.{name}.port must be {name!r}")
        for env_name, env in self.environments.items():
            self.check_roles(env_name, env)
        for index, channel in enumerate(self.notify):
            unknown = set(channel.environments) - set(self.environments)
            if unknown:
                raise ValueError(
                    f"notify[{index}].environments names unknown environments: "
                    + ", ".join(sorted(unknown))
                )
        return self

    def check_roles(self, name: str, env: EnvironmentConfig) -> None:
        """Every process runs somewhere; the database shapes a fleet supports: every
        host with its own backend and database (independent instances), or frontends
        on hosts of their own in front of exactly one backend host."""
        if not env.roles:
            return
        where = f"environments.{name}.roles"
        on = {h: env.processes_on(str(parse_host(h)), self.processes) for h in env.hosts}
        for process in self.processes:
            if not any(process in found for found in on.values()):
                raise ValueError(f"{where}: no host runs {process}")
        for host, role in env.roles.items():
            unknown = [p for p in role if p not in self.processes]
            if unknown:
                raise ValueError(f"{where}.{host!r}: no process named {', '.join(unknown)}")
        backends = [h for h, found in on.items() if "backend" in found]
        frontend_only = [h for h, found in on.items() if "backend" not in found]
        if frontend_only and len(backends) > 1:
            raise ValueError(
                f"{where}: frontend-only hosts ({', '.join(frontend_only)}) need exactly one"
                f" backend host, not {len(backends)}: each backend host holds its own SQLite"
                " database, so requests from one frontend would reach different data"
            )

    def for_host(self, env_name: str, host: str) -> SlipwayConfig:
        """This configuration as ``host`` of ``env_name`` runs it: only its processes
        (its roles). Not validated again: a frontend-only host has no backend."""
        env = self.environment(env_name)
        if not (env.roles or env.host_overrides):
            return self
        keep = env.processes_on(host, self.processes)
        processes = {k: v for k, v in self.processes.items() if k in keep}
        environments = {**self.environments, env_name: env.on_host(host)}
        return self.model_copy(update={"processes": processes, "environments": environments})

    def collisions(self, only: str | None = None) -> list[str]:
        """Deployed environments on one machine that share a port or a database, or
        whose database is slipway's own state (a restore of one once rewound the
        other's audit log); ``only``: those involving that environment. Judged by
        `check` and before a deploy, with the hosts the run uses (CI passes them with
        --host; the file may name placeholders), never when loading: a rollback or a
        recovery must not be refused by it."""
        deployed = {n: e for n, e in self.environments.items() if e.root is not None}
        names = sorted(deployed)
        found: list[str] = []
        for index, a in enumerate(names):
            for b in names[index:]:
                if only is None or only in (a, b):
                    found += _first_collisions(a, deployed[a], b, deployed[b])
        return found

    def environment(self, name: str) -> EnvironmentConfig:
        """The named environment, or a UsageError listing the known ones."""
        from slipway.errors import UsageError

        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments)) or "none"
            raise UsageError(
                f"unknown environment {name!r}",
                hint=f"environments in this configuration: {known}",
            ) from None
