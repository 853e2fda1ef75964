"""Process managers behind one small interface, chosen by ``process_manager`` in the
configuration: PM2 or supervisor; another (systemd) is one new module and one line
in :data:`MANAGERS`."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from slipway.config.model import ProcessManagerName
from slipway.errors import UsageError
from slipway.processes.base import AppSpec, ProcessManager, ProcessState
from slipway.processes.none import NoProcessManager
from slipway.processes.pm2 import Pm2
from slipway.processes.supervisor import Supervisor
from slipway.transports.base import Transport

MANAGERS: dict[ProcessManagerName, Callable[[Transport, Mapping[str, str]], ProcessManager]] = {
    ProcessManagerName.PM2: Pm2,
    ProcessManagerName.SUPERVISOR: Supervisor,
    ProcessManagerName.NONE: NoProcessManager,
}


def make_process_manager(
    name: ProcessManagerName, transport: Transport, env: Mapping[str, str]
) -> ProcessManager:
    factory = MANAGERS.get(name)
    if factory is None:  # a name the config accepts but no module implements yet
        known = ", ".join(m.value for m in MANAGERS)
        raise UsageError(f"process_manager = {name.value!r} is not available (known: {known})")
    return factory(transport, env)


__all__ = ["MANAGERS", "AppSpec", "ProcessManager", "ProcessState", "make_process_manager"]
