"""Secrets that cannot leak by accident.

A :class:`Secret` prints as ``*****`` in ``str``, ``repr`` and f-strings; only
:meth:`Secret.reveal` gives the value, so every place that needs the raw value is
greppable. A :class:`Masker` knows every secret value in play and scrubs them out of any
text (command output, error messages, notifications, audit lines) before it leaves the
process.

Masking happens at the edges only: in what people and other systems read (terminal,
``--json`` events, records' error texts, audit details, incidents, notifications). What
slipway reads back from a host (JSON answers, ``pm2 jlist``, file contents) is never
masked: an env value such as ``exists`` or the project's own name must not change how
slipway parses ``{"exists": true}`` or a PM2 process name.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

MASK = "*****"

# Values shorter than this are not masked: masking "1" or "on" would mangle all output,
# and such values are not secrets worth the name.
MIN_SECRET_LENGTH = 4

# Env files hold settings beside secrets (``DEBUG=false``). These words are never
# secrets, and masking them would turn every ``false`` in a message into ``*****``.
NOT_SECRETS = frozenset({"true", "false", "null", "none", "yes", "no", "on", "off"})

_LIVE_MASKERS: weakref.WeakSet[Masker] = weakref.WeakSet()


def mask_everywhere(text: str) -> str:
    """``text`` with every secret any live :class:`Masker` knows masked: for the CLI's
    last line of defence, which prints errors raised far from the masker in play."""
    for masker in list(_LIVE_MASKERS):
        text = masker(text)
    return text


# Path words that are words (`/services/`, `/api/webhooks/`, `/v1/`), not tokens: a
# masked word would turn into ***** in every message. A token has a digit, a capital or
# a hyphen in it, or is long (an ntfy topic such as `acme-deploys` counts).
_PLAIN_WORD = re.compile(r"[a-z]{1,12}|v\d{1,2}")
# A query value shorter than this is a setting (`format=json`), not a token: masking it
# would turn the word into ***** in every message.
MIN_QUERY_SECRET = 6


def url_secret_parts(url: str) -> list[str]:
    """Every part of a webhook URL that could be its secret, as written and decoded: a
    receiver answering `no such hook /<part>` (or echoing a query value) must not put
    the secret in an error, the output or the audit log. For non-HTTP schemes (Apprise:
    `tgram://BOT_TOKEN/CHAT`) the host and port are the token too."""
    split = urlsplit(url)
    pieces = [p for p in split.path.split("/") if not _PLAIN_WORD.fullmatch(p)]
    for pair in filter(None, re.split("[&;]", split.query)):
        value = pair.partition("=")[2] or pair
        pieces += [value] if len(unquote(value)) >= MIN_QUERY_SECRET else []
    pieces += [split.fragment, split.password or "", split.username or ""]
    if split.scheme.lower() not in ("http", "https"):
        host, _, port = split.netloc.rpartition("@")[2].partition(":")
        pieces += [host, port, split.netloc.rpartition("@")[2]]
    found: list[str] = []
    for piece in filter(None, pieces):
        found += [piece, unquote(piece), quote(unquote(piece), safe="")]
    return sorted(set(found), key=len, reverse=True)


class Secret:
    """A string whose value is never shown unless :meth:`reveal` is called."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class Masker:
    """Replaces every registered secret value in a text with ``*****``."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._adding = threading.Lock()
        self.add(*values)
        _LIVE_MASKERS.add(self)

    def add(self, *values: str | Secret) -> None:
        # A fleet's hosts add their env files' values from several threads: without the
        # lock, a pattern compiled from an older set could replace a newer one.
        with self._adding:
            for value in values:
                raw = value.reveal() if isinstance(value, Secret) else value
                if len(raw) >= MIN_SECRET_LENGTH and raw.lower() not in NOT_SECRETS:
                    self._values.add(raw)
            # Longest first so a secret that contains another is masked whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def __len__(self) -> int:
        return len(self._values)
