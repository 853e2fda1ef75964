"""``slipway init``: a commented starter configuration for a CodeFRAME-shaped repo."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from slipway.errors import UsageError


@dataclass(frozen=True)
class Detected:
    """What ``init`` learned from the repository it was run in."""

    name: str
    module: str
    has_frontend: bool


def detect_project(root: Path) -> Detected:
    """Project name and backend module from ``pyproject.toml``; frontend from ``web-ui/``."""
    name = root.resolve().name
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            name = str(data.get("project", {}).get("name", name))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{pyproject}: not valid TOML: {exc}") from exc
    name = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "app"
    if not name[0].isalpha():
        name = "app-" + name
    package = name.replace("-", "_")
    module = f"{package}.server"
    for candidate in (root / package / "ui" / "server.py", root / "src" / package / "ui"):
        if candidate.exists():
            module = f"{package}.ui.server"
    return Detected(
        name=name[:40], module=module, has_frontend=(root / "web-ui" / "package.json").is_file()
    )


def render_starter(detected: Detected) -> str:
    text = resources.files("slipway.config").joinpath("starter.toml").read_text(encoding="utf-8")
    return text.replace("__NAME__", detected.name).replace("__MODULE__", detected.module)


def write_starter(root: Path, *, force: bool = False) -> Path:
    """Write ``slipway.toml`` in ``root``; refuse to overwrite unless ``force``."""
    target = root / "slipway.toml"
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", hint="pass --force to overwrite it")
    target.write_text(render_starter(detect_project(root)), encoding="utf-8")
    return target
