"""The base every config model shares, and where a secret is named.

A misspelt key is the most common config error: `extra="forbid"` makes it fail at start, naming
the key, instead of silently meaning the default (for a risk limit, no limit at all). Models
are frozen because a running gateway never edits its config.
"""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gateway.kraken.secrets import ENV_NAME

#: The error type of a credential written into the file itself. `format_validation_error`
#: never echoes the input of such an error: the input is the secret.
CREDENTIAL_INLINE = "credential_inline"
#: The error type of true/false given for a number.
BOOL_FOR_NUMBER = "bool_for_number"


def _a_number_not_a_bool(annotation: object) -> bool:
    """Whether a field of this type takes an int or a float, and not a bool."""
    if annotation is bool:
        return False
    if annotation in (int, float):
        return True
    args = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    return bool not in args and any(_a_number_not_a_bool(a) for a in args)


def _a_path(annotation: object) -> bool:
    """Whether a field of this type takes a filesystem path."""
    if annotation is Path:
        return True
    args = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    return any(_a_path(a) for a in args)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: object, info: ValidationInfo) -> object:
        """`port = true` is a typo or a wrong key, not 1: pydantic would take a bool as the
        number 1 (0) for every int and float field (a port, a heartbeat interval, a risk
        limit). Refused here, once, for every number field of every section, the field named
        by the error's location."""
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            if field is not None and _a_number_not_a_bool(field.annotation):
                raise PydanticCustomError(BOOL_FOR_NUMBER,
                                          "must be a number, not a boolean (true/false)")
        if isinstance(value, str) and value.startswith("~") and info.field_name is not None:
            # Taken literally, data_dir = "~/fixgw" is a directory named "~" in the working
            # directory; a relative path is the working directory's (gateway.config.model).
            field = cls.model_fields.get(info.field_name)
            if field is not None and _a_path(field.annotation):
                raise ValueError("'~' is not expanded (no shell reads this file): give the "
                                 "full path")
        return value


class CredentialRef(StrictModel):
    """Where a secret lives. The TOML names the place; the value never appears in it."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _a_place_not_a_value(cls, value: object) -> object:
        # Anything but a table is most likely the secret itself, pasted in: refuse it without
        # repeating it (pydantic's own error would quote the input).
        if not isinstance(value, dict | CredentialRef):
            raise PydanticCustomError(
                CREDENTIAL_INLINE,
                "a credential is never written in the file: give { env = \"VARIABLE\" } or "
                "{ file = \"path\" }")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CredentialRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' (a variable name) or 'file' (a path)")
        if self.env is not None and not ENV_NAME.fullmatch(self.env):
            # Most likely the secret pasted where its variable's name goes: refused without
            # repeating it, as a later "variable <secret> is not set" would.
            raise PydanticCustomError(
                CREDENTIAL_INLINE,
                "'env' takes the name of an environment variable (letters, digits and _, not "
                "starting with a digit), not the secret itself")
        return self
