"""Step-by-step progress for deploys: one line per step, or JSON events with --json.

Colour only when stdout is a terminal and NO_COLOR / --no-color are not set.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict

import click

from slipway.deploy.run import StepEvent

SYMBOLS = {"ok": "✓", "failed": "✗", "info": "·", "warning": "!"}
COLOURS = {"ok": "green", "failed": "red", "info": None, "warning": "yellow"}


class Progress:
    def __init__(self, *, as_json: bool, color: bool) -> None:
        self.as_json = as_json
        self.color = color and sys.stdout.isatty()

    def __call__(self, event: StepEvent) -> None:
        if self.as_json:
            click.echo(json.dumps({"event": "step", "time": time.time(), **asdict(event)}))
            return
        if event.status == "start":
            if self.color and not event.host:  # a fleet's lines interleave: no redraw
                click.echo(f"  … {event.step}", nl=False)
                click.echo("\r", nl=False)
            return
        symbol = SYMBOLS.get(event.status, "·")
        if event.status in ("info", "warning"):
            line = f"      {symbol if event.status == 'warning' else ''}{event.detail}"
        else:
            line = f"  {symbol} {event.step:<10} {event.seconds:6.2f}s"
            if event.status == "failed" and event.detail:
                line += f"  {event.detail.splitlines()[0]}"
        if event.host:
            line = f"[{event.host}] {line.lstrip()}"
        fg = COLOURS.get(event.status) if self.color else None
        click.echo(click.style(line, fg=fg) if fg else line)
