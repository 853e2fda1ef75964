"""A plain-text summary of what would be deployed where (``slipway check``).

Pure functions returning text or JSON-ready data, so the CLI only prints them and tests
assert them exactly.
"""

from __future__ import annotations

from typing import Any

from slipway.config.load import LoadedConfig
from slipway.config.model import EnvironmentConfig, HealthLevel, SlipwayConfig


def checks_for(config: SlipwayConfig, level: HealthLevel) -> list[str]:
    """Names of the checks an environment at ``level`` runs, in order."""
    if level is HealthLevel.NONE:
        return []
    checks = config.health.basic if level is HealthLevel.BASIC else config.health.comprehensive
    names = [f"{c.name} ({c.process} {c.path})" for c in checks]
    if level is HealthLevel.COMPREHENSIVE and config.health.websocket is not None:
        names.append(f"{config.health.websocket.name} (backend {config.health.websocket.path})")
    return names


def environment_summary(config: SlipwayConfig, name: str, env: EnvironmentConfig) -> list[str]:
    trigger = env.deploy.value + (" (approval required)" if env.approval else "")
    lines = [
        f"{name}",
        f"  deploy:     {trigger}; branches {', '.join(env.branches) or '-'}",
        f"  hosts:      {', '.join(str(h) for h in env.parsed_hosts())}",
        f"  root:       {env.root or '-'}",
        f"  ports:      backend {env.ports.backend}, frontend {env.ports.frontend}",
        f"  database:   {env.database}",
        f"  processes:  {env.process_manager.value}; strategy {env.strategy.value};"
        f" keep {env.keep_releases} releases",
        f"  env file:   {env.env_file or '-'}"
        + (f" (must hold {', '.join(env.required_env)})" if env.required_env else ""),
        f"  health:     {env.health.value}: {', '.join(checks_for(config, env.health)) or '-'}",
    ]
    if env.backups.enabled:
        lines.append(
            f"  backups:    before each deploy, kept {env.backups.retention_days} days"
            f" (at least the last {env.backups.keep_last})"
        )
    else:
        lines.append("  backups:    off")
    for host, override in env.host_overrides.items():
        changed = ", ".join(
            f"host_env {', '.join(override.host_env)}" if k == "host_env" else f"{k} {v}"
            for k, v in override.applied_to(env).items()
        )
        lines.append(f"  on {host}: {changed}")
    return lines


def summary_text(loaded: LoadedConfig, only: str | None = None) -> str:
    config = loaded.config
    names = [only] if only else list(config.environments)
    processes = ", ".join(f"{n} ({p.kind.value})" for n, p in config.processes.items())
    lines = [
        f"{loaded.path}: valid",
        f"project {config.project.name} from {config.project.repository}; processes: {processes}",
        "",
    ]
    for name in names:
        lines += environment_summary(config, name, config.environment(name))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def summary_data(loaded: LoadedConfig, only: str | None = None) -> dict[str, Any]:
    config = loaded.config
    names = [only] if only else list(config.environments)
    return {
        "path": str(loaded.path),
        "valid": True,
        "project": config.project.model_dump(mode="json"),
        "processes": {k: v.model_dump(mode="json") for k, v in config.processes.items()},
        "environments": {name: config.environment(name).model_dump(mode="json") for name in names},
    }
