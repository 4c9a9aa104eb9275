"""Boundary conversion from the gateway's ``Decimal`` world into numpy floats.

The rest of the gateway keeps prices and sizes as ``Decimal``; the signal math is the one place
binary floats are allowed, so every public entry point converts once here and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from gateway.signals.errors import SignalInputError

Num: TypeAlias = Decimal | float | int
FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.intp]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
ArrayIn: TypeAlias = npt.NDArray[Any] | Sequence[Num]

_EMPTY: FloatArray = np.empty(0, dtype=np.float64)
_EMPTY.setflags(write=False)


def to_float(x: Num) -> float:
    """Convert one boundary number; ``Decimal`` goes through ``float()`` exactly once."""
    return float(x)


def to_array(xs: ArrayIn | None) -> FloatArray:
    """Convert a boundary sequence (``Decimal`` or float) into a 1-D float64 array."""
    if xs is None:
        return _EMPTY
    if isinstance(xs, np.ndarray):
        arr = xs.astype(np.float64, copy=False)
    else:
        arr = np.fromiter((float(v) for v in xs), dtype=np.float64, count=len(xs))
    if arr.ndim != 1:
        raise SignalInputError(f"expected a 1-D array, got shape {arr.shape}")
    return arr


def carry_forward(xs: FloatArray) -> FloatArray:
    """Unknown (NaN/inf) samples of a level series take the last known value (no change),
    leading ones the first known value; a series with no known value reads 0."""
    ok = np.isfinite(xs)
    if ok.all():
        return xs
    if not ok.any():
        return np.zeros_like(xs)
    last = np.maximum.accumulate(np.where(ok, np.arange(xs.size), -1))
    last = np.where(last < 0, int(np.argmax(ok)), last)
    out: FloatArray = xs[last]
    return out


def is_price(x: float) -> bool:
    """Whether `x` can be a price: finite and above 0 (NaN, inf, 0 and below cannot)."""
    return math.isfinite(x) and x > 0.0


def positive_price(x: Num, name: str) -> float:
    """Prices feed logs and divisions, so a non-positive or non-finite one is rejected early."""
    v = float(x)
    if not is_price(v):
        raise SignalInputError(f"{name} must be a positive finite price, got {x!r}")
    return v


def safe_ratio(num: float, den: float, floor: float) -> float:
    """``num / max(den, floor)``: ratios of notionals must never divide by zero or go infinite."""
    return num / max(den, floor)
