"""Routers own an environment's public ports and move traffic between colours.

One module per backend behind :class:`~slipway.routers.base.Router`; :func:`make_router`
is the registry. The contract tests (``tests/test_routers.py``) run against every one.
"""

from __future__ import annotations

from slipway.config.model import RouterKind
from slipway.processes.base import ProcessManager
from slipway.routers.base import Router, RouterSetup, Split, SwitchReport, Target
from slipway.routers.nginx import Nginx
from slipway.routers.traefik import Traefik
from slipway.transports.base import Transport

BACKENDS: dict[RouterKind, type[Router]] = {RouterKind.TRAEFIK: Traefik, RouterKind.NGINX: Nginx}


def make_router(
    kind: RouterKind, transport: Transport, pm: ProcessManager, setup: RouterSetup
) -> Router:
    return BACKENDS[kind](transport, pm, setup)


__all__ = ["Router", "RouterSetup", "Split", "SwitchReport", "Target", "make_router"]
