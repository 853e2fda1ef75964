"""Connecting to an environment's hosts (kept apart so light commands stay light)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from slipway.config import LoadedConfig
from slipway.config.model import EnvironmentConfig, HostSpec, Strategy
from slipway.deploy.engine import Deployer
from slipway.deploy.run import Emit
from slipway.errors import SlipwayError, UsageError
from slipway.secrets import Masker
from slipway.transports import connect

F = TypeVar("F", bound=Callable[..., Any])


def host_session(
    loaded: LoadedConfig, environment: str, *, emit: Emit | None = None, actor: str | None = None
) -> Generator[Deployer, None, None]:
    """A Deployer per host of ``environment``, each transport closed after its turn."""
    env = loaded.config.environment(environment)
    masker = Masker()
    for host in env.parsed_hosts():
        _warn_unverified(host, env.ssh.verify_host_keys)
        with connect(host, env.ssh, masker) as transport:
            yield Deployer(loaded, environment, transport, emit=emit, actor=actor, masker=masker)


@contextlib.contextmanager
def fleet_session(
    loaded: LoadedConfig, environment: str, *, emit: Emit, actor: str | None = None
) -> Iterator[list[tuple[str, Deployer]]]:
    """A Deployer per host of ``environment``, all connected at once (a fleet deploy
    goes back and forth between its hosts); each one's progress carries its host."""
    env = loaded.config.environment(environment)
    masker = Masker()
    specs = env.parsed_hosts()
    for spec in specs:
        _warn_unverified(spec, env.ssh.verify_host_keys)
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(env.fleet.parallel) as pool:
        futures = [pool.submit(connect, h, env.ssh, masker) for h in specs]
        transports, failed = [], None
        for spec, future in zip(specs, futures, strict=True):
            try:  # every connection that opened is closed again, whichever failed
                transports.append(stack.enter_context(future.result()))
            except SlipwayError as exc:
                failed = failed or SlipwayError(f"{spec}: {exc}", hint=exc.hint)
        if failed is not None:
            raise failed
        members = []
        for spec, transport in zip(specs, transports, strict=True):
            name = str(spec)
            labelled = _labelled(emit, name)
            d = Deployer(loaded, environment, transport, emit=labelled, actor=actor, masker=masker)
            members.append((name, d))
        yield members


def _labelled(emit: Emit, host: str) -> Emit:
    return lambda event: emit(dataclasses.replace(event, host=host))


def _warn_unverified(host: HostSpec, verify: bool) -> None:
    if not host.local and not verify:
        click.echo(
            f"warning: {host}: host keys are not verified (ssh.verify_host_keys = false):"
            " anything on the path to it can pose as it and read what slipway sends",
            err=True,
        )


def host_options(command: F) -> F:
    """--host / --root / --ssh-key: where to deploy, given at run time (CI passes them
    from secrets such as STAGING_HOST, so the config in the repository names no server)."""
    command = click.option(
        "--ssh-key", default=None, help="Private key file for SSH (overrides ssh.key)."
    )(command)
    command = click.option("--root", default=None, help="Deploy root (overrides root).")(command)
    command = click.option(
        "--host", multiple=True, help="user@host[:port] or local (repeatable; overrides hosts)."
    )(command)
    return command


def with_overrides(
    loaded: LoadedConfig,
    environment: str,
    hosts: tuple[str, ...],
    root: str | None,
    ssh_key: str | None,
) -> LoadedConfig:
    """``loaded`` with the environment's hosts, root or SSH key replaced (validated)."""
    if not (hosts or root or ssh_key):
        return loaded
    current = loaded.config.environment(environment)
    own_roots = [h for h, o in current.host_overrides.items() if o.root is not None]
    if root and own_roots:
        raise UsageError(
            f"--root: environments.{environment}.host_overrides gives {', '.join(own_roots)}"
            " a root of its own, which --root would not change",
            hint="set the root in the configuration, or deploy those hosts with --host",
        )
    raw = current.model_dump(mode="json")
    if hosts:
        raw["hosts"] = [h.strip() for h in hosts]
    if root:
        raw["root"] = root
    if ssh_key:
        raw["ssh"]["key"] = ssh_key
    return _replaced(loaded, environment, raw, "--host/--root/--ssh-key")


def with_strategy(loaded: LoadedConfig, environment: str, strategy: str | None) -> LoadedConfig:
    """``loaded`` with the environment deployed by ``strategy`` this once (validated as
    the configuration is)."""
    if strategy is None:
        return loaded
    current = loaded.config.environment(environment)
    if Strategy(strategy).coloured != current.strategy.coloured:
        raise UsageError(
            f"--strategy {strategy}: environments.{environment} uses"
            f" {current.strategy.value}; a release may switch only between blue-green and"
            " canary (both run on colours behind the router)",
            hint=f"change strategy in the configuration to move {environment} for good",
        )
    raw = current.model_dump(mode="json")
    return _replaced(loaded, environment, {**raw, "strategy": strategy}, "--strategy")


def _replaced(
    loaded: LoadedConfig, environment: str, raw: dict[str, Any], options: str
) -> LoadedConfig:
    try:
        env = EnvironmentConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise UsageError(f"{options}: {problems}") from None
    environments = {**loaded.config.environments, environment: env}
    config = loaded.config.model_copy(update={"environments": environments})
    try:
        config.check_roles(environment, env)  # the hosts given may not fit the roles
    except ValueError as exc:
        raise UsageError(f"--host: {exc}") from None
    return dataclasses.replace(loaded, config=config)
