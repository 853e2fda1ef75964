"""Each service's native message format, within its documented limits.

Slack (incoming webhook): ``text`` as the notification fallback plus Block Kit blocks; a
header's text is at most 150 characters, a section's text 3000, a section at most 10
fields of 2000 each. Discord (webhook): one embed; title 256, description 4096, at most
25 fields with names of 256 and values of 1024, 6000 characters in all. Apprise: a
title and a Markdown body, which Apprise adapts to each of its services.
"""

from __future__ import annotations

from typing import Any

from slipway.notify.message import Notification

GREEN, RED = 0x2EB67D, 0xE01E5A


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _code(text: str, limit: int) -> str:
    # The tail of an error is what matters: clip from the front.
    body = text if len(text) <= limit - 8 else "…" + text[-(limit - 9) :]
    return f"```\n{body}\n```"


def slack_escape(text: str) -> str:
    """Slack's three control characters, escaped as its docs ask: a commit subject or
    an actor holding ``<!channel>`` or ``<@U123>`` is shown, never sent as a mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(n: Notification) -> dict[str, Any]:
    e = slack_escape
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(e(n.title), 150)}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": clip(f"*{e(k)}*\n{e(v)}", 2000)}
                for k, v in n.fields[:10]
            ],
        },
    ]
    if n.details:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _code(e(n.details), 3000)}}
        )
    if n.next_steps:
        text = clip(f"*Next:* {e(n.next_steps)}", 3000)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    if n.url:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(e(n.url), 2000)}]}
        )
    return {"text": clip(e(n.title), 3000), "blocks": blocks}


def discord(n: Notification) -> dict[str, Any]:
    embed: dict[str, Any] = {
        "title": clip(n.title, 256),
        "color": GREEN if n.ok else RED,
        "fields": [
            {"name": clip(k, 256), "value": clip(v or "-", 1024), "inline": len(v) < 40}
            for k, v in n.fields[:24]
        ],
    }
    if n.details:
        embed["description"] = _code(n.details, 4096 - 200)
    if n.next_steps:
        embed["fields"].append({"name": "Next", "value": clip(n.next_steps, 1024), "inline": False})
    if n.url:
        embed["url"] = n.url
    return {"username": "slipway", "embeds": [embed], "allowed_mentions": {"parse": []}}


def markdown(n: Notification) -> tuple[str, str]:
    """(title, body) for Apprise."""
    lines = [f"**{k}:** {v}" for k, v in n.fields]
    if n.details:
        lines.append(_code(n.details, 4000))
    if n.next_steps:
        lines.append(f"**Next:** {n.next_steps}")
    if n.url:
        lines.append(n.url)
    return n.title, "\n".join(lines)
