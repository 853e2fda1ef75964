"""PM2 commands. Only ever by exact app name: never ``all``, never another app's name."""

from __future__ import annotations

Argv = list[str]


def start(ecosystem: str) -> Argv:
    return ["pm2", "start", ecosystem]


def delete(name: str) -> Argv:
    if name in ("all", "") or name.isdigit():
        raise ValueError(f"refusing to build 'pm2 delete {name}': slipway only names its own apps")
    return ["pm2", "delete", name]


def save() -> Argv:
    return ["pm2", "save", "--force"]


def jlist() -> Argv:
    return ["pm2", "jlist"]
