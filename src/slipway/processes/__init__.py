"""Process managers behind one small interface. PM2 today; systemd and supervisor later."""

from slipway.processes.base import AppSpec, ProcessManager, ProcessState

__all__ = ["AppSpec", "ProcessManager", "ProcessState"]
