"""Touch probability, liquidation gravity and key levels (shared/signals.md §4).

Choices where §4 is silent:

* ``erfc`` is the Numerical Recipes Chebyshev fit (relative error < 1.2e-7), vectorized in
  numpy: no scipy dependency and no Python loop per bin; ``K(d) = erfc(d / (s √2))``.
* ``D_bid(k)`` is the bid notional priced in ``[level_k, P]`` (``D_ask``: ``[P, level_k]``), in
  the same price frame as the levels; it is floored at $1 so an empty book gives a finite pull
  (an empty side pulls hardest, which is the point of β). Book levels with a NaN/inf/
  non-positive price or size are no liquidity (as in the cascade), never a NaN depth.
* Key levels: peaks of the Gaussian-smoothed density are compared with the 90th percentile of
  the *smoothed* non-zero bins (raw and smoothed heights are not comparable); ties on a plateau
  keep the leftmost bin. Peaks are ranked by smoothed height, greedily kept if ≥ 0.5·s away from
  every kept peak, and reported strongest first. A level's notional is the raw mass within
  ±0.25·s of it (half the minimum spacing, so two levels never share mass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gateway.signals._num import FloatArray
from gateway.signals.liquidation_map import USD_FLOOR
from gateway.signals.types import Side

_SQRT2 = math.sqrt(2.0)


def erfc(x: FloatArray) -> FloatArray:
    """Complementary error function, vectorized (Numerical Recipes ``erfcc``)."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    c = (
        0.17087277,
        -0.82215223,
        1.48851587,
        -1.13520398,
        0.27886807,
        -0.18628806,
        0.09678418,
        0.37409196,
        1.00002368,
    )
    poly = np.full_like(t, c[0])
    for coef in c[1:]:  # Horner over 9 coefficients (not over bins)
        poly = poly * t + coef
    poly = poly * t - 1.26551223
    ans: FloatArray = t * np.exp(-z * z + poly)
    return np.where(x >= 0.0, ans, 2.0 - ans)


def touch_probability(d: float, s: float) -> float:
    """shared/signals.md §4: ``K(d) = 2 (1 - Φ(d/s))`` for a driftless log price within h."""
    return math.erfc(abs(d) / (s * _SQRT2))


def touch_probabilities(d: FloatArray, s: float) -> FloatArray:
    """Vectorized ``K(d)`` over many levels."""
    return erfc(np.abs(d) / (s * _SQRT2))


@dataclass(frozen=True, slots=True)
class GravityReading:
    """§4 pulls and gravity with the parameters that produced them."""

    pull_up: float
    pull_down: float
    gravity: float
    s: float
    beta: float


@dataclass(frozen=True, slots=True)
class KeyLevel:
    """One §4 key level as a readout shows it."""

    side: Side
    price: float
    notional_usd: float
    distance_pct: float
    distance_sigma: float
    touch_prob: float


def _cum_notional(px: FloatArray, qty: FloatArray) -> tuple[FloatArray, FloatArray]:
    # A level with a NaN/inf/non-positive price or size, or a notional overflowing to inf, is
    # no liquidity (as in the cascade): one NaN size made every depth, pull and gravity NaN.
    with np.errstate(over="ignore", invalid="ignore"):
        notional = px * qty
    ok = np.isfinite(notional) & (px > 0.0) & (qty > 0.0)
    px, notional = px[ok], notional[ok]
    order = np.argsort(px, kind="stable")
    px_s = px[order]
    cum = np.concatenate(([0.0], np.cumsum(notional[order])))
    return px_s, cum


def depth_between(
    levels: FloatArray, price: float, book_px: FloatArray, book_qty: FloatArray
) -> FloatArray:
    """Book notional priced between ``price`` and each level (either direction), vectorized."""
    if book_px.size == 0:
        return np.zeros_like(levels)
    px_s, cum = _cum_notional(book_px, book_qty)
    lo = np.minimum(levels, price)
    hi = np.maximum(levels, price)
    out: FloatArray = (
        cum[np.searchsorted(px_s, hi, side="right")] - cum[np.searchsorted(px_s, lo, side="left")]
    )
    return out


def gravity(
    levels: FloatArray,
    q_long: FloatArray,
    q_short: FloatArray,
    price: float,
    s: float,
    *,
    bid_px: FloatArray,
    bid_qty: FloatArray,
    ask_px: FloatArray,
    ask_qty: FloatArray,
    beta: float = 1.0,
) -> GravityReading:
    """shared/signals.md §4: depth-weighted, touch-probability-weighted pull of each side."""
    below = (levels < price) & (q_long > 0.0)
    above = (levels > price) & (q_short > 0.0)
    pull_down = _pull(levels[below], q_long[below], price, s, bid_px, bid_qty, beta)
    pull_up = _pull(levels[above], q_short[above], price, s, ask_px, ask_qty, beta)
    total = pull_up + pull_down
    if not math.isfinite(total):
        # An inf/NaN pull has no direction: NaN (the gate calls it "not a number"), never the
        # clamp's silent -1.0/0.0.
        return GravityReading(pull_up, pull_down, math.nan, s, beta)
    g = (pull_up - pull_down) / total if total > 0.0 else 0.0
    return GravityReading(pull_up, pull_down, min(1.0, max(-1.0, g)), s, beta)


def _pull(
    lv: FloatArray,
    q: FloatArray,
    price: float,
    s: float,
    book_px: FloatArray,
    book_qty: FloatArray,
    beta: float,
) -> float:
    if lv.size == 0:
        return 0.0
    k = touch_probabilities(np.log(lv / price), s)
    w = q * k
    if beta != 0.0:
        d = np.maximum(depth_between(lv, price, book_px, book_qty), USD_FLOOR)
        w = w / d**beta
    return float(w.sum())


def smooth(mass: FloatArray, sigma_bins: float) -> FloatArray:
    """Gaussian smoothing with a truncated (±4σ) kernel: exact zeros far from any mass."""
    half = min(math.ceil(4.0 * sigma_bins), (mass.size - 1) // 2)
    if half < 1:
        return mass.copy()
    k = np.arange(-half, half + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (k / sigma_bins) ** 2)
    kernel /= kernel.sum()
    out: FloatArray = np.convolve(mass, kernel, mode="same")
    return np.maximum(out, 0.0)


def key_levels(
    centers: FloatArray,
    mass_usd: FloatArray,
    price: float,
    s: float,
    side: Side,
    *,
    top: int = 3,
    percentile: float = 90.0,
) -> tuple[KeyLevel, ...]:
    """shared/signals.md §4 key levels of one side's (scaled) liquidation density."""
    n = centers.size
    if n < 3 or not np.any(mass_usd > 0.0):
        return ()
    log_step = math.log(centers[1] / centers[0])
    sigma_bins = max(2.0, 0.25 * s / log_step)
    y = smooth(mass_usd, sigma_bins)
    region = centers < price if side == "long" else centers > price
    y = np.where(region, y, 0.0)
    nz = y[y > 0.0]
    if nz.size == 0:
        return ()
    threshold = float(np.percentile(nz, percentile))
    padded = np.concatenate(([-1.0], y, [-1.0]))
    is_peak = (y > padded[:-2]) & (y >= padded[2:]) & (y >= threshold) & (y > 0.0)
    cand = np.flatnonzero(is_peak)
    cand = cand[np.argsort(-y[cand], kind="stable")]
    logs = np.log(centers)
    kept: list[int] = []
    min_gap = 0.5 * s
    for i in cand:  # candidates are peaks above the 90th percentile, not bins; stops at `top`
        if all(abs(logs[i] - logs[j]) >= min_gap for j in kept):
            kept.append(int(i))
            if len(kept) == top:
                break
    if not kept:
        return ()
    cum = np.concatenate(([0.0], np.cumsum(mass_usd)))
    idx = np.array(kept, dtype=np.intp)
    lo = np.searchsorted(logs, logs[idx] - 0.25 * s, side="left")
    hi = np.searchsorted(logs, logs[idx] + 0.25 * s, side="right")
    notional = cum[hi] - cum[lo]
    d = logs[idx] - math.log(price)
    touch = touch_probabilities(d, s)
    return tuple(
        KeyLevel(
            side=side,
            price=float(centers[i]),
            notional_usd=float(notional[j]),
            distance_pct=float((centers[i] / price - 1.0) * 100.0),
            distance_sigma=float(d[j] / s),
            touch_prob=float(touch[j]),
        )
        for j, i in enumerate(kept)
    )
