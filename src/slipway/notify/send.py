"""Delivery: each channel gets the message in its own format, with retries, inside a
short deadline, and the outcome is recorded, never raised.

A notification must not fail a deploy, nor delay it beyond the channel's
``timeout_seconds``: channels are sent in parallel daemon threads and whatever has not
answered by the deadline is recorded as timed out. Retries cover connection errors, 5xx
and 429 (honouring ``Retry-After`` when it fits in the deadline); any other 4xx is a
configuration problem and is not retried. Webhook URLs are secrets: they are read only
here, masked in every error, and never appear in a :class:`Delivery`.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from slipway.config.model import NotifyChannel, NotifyKind, SlipwayConfig
from slipway.errors import SlipwayError
from slipway.notify import formats
from slipway.notify.message import Notification
from slipway.secrets import Masker, Secret, url_secret_parts

FIRST_BACKOFF = 0.25

# (delivered, attempts, last HTTP status, last error)
Attempted = tuple[bool, int, int | None, str | None]


@dataclass(frozen=True)
class Delivery:
    channel: str  # "slack via $SLACK_WEBHOOK_URL": never the URL itself
    ok: bool
    attempts: int
    status: int | None
    error: str | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def channel_label(channel: NotifyChannel) -> str:
    return f"{channel.kind.value} via {channel.source}"


def webhook_url(channel: NotifyChannel, environ: dict[str, str] | None = None) -> Secret:
    """The channel's URL from its variable or file; a clear error when missing, or when
    the file is readable by others (it holds a secret)."""
    if channel.url_env:
        value = (environ if environ is not None else os.environ).get(channel.url_env, "")
        if not value.strip():
            raise SlipwayError(f"{channel_label(channel)}: ${channel.url_env} is not set")
        return Secret(value.strip())
    path = Path(str(channel.url_file)).expanduser()
    try:
        mode = path.stat().st_mode
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SlipwayError(f"{channel_label(channel)}: cannot read: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SlipwayError(
            f"{channel_label(channel)}: the file is readable by others"
            f" (mode {stat.S_IMODE(mode):04o})",
            hint=f"chmod 600 {path}",
        )
    if not value:
        raise SlipwayError(f"{channel_label(channel)}: the file is empty")
    return Secret(value)


def _retry_after(response: httpx.Response) -> float:
    """Seconds to wait before retrying a 429 (Slack's header, Discord's body)."""
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        pass
    try:
        body = response.json()
        return float(body.get("retry_after", 1.0)) if isinstance(body, dict) else 1.0
    except ValueError:
        return 1.0


def post_json(url: Secret, payload: dict[str, Any], timeout: float) -> Attempted:
    """POST until accepted or out of time: (ok, attempts, last status, last error)."""
    deadline = time.monotonic() + timeout
    attempts, status, error = 0, None, None
    backoff = FIRST_BACKOFF
    with httpx.Client() as client:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                return False, attempts, status, error or "deadline passed"
            attempts += 1
            wait = backoff
            try:
                response = client.post(url.reveal(), json=payload, timeout=remaining)
            except httpx.HTTPError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}".rstrip(": ")
            else:
                status = response.status_code
                if response.is_success:
                    return True, attempts, status, None
                error = f"HTTP {status}: {response.text[:200]}".strip()
                if status == 429:
                    wait = _retry_after(response)
                elif status < 500:
                    return False, attempts, status, error  # the payload or URL is wrong
            if time.monotonic() + wait >= deadline:
                return False, attempts, status, error
            time.sleep(wait)
            backoff *= 2


def send_apprise(url: Secret, note: Notification, timeout: float) -> Attempted:
    """Through Apprise (optional dependency), retried until the deadline."""
    try:
        import apprise
    except ImportError:
        return False, 0, None, "apprise is not installed (pip install 'slipway[apprise]')"
    title, body = formats.markdown(note)
    deadline = time.monotonic() + timeout
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        sender = apprise.Apprise()
        if not sender.add(url.reveal()):
            return False, attempts, None, "Apprise does not understand this URL"
        if sender.notify(title=title, body=body, body_format=apprise.NotifyFormat.MARKDOWN):
            return True, attempts, None, None
        time.sleep(min(FIRST_BACKOFF * attempts, max(0.0, deadline - time.monotonic())))
    return False, attempts, None, "Apprise could not deliver before the deadline"


class Notifier:
    """Sends one environment's notifications to the channels that want them."""

    def __init__(
        self,
        channels: Sequence[NotifyChannel],
        env: str,
        masker: Masker,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.env = env
        self.channels = [c for c in channels if not c.environments or env in c.environments]
        self.masker = masker
        self.environ = environ

    @classmethod
    def for_env(cls, config: SlipwayConfig, env: str, masker: Masker) -> Notifier:
        return cls(config.notify, env, masker)

    def send(self, note: Notification) -> list[Delivery]:
        """Deliver ``note`` to every interested channel, in parallel, within deadlines."""
        wanted = [c for c in self.channels if note.event in c.events]
        results: list[Delivery | None] = [None] * len(wanted)
        threads = []
        for index, channel in enumerate(wanted):
            thread = threading.Thread(
                target=self._deliver_into, args=(results, index, channel, note), daemon=True
            )
            thread.start()
            threads.append(thread)
        started = time.monotonic()
        for channel, thread in zip(wanted, threads, strict=True):
            thread.join(max(0.0, channel.timeout_seconds + 0.5 - (time.monotonic() - started)))
        return [
            (
                r
                if r is not None
                else Delivery(channel_label(c), False, 0, None, "timed out", c.timeout_seconds)
            )
            for c, r in zip(wanted, results, strict=True)
        ]

    def _deliver_into(
        self, results: list[Delivery | None], index: int, channel: NotifyChannel, note: Notification
    ) -> None:
        results[index] = self.deliver(channel, note)

    def deliver(self, channel: NotifyChannel, note: Notification) -> Delivery:
        started = time.monotonic()
        label = channel_label(channel)
        try:
            url = webhook_url(channel, self.environ)
        except SlipwayError as exc:
            return Delivery(label, False, 0, None, str(exc), 0.0)
        self.masker.add(url, *url_secret_parts(url.reveal()))
        try:
            ok, attempts, status, error = self._send(channel, url, note)
        except Exception as exc:  # a notification never breaks the caller
            ok, attempts, status, error = False, 1, None, f"{type(exc).__name__}: {exc}"
        seconds = round(time.monotonic() - started, 3)
        masked = self.masker(error) if error else None
        return Delivery(label, ok, attempts, status, masked, seconds)

    @staticmethod
    def _send(channel: NotifyChannel, url: Secret, note: Notification) -> Attempted:
        if channel.kind is NotifyKind.SLACK:
            return post_json(url, formats.slack(note), channel.timeout_seconds)
        if channel.kind is NotifyKind.DISCORD:
            return post_json(url, formats.discord(note), channel.timeout_seconds)
        return send_apprise(url, note, channel.timeout_seconds)
