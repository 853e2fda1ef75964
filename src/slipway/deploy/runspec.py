"""Per-release run specs: how a release's processes start, stored in the release itself.

When a release is built, its processes as configured at that moment (start argv,
working directory, kind, port, build variables, drain time) and the names of the env
file's keys (never their values) are written to ``<release>/.slipway-run.json``.
Starting a release later (an automatic rollback, a warm standby brought back, a
recovery, ``slipway rollback``) uses that release's own spec, never today's
configuration: a typo in the configuration of a new release must not break the way
back to the previous one.

Releases built before run specs existed have none; they start from the configuration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from slipway.config.model import ProcessConfig
from slipway.state.host import read_text
from slipway.transports.base import Transport

RUN_SPEC = ".slipway-run.json"
VERSION = 1


def path_in(release_dir: str) -> str:
    return f"{release_dir}/{RUN_SPEC}"


def render(processes: Mapping[str, ProcessConfig], env_keys: list[str]) -> str:
    """The spec's JSON text (pure: tests compare it)."""
    spec: dict[str, Any] = {
        "version": VERSION,
        "processes": {name: p.model_dump(mode="json") for name, p in processes.items()},
        "env_keys": sorted(env_keys),
    }
    return json.dumps(spec, indent=2, sort_keys=True)


def save(
    transport: Transport,
    release_dir: str,
    processes: Mapping[str, ProcessConfig],
    env_keys: list[str],
) -> None:
    transport.put_text(render(processes, env_keys), path_in(release_dir), mode=0o600)


def parse(text: str) -> dict[str, ProcessConfig] | None:
    """The processes of a spec's text; None when it is missing or unreadable (the
    caller falls back to the configuration)."""
    try:
        spec = json.loads(text)
        raw = spec["processes"]
        return {str(name): ProcessConfig.model_validate(p) for name, p in raw.items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValidationError):
        return None


def load(transport: Transport, release_dir: str) -> dict[str, ProcessConfig] | None:
    text = read_text(transport, path_in(release_dir))
    return parse(text) if text is not None else None
