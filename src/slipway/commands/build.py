"""Install and build commands for a release (uv for Python, npm for Node)."""

from __future__ import annotations

Argv = list[str]


def uv_venv(venv: str) -> Argv:
    return ["uv", "venv", "--quiet", "--allow-existing", venv]


def uv_install(venv: str, requirements: str) -> Argv:
    return ["uv", "pip", "install", "--quiet", "--python", f"{venv}/bin/python", "-r", requirements]


def render(argv: list[str], values: dict[str, str]) -> Argv:
    """Fill ``{placeholders}`` word by word; a word never splits into several."""
    out: Argv = []
    for word in argv:
        for key, value in values.items():
            word = word.replace("{" + key + "}", value)
        out.append(word)
    return out
