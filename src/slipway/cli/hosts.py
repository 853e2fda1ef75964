"""Connecting to an environment's hosts (kept apart so light commands stay light)."""

from __future__ import annotations

from collections.abc import Generator

from slipway.config import LoadedConfig
from slipway.deploy.engine import Deployer, Emit
from slipway.secrets import Masker
from slipway.transports import connect


def host_session(
    loaded: LoadedConfig, environment: str, *, emit: Emit | None = None, actor: str | None = None
) -> Generator[Deployer, None, None]:
    """A Deployer per host of ``environment``, each transport closed after its turn."""
    env = loaded.config.environment(environment)
    masker = Masker()
    for host in env.parsed_hosts():
        with connect(host, env.ssh, masker) as transport:
            yield Deployer(loaded, environment, transport, emit=emit, actor=actor, masker=masker)
