"""Regime, sub-signal votes and their consensus (shared/signals.md §7).

Choices where §7 is silent (defaults live in ``SignalConfig``):

* Trend: Kaufman efficiency ratio ``|c_n - c_0| / Σ|Δc|`` over the last 20 closes; trending
  when ≥ 0.30, direction = sign of the net change; a flat window has ER 0 (ranging).
* Volatility: realized σ of log returns over rolling 20-return windows; the bucket is the
  percentile rank of the latest window among all windows (low < 1/3 <= medium <= 2/3 < high);
  fewer than 5 windows is "unknown" rather than a guess.
* Votes: carry (§1), positioning (contrarian: a long share ≥ 0.65 is crowded and is the fuel of
  a long cascade, so it votes short; ≤ 0.35 votes long), gravity (≥ +0.25 long, ≤ -0.25 short),
  cascade risk (the side whose 50 %-haircut cascade liquidates ≥ 5 points more of its OI drags
  price its way: long liquidations vote short) and momentum (trend direction when trending).
  All weights default to 1.
* ``agreement`` is the weight share of non-neutral votes on the bias side (equal to the count
  share with equal weights); ``confidence = margin × agreement`` with
  ``margin = |Σ w·v| / Σ w`` over all votes, neutral ones included, so abstentions dilute it.
  With a tie the bias is neutral, agreement is 0.5 and there is no divergence (no majority).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np

from gateway.signals._num import ArrayIn, FloatArray, to_array
from gateway.signals.types import Direction

TrendState: TypeAlias = Literal["trending", "ranging", "unknown"]
VolBucket: TypeAlias = Literal["low", "medium", "high", "unknown"]
STRUCTURAL: tuple[str, ...] = ("carry", "positioning", "gravity")
_SIGN: dict[Direction, int] = {"long": 1, "short": -1, "neutral": 0}


@dataclass(frozen=True, slots=True)
class Regime:
    """§7 regime with the figures behind it."""

    efficiency_ratio: float | None
    trend: TrendState
    trend_direction: Direction
    realized_vol_d: float | None
    vol_percentile: float | None
    vol_bucket: VolBucket


@dataclass(frozen=True, slots=True)
class Vote:
    """One sub-signal's vote; ``reason`` carries the figure so a rejection can be explained."""

    name: str
    direction: Direction
    weight: float
    reason: str


@dataclass(frozen=True, slots=True)
class Consensus:
    """§7 bias, agreement, confidence and divergence of a set of votes."""

    bias: Direction
    score: float
    agreement: float
    confidence: float
    divergence: bool
    divergent: tuple[str, ...]


def _log_returns(closes: FloatArray) -> FloatArray:
    c = closes[np.isfinite(closes) & (closes > 0.0)]
    return np.diff(np.log(c)) if c.size >= 2 else np.empty(0, dtype=np.float64)


def efficiency_ratio(closes: ArrayIn, window: int = 20) -> float | None:
    """Net move over path length for the last ``window`` changes; ``None`` with < 2 closes."""
    c = to_array(closes)
    c = c[np.isfinite(c)][-(window + 1) :]
    if c.size < 2:
        return None
    path = float(np.abs(np.diff(c)).sum())
    return abs(float(c[-1] - c[0])) / path if path > 0.0 else 0.0


def rolling_vol(closes: ArrayIn, window: int = 20) -> FloatArray:
    """Sample σ of log returns over every full window (cumulative sums, no per-window loop)."""
    r = _log_returns(to_array(closes))
    if r.size < max(window, 2):
        return np.empty(0, dtype=np.float64)
    c1 = np.concatenate(([0.0], np.cumsum(r)))
    c2 = np.concatenate(([0.0], np.cumsum(r * r)))
    s1 = c1[window:] - c1[:-window]
    s2 = c2[window:] - c2[:-window]
    var = np.maximum((s2 - s1 * s1 / window) / (window - 1), 0.0)
    out: FloatArray = np.sqrt(var)
    return out


def realized_vol(closes: ArrayIn, window: int = 20, periods_per_day: float = 1.0) -> float | None:
    """Daily σ_d from the last window of closes (scaled by √periods/day for intraday bars)."""
    r = _log_returns(to_array(closes))[-window:]
    if r.size < 2:
        return None
    return float(np.std(r, ddof=1)) * math.sqrt(periods_per_day)


def vol_percentile(closes: ArrayIn, window: int = 20, min_windows: int = 5) -> float | None:
    """Percentile rank (0..1) of the latest rolling σ among all rolling σ's."""
    v = rolling_vol(closes, window)
    if v.size < min_windows:
        return None
    return float(np.count_nonzero(v <= v[-1])) / float(v.size)


def vol_bucket(pct: float | None, low: float = 1.0 / 3.0, high: float = 2.0 / 3.0) -> VolBucket:
    """Bucket a percentile rank."""
    if pct is None:
        return "unknown"
    if pct < low:
        return "low"
    if pct > high:
        return "high"
    return "medium"


def classify_regime(
    closes: ArrayIn,
    *,
    er_window: int = 20,
    er_trend_threshold: float = 0.30,
    vol_window: int = 20,
    periods_per_day: float = 1.0,
) -> Regime:
    """§7 regime from recent closes."""
    c = to_array(closes)
    er = efficiency_ratio(c, er_window)
    if er is None:
        trend: TrendState = "unknown"
        direction: Direction = "neutral"
    else:
        tail = c[np.isfinite(c)][-(er_window + 1) :]
        trend = "trending" if er >= er_trend_threshold else "ranging"
        net = float(tail[-1] - tail[0])
        direction = (
            "neutral" if trend == "ranging" or net == 0.0 else ("long" if net > 0.0 else "short")
        )
    pct = vol_percentile(c, vol_window)
    return Regime(
        efficiency_ratio=er,
        trend=trend,
        trend_direction=direction,
        realized_vol_d=realized_vol(c, vol_window, periods_per_day),
        vol_percentile=pct,
        vol_bucket=vol_bucket(pct),
    )


def positioning_vote(share: float | None, crowded: float = 0.65) -> Direction:
    """Contrarian: a crowded long side is cascade fuel, so it votes short (and vice versa)."""
    if share is None:
        return "neutral"
    if share >= crowded:
        return "short"
    if share <= 1.0 - crowded:
        return "long"
    return "neutral"


def gravity_vote(g: float, threshold: float = 0.25) -> Direction:
    """Price is pulled toward the heavier, thinner-booked liquidation side."""
    if g >= threshold:
        return "long"
    if g <= -threshold:
        return "short"
    return "neutral"


def cascade_vote(long_share: float, short_share: float, threshold: float = 0.05) -> Direction:
    """Long liquidations push price down (short); short liquidations push it up (long)."""
    diff = long_share - short_share
    if diff >= threshold:
        return "short"
    if diff <= -threshold:
        return "long"
    return "neutral"


def momentum_vote(regime: Regime) -> Direction:
    """Follow the trend only when the market is trending."""
    return regime.trend_direction if regime.trend == "trending" else "neutral"


def combine_votes(votes: Sequence[Vote], structural: Sequence[str] = STRUCTURAL) -> Consensus:
    """§7 consensus: weighted bias, agreement, confidence in [0, 1] and divergence."""
    total_w = math.fsum(max(v.weight, 0.0) for v in votes)
    score = math.fsum(max(v.weight, 0.0) * _SIGN[v.direction] for v in votes)
    w_long = math.fsum(max(v.weight, 0.0) for v in votes if v.direction == "long")
    w_short = math.fsum(max(v.weight, 0.0) for v in votes if v.direction == "short")
    active = w_long + w_short
    if active <= 0.0 or total_w <= 0.0:
        return Consensus("neutral", 0.0, 0.0, 0.0, False, ())
    if score > 0.0:
        bias: Direction = "long"
    elif score < 0.0:
        bias = "short"
    else:
        bias = "neutral"
    agreement = max(w_long, w_short) / active
    margin = abs(score) / total_w
    confidence = min(1.0, max(0.0, margin * agreement))
    divergent: tuple[str, ...] = ()
    if bias != "neutral":
        opposite = "short" if bias == "long" else "long"
        divergent = tuple(v.name for v in votes if v.name in structural and v.direction == opposite)
    return Consensus(bias, score / total_w, agreement, confidence, bool(divergent), divergent)
