"""``slipway schema``: the configuration's JSON Schema, for editor completion."""

from __future__ import annotations

import click

from slipway.cli.context import echo_json
from slipway.config.model import SlipwayConfig


@click.command(name="schema")
def command() -> None:
    """Print the JSON Schema of slipway.toml.

    Point your editor at it (e.g. taplo/Even Better TOML: `#:schema ./slipway.schema.json`).
    """
    schema = SlipwayConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "slipway.toml"
    echo_json(schema)
