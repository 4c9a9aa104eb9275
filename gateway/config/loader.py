"""Loading a deployment file, and turning pydantic's errors into one line per bad field.

An operator reading a failed start needs the file, the dotted field path and what is wrong,
not a traceback; `ConfigError` carries exactly that.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config.model import Config


class ConfigError(Exception):
    """A config file that cannot be used; str() is ready to print to an operator."""


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "(top level)"


def format_validation_error(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        loc = _field_path(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if "input" in err and err["type"] not in ("missing", "extra_forbidden"):
            msg += f" (got {err['input']!r})"
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        lines.append(f"  {source}: {loc}: {msg}")
    return "\n".join(lines)


def load_config(path: Path | None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read and validate a TOML deployment file; `overrides` are dotted keys from CLI flags."""
    raw: dict[str, Any] = {}
    source = "(defaults)"
    if path is not None:
        source = str(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{source}: config file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None
