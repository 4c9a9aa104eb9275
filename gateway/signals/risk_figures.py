"""The three named risk figures of shared/signals.md §6 (never one ambiguous percentage).

Choices where §6 is silent: the band is a log distance ``b`` (default 2·s) so it is symmetric
with the σ units used elsewhere; longs count levels in ``[P e^-b, P)``, shorts ``(P, P e^b]``.
``at_risk_share`` is 0 for a side without OI (nothing is at risk; stale map mass shows up in
``map_gross_to_net`` instead). ``liq_to_depth`` floors the depth at $1 so an empty book reads
as a very large, finite figure.
"""

from __future__ import annotations

import math

import numpy as np

from gateway.signals._num import FloatArray
from gateway.signals.gravity import depth_between
from gateway.signals.liquidation_map import USD_FLOOR, gross_to_net
from gateway.signals.types import Side

map_gross_to_net = gross_to_net
"""shared/signals.md §6 third figure: the §3 diagnostic (re-exported under its §6 name)."""


def band_bounds(price: float, band: float, side: Side) -> tuple[float, float]:
    """Price interval of a side's band, as (low, high)."""
    if side == "long":
        return price * math.exp(-band), price
    return price, price * math.exp(band)


def notional_in_band(
    levels: FloatArray, notional_usd: FloatArray, price: float, band: float, side: Side
) -> float:
    """A side's liquidation notional whose level lies within the band (vectorized mask)."""
    lo, hi = band_bounds(price, band, side)
    inside_long = (levels >= lo) & (levels < hi)
    mask = inside_long if side == "long" else (levels > lo) & (levels <= hi)
    return float(notional_usd[mask].sum())


def at_risk_share(
    levels: FloatArray,
    notional_usd: FloatArray,
    price: float,
    side_oi_usd: float,
    band: float,
    side: Side,
) -> float:
    """shared/signals.md §6: band notional ÷ side OI, in [0, 1] (T17: 5 M / 10 M = 0.50)."""
    if math.isnan(side_oi_usd):
        return math.nan  # unknown OI: "not a number" to the gate (min(1, x/nan) read 1.0)
    if side_oi_usd <= 0.0:
        return 0.0
    return min(1.0, notional_in_band(levels, notional_usd, price, band, side) / side_oi_usd)


def liq_to_depth(
    levels: FloatArray,
    notional_usd: FloatArray,
    price: float,
    band: float,
    side: Side,
    book_px: FloatArray,
    book_qty: FloatArray,
) -> float:
    """shared/signals.md §6: band notional ÷ opposite book notional in the band; may exceed 1.

    ``book_*`` is the book the liquidations hit: bids for longs, asks for shorts (T17: 1.25).
    """
    notional = notional_in_band(levels, notional_usd, price, band, side)
    if notional <= 0.0:
        return 0.0
    lo, hi = band_bounds(price, band, side)
    edge = np.array([lo if side == "long" else hi], dtype=np.float64)
    depth = float(depth_between(edge, price, book_px, book_qty)[0])
    return notional / max(depth, USD_FLOOR)
