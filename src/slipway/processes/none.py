"""``process_manager = "none"``: an environment whose processes slipway does not run
(development, where the developer starts the app). Reading status works (nothing is
there); starting or stopping is refused with the reason."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slipway.errors import UsageError
from slipway.processes.base import AppSpec, ProcessManager, ProcessState
from slipway.transports.base import Transport


class NoProcessManager(ProcessManager):
    def __init__(self, transport: Transport, env: Mapping[str, str]) -> None:
        self.transport = transport

    def _refuse(self) -> UsageError:
        return UsageError(
            'this environment has process_manager = "none": slipway does not start or'
            " stop its processes",
            hint='set process_manager = "pm2" to deploy it',
        )

    def start(self, apps: Sequence[AppSpec], config_path: str) -> None:
        raise self._refuse()

    def stop(self, names: Sequence[str]) -> None:
        raise self._refuse()

    def status(self, names: Sequence[str]) -> dict[str, ProcessState]:
        return {name: ProcessState(name, "missing", None, 0) for name in names}

    def save(self) -> None:
        return None
