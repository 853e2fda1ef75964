"""Finding, parsing and validating the configuration, with errors a person can act on.

Pydantic's messages are precise but written for programmers ("Input should be a valid
integer"). This module turns each one into ``dotted.location: what is wrong (hint)``,
adds "did you mean" for unknown keys, and reports every problem in one go so a user
fixes the file once, not once per error.
"""

from __future__ import annotations

import difflib
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from slipway.config.defaults import apply_environment_defaults
from slipway.config.model import SlipwayConfig
from slipway.errors import ConfigError, ConfigIssue

CONFIG_FILENAME = "slipway.toml"
PYPROJECT_FILENAME = "pyproject.toml"


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration and the file it came from (paths resolve against it)."""

    config: SlipwayConfig
    path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def repository_path(self) -> Path | None:
        """The git repository as a local path, or None when it is a URL."""
        repo = self.config.project.repository
        if "://" in repo or repo.startswith("git@"):
            return None
        return (self.base_dir / repo).resolve()


def find_config(start: Path) -> Path:
    """``slipway.toml`` in ``start`` or a parent, else a ``pyproject.toml`` with a table."""
    for directory in (start, *start.parents):
        candidate = directory / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
        pyproject = directory / PYPROJECT_FILENAME
        if pyproject.is_file() and _has_tool_table(pyproject):
            return pyproject
    raise ConfigError(
        str(start),
        [ConfigIssue("", f"no {CONFIG_FILENAME} (or [tool.slipway] in pyproject.toml) found")],
        hint="run 'slipway init' to write a starter configuration",
    )


def _has_tool_table(pyproject: Path) -> bool:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return isinstance(data.get("tool"), dict) and "slipway" in data["tool"]


def load_config(path: Path | None = None, *, cwd: Path | None = None) -> LoadedConfig:
    """Read and validate the configuration; raise ConfigError listing every issue."""
    path = path if path is not None else find_config(cwd or Path.cwd())
    raw = read_toml(path)
    if path.name == PYPROJECT_FILENAME:
        tool = raw.get("tool", {})
        if not isinstance(tool, dict) or not isinstance(tool.get("slipway"), dict):
            raise ConfigError(str(path), [ConfigIssue("tool.slipway", "table is missing")])
        raw = tool["slipway"]
    return LoadedConfig(config=validate_config(raw, source=str(path)), path=path)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), [ConfigIssue("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [ConfigIssue("", f"cannot read: {exc}")]) from exc
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ConfigError(
            str(path), [ConfigIssue("", "nested too deeply to read (tables or arrays)")]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            str(path), [ConfigIssue("", f"not valid TOML: {exc}")], hint="check the TOML syntax"
        ) from exc


def validate_config(raw: dict[str, Any], *, source: str = "<config>") -> SlipwayConfig:
    """Validate an already-parsed mapping (defaults applied first)."""
    try:
        return SlipwayConfig.model_validate(apply_environment_defaults(raw))
    except ValidationError as exc:
        issues = [_issue_from_pydantic(err) for err in exc.errors()]
        raise ConfigError(source, issues) from None


# --- turning pydantic errors into located, readable issues ----------------------------

_MESSAGES = {
    "missing": "is required",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
}


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item == "[key]":
            parts.append(" (name)")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts)


def _issue_from_pydantic(err: Any) -> ConfigIssue:
    loc: tuple[int | str, ...] = tuple(err["loc"])
    kind: str = err["type"]
    if kind == "extra_forbidden":
        return ConfigIssue(_location(loc), "unknown key", _did_you_mean(loc))
    if kind in _MESSAGES:
        return ConfigIssue(_location(loc), _MESSAGES[kind])
    message: str = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    message = message.replace("Input should be", "must be")
    message = message.replace("String should match pattern", "must match the pattern")
    if kind == "too_short":
        message = "must not be empty"
    return ConfigIssue(_location(loc), message)


def _did_you_mean(loc: tuple[int | str, ...]) -> str | None:
    known = _known_keys(loc[:-1])
    candidates = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if candidates:
        return f"did you mean '{candidates[0]}'?"
    if known:
        return "known keys: " + ", ".join(sorted(known))
    return None


def _known_keys(parent: tuple[int | str, ...]) -> list[str]:
    """Field names of the model found at ``parent`` (dict keys and list indexes skipped)."""
    model: type[BaseModel] | None = SlipwayConfig
    annotation: Any = SlipwayConfig
    for part in parent:
        if isinstance(part, int):
            annotation = _element_type(annotation, index=0)
            continue
        model = _as_model(annotation)
        if model is not None and part in model.model_fields:
            annotation = model.model_fields[part].annotation
        else:  # a dict key such as the environment's name
            annotation = _element_type(annotation, index=1)
    model = _as_model(annotation)
    return list(model.model_fields) if model is not None else []


def _unwrap(annotation: Any) -> Any:
    """Strip Optional[...] and Annotated[...] to reach the real type."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _unwrap(arg)
    return annotation


def _element_type(annotation: Any, *, index: int) -> Any:
    args = typing.get_args(_unwrap(annotation))
    if not args:
        return None
    return args[min(index, len(args) - 1)]


def _as_model(annotation: Any) -> type[BaseModel] | None:
    real = _unwrap(annotation)
    if isinstance(real, type) and issubclass(real, BaseModel):
        return real
    return None
