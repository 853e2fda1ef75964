"""Notifications: what happened (message), how each service wants it (formats), and
delivery that never holds a deploy up (send)."""

from slipway.notify.message import Notification
from slipway.notify.send import Delivery, Notifier

__all__ = ["Delivery", "Notification", "Notifier"]
