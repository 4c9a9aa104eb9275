"""Positioning records, long/short asymmetry and the ``flow_estimate`` estimator (§2).

No venue publishes open interest by side, so every split is a *cohort's* view and travels as a
record naming its cohort and method; a bare "9.0x" is never produced (``Asymmetry.label``).

Choices where shared/signals.md §2 is silent:

* The flow estimate keeps ``long + short = OI`` (one long and one short per contract; the split
  says which side *initiated* the open interest). Starting split: ``initial_long_share`` (0.5).
* Aggressor information is a per-interval taker-buy share ``f`` in [0, 1] (1 = every taker
  bought). Rising OI goes to longs with weight ``α·f + (1-α)·(1-f)``; falling OI is taken from
  longs with weight ``α·(1-f) + (1-α)·f`` (a taker *sell* that lowers OI closes a long). With
  α = 0.5 both weights are 0.5 whatever ``f`` is, so no asymmetry can arise, as §2 requires.
  A missing (NaN) or infinite ``f`` counts as 0.5: no information, no tilt.
* After each interval the long side is clamped to [0, OI] and the short side is ``OI - long``,
  so both stay in [0, OI]; the effective per-side deltas (after clamping) are what the
  liquidation map receives. The first interval's OI has unknown entries: it gets no delta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np

from gateway.signals._num import ArrayIn, FloatArray, Num, carry_forward, to_array, to_float
from gateway.signals.errors import SignalConfigError, SignalInputError

AsymmetryStatus: TypeAlias = Literal["finite", "inf", "undefined"]


@dataclass(frozen=True, slots=True)
class PositioningRecord:
    """shared/signals.md §2: ``{cohort, method, long_usd, short_usd, as_of}``."""

    cohort: str
    method: str
    long_usd: float
    short_usd: float
    as_of: float

    def __post_init__(self) -> None:
        # NaN/inf sides made long_share NaN and at_risk_share 1.0 (min(1, x/nan) is 1.0).
        lo, sh = self.long_usd, self.short_usd
        if not (math.isfinite(lo) and math.isfinite(sh) and lo >= 0.0 and sh >= 0.0):
            raise SignalInputError(f"positioning sides must be finite and >= 0, got {lo}, {sh}")

    @staticmethod
    def of(
        cohort: str, method: str, long_usd: Num, short_usd: Num, as_of: float
    ) -> PositioningRecord:
        """Build from boundary numbers (``Decimal`` accepted), rejecting negative or non-finite
        sides (a Decimal such as 1e400 is finite but its float is inf)."""
        return PositioningRecord(cohort, method, to_float(long_usd), to_float(short_usd),
                                 float(as_of))


@dataclass(frozen=True, slots=True)
class Asymmetry:
    """``long/short`` with its degenerate cases as a status instead of inf/NaN floats."""

    value: float | None
    status: AsymmetryStatus
    cohort: str

    @property
    def label(self) -> str:
        """The readout text, always naming the cohort (§2: "9.0x by <cohort>")."""
        if self.status == "finite" and self.value is not None:
            return f"{self.value:.1f}x by {self.cohort}"
        return f"{self.status} by {self.cohort}"


def long_share(long_usd: float, short_usd: float) -> float | None:
    """shared/signals.md §2: ``long / (long + short)``; ``None`` (undefined) when both are 0."""
    big = max(long_usd, short_usd)
    if not big > 0.0:
        return None
    lo, sh = long_usd / big, short_usd / big  # scaled: long + short must not overflow to inf
    return lo / (lo + sh)


def oi_asymmetry(long_usd: float, short_usd: float) -> tuple[float | None, AsymmetryStatus]:
    """shared/signals.md §2: ``long / short``; "inf" when short is 0, never a division by 0."""
    if short_usd > 0.0:
        ratio = long_usd / short_usd
        return (ratio, "finite") if math.isfinite(ratio) else (None, "inf")  # overflow: "inf"
    if long_usd > 0.0:
        return None, "inf"
    return None, "undefined"


def asymmetry(record: PositioningRecord) -> Asymmetry:
    """The record's asymmetry, labelled with its cohort."""
    value, status = oi_asymmetry(record.long_usd, record.short_usd)
    return Asymmetry(value, status, record.cohort)


@dataclass(frozen=True, slots=True)
class FlowEstimate:
    """Per-interval side sizes and the effective deltas the liquidation map consumes."""

    long_usd: FloatArray
    short_usd: FloatArray
    long_delta: FloatArray
    short_delta: FloatArray
    record: PositioningRecord


def flow_estimate(
    oi_usd: ArrayIn,
    taker_buy_share: ArrayIn,
    *,
    as_of: float,
    alpha: float = 1.0,
    initial_long_share: float = 0.5,
    cohort: str = "taker_flow",
) -> FlowEstimate:
    """shared/signals.md §2 default estimator: attribute ΔOI to the aggressor with weight α."""
    if not 0.0 <= alpha <= 1.0:
        raise SignalConfigError(f"aggressor_weight α must be in [0, 1], got {alpha}")
    if not 0.0 <= initial_long_share <= 1.0:
        raise SignalConfigError(f"initial_long_share must be in [0, 1], got {initial_long_share}")
    oi = np.maximum(carry_forward(to_array(oi_usd)), 0.0)  # NaN/inf OI: unknown, no change
    f = to_array(taker_buy_share)
    if f.shape != oi.shape:
        raise SignalInputError("oi_usd and taker_buy_share must have the same length")
    n = oi.size
    if n == 0:
        empty = np.empty(0, dtype=np.float64)
        rec = PositioningRecord(cohort, "flow_estimate", 0.0, 0.0, float(as_of))
        return FlowEstimate(empty, empty, empty, empty, rec)
    f = np.clip(np.where(np.isfinite(f), f, 0.5), 0.0, 1.0)  # NaN/inf: unknown, no tilt
    d_oi = np.diff(oi, prepend=oi[0])
    w_open = alpha * f + (1.0 - alpha) * (1.0 - f)
    w_close = alpha * (1.0 - f) + (1.0 - alpha) * f
    d_long = d_oi * np.where(d_oi >= 0.0, w_open, w_close)
    # Fast path: without clamping the path is a cumulative sum (no per-interval loop).
    longs = oi[0] * initial_long_share + np.cumsum(d_long)
    if np.any(longs < 0.0) or np.any(longs > oi):
        longs = _clamped_path(oi, d_long, oi[0] * initial_long_share)
    shorts = oi - longs
    long_delta = np.diff(longs, prepend=longs[0])
    short_delta = np.diff(shorts, prepend=shorts[0])
    rec = PositioningRecord(
        cohort, "flow_estimate", float(longs[-1]), float(shorts[-1]), float(as_of)
    )
    return FlowEstimate(longs, shorts, long_delta, short_delta, rec)


def _clamped_path(oi: FloatArray, d_long: FloatArray, start: float) -> FloatArray:
    """Clamping is path-dependent, so this walks the intervals (never bins) one by one."""
    out = np.empty_like(oi)
    cur = start
    for i in range(oi.size):
        if i:
            cur += float(d_long[i])
        cur = min(max(cur, 0.0), float(oi[i]))
        out[i] = cur
    return out
