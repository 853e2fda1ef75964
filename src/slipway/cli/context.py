"""Helpers shared by the commands: loading the configuration the user pointed at, output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from slipway.config import LoadedConfig, load_config
from slipway.errors import ConfigError, ConfigIssue
from slipway.state.lock import MAX_WAIT_SECONDS


def loaded_config(ctx: click.Context) -> LoadedConfig:
    path = ctx.obj.get("config_path") if ctx.obj else None
    return load_config(Path(path) if path else None)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def echo_json_line(data: Any) -> None:
    """One JSON object on one line (JSON Lines), for event streams."""
    click.echo(json.dumps(data, sort_keys=True, default=str))


class SafePath(click.Path):
    """click's Path, refusing a NUL first (click stats the path, and a NUL made that a
    ValueError: an internal error instead of a usage error)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if "\x00" in str(value):
            self.fail("contains a NUL character", param, ctx)
        return super().convert(value, param, ctx)


# --lock-wait: seconds, at most a day (1e308 once overflowed a queue's timeout).
LOCK_WAIT = click.FloatRange(0, MAX_WAIT_SECONDS)


def refuse_collisions(loaded: LoadedConfig, environment: str | None) -> None:
    """Environments on one machine sharing a port or a database (all, or those
    involving ``environment``): a configuration error, before anything runs."""
    found = loaded.config.collisions(environment)
    if found:
        raise ConfigError(str(loaded.path), [ConfigIssue("", text) for text in found])
