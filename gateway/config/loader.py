"""Loading a deployment file, and turning pydantic's errors into one line per bad field.

An operator reading a failed start needs the file, the dotted field path and what is wrong,
not a traceback; `ConfigError` carries exactly that.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from gateway.config.model import Config
from gateway.config.strict import CREDENTIAL_INLINE

M = TypeVar("M", bound=BaseModel)

# A message of a model-wide rule that starts with the field it is about ("oms.sessions[0].comp_id:
# ...") is shown under that field rather than under "(top level)"; a rule of a section names
# the field within it ("reconnect_max_s: ..." of [venue] is shown under venue.reconnect_max_s).
_DOTTED_FIRST = re.compile(r"[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)+: ")
_FIELD_FIRST = re.compile(r"([a-z_]+|\[\d+\])(\[\d+\])?(\.[a-z_]+(\[\d+\])?)*: ")

# Errors whose input is not repeated: a missing or unknown field has nothing useful to show,
# and a credential written into the file is the secret itself.
_NO_ECHO = frozenset({"missing", "extra_forbidden", CREDENTIAL_INLINE})


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


def _array_of_tables(model: type[BaseModel], loc: tuple[int | str, ...]) -> bool:
    """Whether the field at `loc` of `model` is an array whose entries are sections."""
    annotation: Any = model
    for name in loc:
        if isinstance(name, int):
            return False
        fields = getattr(annotation, "model_fields", None)
        if fields is None or name not in fields:
            return False
        annotation = fields[name].annotation
    return any(isinstance(a, type) and issubclass(a, BaseModel) for a in get_args(annotation))


def format_validation_error(source: str, exc: ValidationError,
                            flags: Mapping[str, str] | None = None,
                            model: type[BaseModel] | None = None) -> str:
    """One line per bad field, each naming where its value came from: `source` (the file), or
    for a value a command-line flag set (`flags`: dotted field -> flag), that flag."""
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        loc = _field_path(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        refined = False
        if not err["loc"] and _DOTTED_FIRST.match(msg):  # a rule across sections names its field
            loc, _, msg = msg.partition(": ")
        elif err["type"] == "value_error" and err["loc"] and _FIELD_FIRST.match(msg):
            field, _, msg = msg.partition(": ")  # a section's rule names its field
            loc += ("" if field.startswith("[") else ".") + field
            refined = True  # its message says what it needs of the value: not the section's
        # A whole section (a rule across its fields) is not echoed: it would be the entire
        # table, often the entire file, on one line.
        if ("input" in err and err["type"] not in _NO_ECHO and not refined
                and not isinstance(err["input"], dict)):
            msg += f" (got {err['input']!r})"
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        elif err["type"] in ("tuple_type", "list_type") and isinstance(err.get("input"), dict):
            # `[oms.sessions]` where `[[oms.sessions]]` was meant (one QuickFIX [SESSION] block).
            msg = "must be an array, not a table" + (
                f": write each entry as its own [[{loc}]] table"
                if model is not None and _array_of_tables(model, tuple(err["loc"])) else "")
        flag = (flags or {}).get(loc)
        lines.append(f"  {flag} ({loc}): {msg}" if flag else f"  {source}: {loc}: {msg}")
    return "\n".join(lines)


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's tables; a missing, unreadable, non-UTF-8 or malformed file is a
    `ConfigError` (TOML is UTF-8 by definition; a file saved as Latin-1 names the byte, so the
    operator can find the accented character in a comment, not read a traceback)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (TOML must be): byte offset {exc.start} "
                          f"(0x{exc.object[exc.start]:02x}) is not valid UTF-8; save the file "
                          "as UTF-8") from None
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def validate_model(model: type[M], raw: Mapping[str, Any], source: str,
                   flags: Mapping[str, str] | None = None) -> M:
    """`raw` as `model`, or a `ConfigError` with one line per bad field of `source` (or of
    the flag in `flags` that set it)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, flags, model)) from None


def load_config(path: Path | None, overrides: Mapping[str, Any] | None = None,
                flags: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML deployment file; `overrides` are dotted keys from CLI flags,
    `flags` the flag that set each (dotted key -> "--oms-port"), for the error messages."""
    raw: dict[str, Any] = {} if path is None else read_toml(path)
    source = "(defaults)" if path is None else str(path)
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value, source, (flags or {}).get(dotted))
    return validate_model(Config, raw, source, flags)


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any, source: str,
                flag: str | None) -> None:
    """raw[a][b]... = value for "a.b...", creating tables; a key the file gives a value that
    is not a table (`oms = 5`) is the file's error, named, not a TypeError."""
    node = raw
    *parents, leaf = dotted.split(".")
    for depth, key in enumerate(parents):
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            table = ".".join(parents[:depth + 1])
            raise ConfigError(f"{source}: invalid configuration\n  {source}: {table}: must be a "
                              f"table ([{table}]), not {type(node).__name__}; "
                              f"{flag or dotted} sets {dotted} in it")
    node[leaf] = value
