"""Plain, immutable inputs of ``compute_snapshot``: what the market-data side hands over.

Arrays are converted to float64 once, at construction (``Decimal`` accepted), and frozen, so a
snapshot computed from an ``inputs`` object can never be changed by its producer afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.signals._num import ArrayIn, FloatArray, Num, carry_forward, to_array
from gateway.signals.carry import FundingRecord
from gateway.signals.config import DEFAULT_CONFIG, SignalConfig
from gateway.signals.errors import SignalInputError
from gateway.signals.liquidation_map import LiquidationMap
from gateway.signals.positioning import PositioningRecord


def _frozen(xs: ArrayIn | None) -> FloatArray:
    arr = to_array(xs).copy()
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, slots=True, eq=False)
class Book:
    """One order book side by side, prices and base quantities (any order, any frame)."""

    bid_px: FloatArray
    bid_qty: FloatArray
    ask_px: FloatArray
    ask_qty: FloatArray
    as_of: float

    @staticmethod
    def of(
        bid_px: ArrayIn, bid_qty: ArrayIn, ask_px: ArrayIn, ask_qty: ArrayIn, as_of: float
    ) -> Book:
        """Convert boundary sequences and check the pairs line up."""
        b = Book(_frozen(bid_px), _frozen(bid_qty), _frozen(ask_px), _frozen(ask_qty), as_of)
        if b.bid_px.shape != b.bid_qty.shape or b.ask_px.shape != b.ask_qty.shape:
            raise SignalInputError("book price and quantity arrays must have equal lengths")
        return b

    @staticmethod
    def empty(as_of: float) -> Book:
        """No visible liquidity (a valid input: every figure stays finite)."""
        return Book.of((), (), (), (), as_of)


@dataclass(frozen=True, slots=True, eq=False)
class OIHistory:
    """Per-interval open interest with the prices needed to place and consume its entries.

    ``ts``: interval end (epoch s); ``oi_usd``: OI at the end, a NaN/inf sample is unknown and
    carries the last known level (no change; the first known one before any; 0 if none is);
    ``vwap`` may be NaN/<= 0, then the entry is ``(H + L + C) / 3`` (§3); ``taker_buy_share``
    in [0, 1] drives §2's estimator.
    """

    ts: FloatArray
    oi_usd: FloatArray
    vwap: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    taker_buy_share: FloatArray

    @staticmethod
    def of(
        ts: ArrayIn,
        oi_usd: ArrayIn,
        vwap: ArrayIn,
        high: ArrayIn,
        low: ArrayIn,
        close: ArrayIn,
        taker_buy_share: ArrayIn,
    ) -> OIHistory:
        """Convert boundary sequences and check every column has the same length."""
        arrs = [_frozen(x) for x in (ts, oi_usd, vwap, high, low, close, taker_buy_share)]
        if not np.isfinite(arrs[1]).all():
            arrs[1] = carry_forward(arrs[1])  # unknown OI samples: no change (see class doc)
            arrs[1].setflags(write=False)
        h = OIHistory(*arrs)
        n = h.ts.size
        cols = (h.oi_usd, h.vwap, h.high, h.low, h.close, h.taker_buy_share)
        if any(c.size != n for c in cols):
            raise SignalInputError("OI history columns must have equal lengths")
        if n > 1 and np.any(np.diff(h.ts) <= 0.0):
            raise SignalInputError("OI history timestamps must be strictly increasing")
        return h

    @property
    def as_of(self) -> float | None:
        """End of the last interval, or ``None`` for an empty history."""
        return float(self.ts[-1]) if self.ts.size else None

    def entry_prices(self) -> FloatArray:
        """§3: the interval's VWAP, else its typical price ``(H + L + C) / 3``, else (high or
        low unknown) its close; NaN when none is a positive finite price (the map then drops
        that interval's new OI and counts it in ``dropped_usd``)."""
        hlc_ok = np.minimum(np.minimum(self.high, self.low), self.close) > 0.0
        typical = np.where(hlc_ok, (self.high + self.low + self.close) / 3.0, np.nan)
        out: FloatArray = np.full_like(self.vwap, np.nan)
        for cand in (self.close, typical, self.vwap):  # later ones take precedence
            ok = np.isfinite(cand) & (cand > 0.0)
            out = np.where(ok, cand, out)
        return out


@dataclass(frozen=True, slots=True, eq=False)
class SignalInputs:
    """Everything one symbol's snapshot is computed from; each input carries its own time.

    ``liq_map``: the caller's incrementally maintained map (read, never mutated); without it the
    map is rebuilt from ``oi_history``. ``closes`` are bars of ``config.closes_per_day`` per day.
    """

    symbol: str
    now: float
    mark: Num
    index: Num
    mark_as_of: float
    book: Book | None = None
    impact_mid: Num | None = None
    funding: tuple[FundingRecord, ...] = ()
    positioning: PositioningRecord | None = None
    oi_history: OIHistory | None = None
    open_interest_usd: Num | None = None
    closes: ArrayIn | None = None
    closes_as_of: float | None = None
    daily_volume_base: Num | None = None
    sigma_d: float | None = None
    liq_map: LiquidationMap | None = None
    config: SignalConfig = field(default=DEFAULT_CONFIG)
