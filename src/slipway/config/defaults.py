"""The design's three environments and their defaults.

A user's ``[environments.production]`` only has to say what differs (hosts, root):
ports 8200/8100, the database path, PM2, comprehensive checks, manual approval,
blue-green and 30-day backups come from here. Values the user gives always win; nested
tables (``ports``, ``backups``, ``ssh``) are merged key by key.
"""

from __future__ import annotations

import copy
from typing import Any

ENVIRONMENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "development": {
        "branches": ["feature/*"],
        "deploy": "none",
        "ports": {"backend": 8000, "frontend": 3000},
        "database": ".codeframe/state.db",
        "process_manager": "none",
        "health": "none",
        "strategy": "direct",
    },
    "staging": {
        "branches": ["staging", "development"],
        "deploy": "automatic",
        "ports": {"backend": 14200, "frontend": 14100},
        "database": "staging/.codeframe/state.db",
        "env_file": ".env.staging",
        "process_manager": "pm2",
        "health": "basic",
        "strategy": "restart",
    },
    "production": {
        "branches": ["main"],
        "deploy": "manual",
        "approval": True,
        "ports": {"backend": 8200, "frontend": 8100},
        "database": "production/.codeframe/state.db",
        "env_file": ".env.production",
        "process_manager": "pm2",
        "health": "comprehensive",
        "strategy": "blue-green",
        "backups": {"enabled": True, "retention_days": 30},
    },
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``override`` on top of ``base``, tables merged recursively."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_environment_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """Fill each known environment's missing keys with the design's defaults.

    Anything that is not shaped as expected is passed through untouched so the model's
    validation reports it with its location, rather than this function guessing.
    """
    environments = raw.get("environments")
    if not isinstance(environments, dict):
        return raw
    filled: dict[str, Any] = {}
    for name, env in environments.items():
        defaults = ENVIRONMENT_DEFAULTS.get(name)
        if defaults is not None and isinstance(env, dict):
            filled[name] = deep_merge(defaults, env)
        else:
            filled[name] = env
    return {**raw, "environments": filled}
