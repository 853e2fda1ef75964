"""Install and build commands for a release (uv for Python, npm for Node)."""

from __future__ import annotations

Argv = list[str]


def uv_venv(venv: str) -> Argv:
    return ["uv", "venv", "--quiet", "--allow-existing", venv]


def uv_install(venv: str, requirements: str) -> Argv:
    return ["uv", "pip", "install", "--quiet", "--python", f"{venv}/bin/python", "-r", requirements]


def uv_sync(venv: str, *, install_project: bool) -> Argv:
    """Install exactly what ``uv.lock`` pins (``--frozen``: never re-resolve on the host;
    the lock was checked against pyproject on the deployer) without dev dependencies."""
    argv = ["uv", "sync", "--quiet", "--frozen", "--no-dev", "--python", f"{venv}/bin/python"]
    return argv if install_project else [*argv, "--no-install-project"]


def render(argv: list[str], values: dict[str, str]) -> Argv:
    """Fill ``{placeholders}`` word by word; a word never splits into several."""
    out: Argv = []
    for word in argv:
        for key, value in values.items():
            word = word.replace("{" + key + "}", value)
        out.append(word)
    return out
