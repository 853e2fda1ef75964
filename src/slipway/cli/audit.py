"""``slipway audit ENV`` (implemented beside ``status``, which reads the same records)."""

from slipway.cli.status import audit_command as command

__all__ = ["command"]
