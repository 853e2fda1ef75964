"""Transports run argv lists on a host: ``local`` (subprocess) and ``ssh`` (asyncssh).

Both share :class:`~slipway.transports.base.Transport` so the deploy code never knows
which one it drives (httpx's injected-transport habit).
"""

from __future__ import annotations

from slipway.config.model import HostSpec, SshConfig
from slipway.secrets import Masker
from slipway.transports.base import Result, Transport


def connect(host: HostSpec, ssh: SshConfig, masker: Masker | None = None) -> Transport:
    """A transport for ``host``: local for ``local``, else an SSH connection."""
    if host.local:
        from slipway.transports.local import LocalTransport

        return LocalTransport(masker=masker)
    from slipway.transports.ssh import SshTransport

    return SshTransport(host, ssh, masker=masker)


__all__ = ["Result", "Transport", "connect"]
