"""Every float a signal reading holds, for tests that check none is NaN or inf."""

from __future__ import annotations

import dataclasses


def floats_in(value: object) -> list[float]:
    """Every float reachable from `value`: itself, tuple items, fields of (nested, frozen)
    dataclasses such as a snapshot and its components."""
    if isinstance(value, float):
        return [value]
    if isinstance(value, tuple):
        return [f for v in value for f in floats_in(v)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [f for fld in dataclasses.fields(value) for f in floats_in(getattr(value, fld.name))]
    return []
