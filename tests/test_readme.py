"""The README's configuration reference is checked against the model, both ways."""

from __future__ import annotations

import re

from pydantic import BaseModel
from support import ROOT

from slipway.config import model

README = (ROOT / "README.md").read_text()
REFERENCE = README[README.index("### Reference") : README.index("## The example app")]

SECTIONS: dict[str, type[BaseModel]] = {
    "project": model.ProjectConfig,
    "processes.*": model.ProcessConfig,
    "health": model.HealthConfig,
    "environments.*": model.EnvironmentConfig,
}
NESTED: dict[str, type[BaseModel]] = {
    "health.basic[]": model.HttpCheck,
    "health.websocket": model.WebSocketCheck,
    "environments.*.ssh": model.SshConfig,
    "environments.*.backups": model.BackupConfig,
    "environments.*.hooks": model.HooksConfig,
    "environments.*.blue_green": model.BlueGreenConfig,
    "environments.*.fleet": model.FleetConfig,
    "environments.*.ports": model.Ports,
    "environments.*.monitor": model.MonitorConfig,
    "health.sqlite": model.SqliteCheck,
    "notify[]": model.NotifyChannel,
    "gates": model.GatesConfig,
}


def test_every_configuration_key_is_documented():
    missing = []
    for models in (SECTIONS, NESTED):
        for prefix, cls in models.items():
            for field in cls.model_fields:
                spellings = (f"`{field}`", f".{field}`", f".{field}.")
                if not any(spelling in REFERENCE for spelling in spellings):
                    missing.append(f"{prefix}.{field}")
    assert missing == []


def test_every_documented_key_exists():
    keys = re.findall(r"^\| `([a-z_.*<>|\\\[\]]+)`", REFERENCE, flags=re.M)
    assert keys, "the reference table was not found"
    for key in keys:
        parts = [p for p in key.replace("\\", "").split(".") if p != "*" and not p.startswith("<")]
        section, *rest = parts
        if section.startswith("processes"):
            cls: type[BaseModel] = model.ProcessConfig
        elif section == "environments":
            cls = model.EnvironmentConfig
        elif section == "health":
            cls = model.HealthConfig
        else:
            cls = model.ProjectConfig
            rest = parts[1:]
        name = rest[0].split("[")[0] if rest else None
        if name:
            assert name in cls.model_fields, f"README documents unknown key {key}"
