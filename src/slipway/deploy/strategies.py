"""The strategy registry: ``strategy`` in an environment's configuration picks one.

Adding a strategy (canary, say) is one module with a class that satisfies
:class:`slipway.deploy.strategy.Strategy`, and one line here.
"""

from __future__ import annotations

from slipway.config.model import EnvironmentConfig
from slipway.config.model import Strategy as StrategyName
from slipway.deploy.bluegreen import BlueGreen
from slipway.deploy.canary import Canary
from slipway.deploy.restart import Restart
from slipway.deploy.strategy import Strategy
from slipway.errors import UsageError

STRATEGIES: dict[StrategyName, Strategy] = {
    StrategyName.RESTART: Restart(),
    StrategyName.BLUE_GREEN: BlueGreen(),
    StrategyName.CANARY: Canary(),
}


def named(name: str) -> Strategy | None:
    """The strategy a journal names, or None for a name this version does not know."""
    return next((s for key, s in STRATEGIES.items() if key.value == name), None)


def for_env(env: EnvironmentConfig) -> Strategy:
    found = STRATEGIES.get(env.strategy)
    if found is None:
        known = ", ".join(name.value for name in STRATEGIES)
        raise UsageError(
            f"strategy = {env.strategy.value!r} cannot deploy to hosts (known: {known})"
        )
    return found
