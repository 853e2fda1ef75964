"""``slipway init --github``: the three workflows of the design, written into the app's
repository. They stay thin: every real step is a ``slipway`` command that also runs
from a laptop, so a workflow holds only triggers, permissions, secrets and order.

The templates live next to this module; the only substitutions are versions and the
staging branches from the configuration, so what is tested is what users get.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from slipway import __version__
from slipway.config.model import SlipwayConfig
from slipway.errors import UsageError

WORKFLOWS = ("ci-tests.yml", "deploy-staging.yml", "deploy-production.yml")
PYTHON_VERSION = "3.11"
NODE_VERSION = "20"


def render(config: SlipwayConfig, slipway_spec: str | None = None) -> dict[str, str]:
    """Each workflow's text (pure)."""
    staging = config.environments.get("staging")
    branches = staging.branches if staging and staging.branches else ["staging", "development"]
    values = {
        "@@PYTHON@@": PYTHON_VERSION,
        "@@NODE@@": NODE_VERSION,
        "@@SLIPWAY@@": slipway_spec or f"slipway=={__version__}",
        "@@STAGING_BRANCHES@@": ", ".join(branches),
    }
    rendered = {}
    templates = resources.files("slipway.github").joinpath("templates")
    for name in WORKFLOWS:
        text = templates.joinpath(name).read_text(encoding="utf-8")
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        rendered[name] = text
    return rendered


def write(
    config: SlipwayConfig, repo: Path, *, force: bool = False, slipway_spec: str | None = None
) -> list[Path]:
    """Write the workflows under ``repo/.github/workflows``; existing files need ``force``."""
    directory = repo / ".github" / "workflows"
    rendered = render(config, slipway_spec)
    existing = [name for name in rendered if (directory / name).exists()]
    if existing and not force:
        raise UsageError(
            f"{directory} already has {', '.join(existing)}",
            hint="pass --force to overwrite them",
        )
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
