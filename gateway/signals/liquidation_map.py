"""Liquidation map: where leveraged positions would be force-closed (shared/signals.md §3).

The map is the one stateful object of the signal module: it accumulates per-interval OI changes
over days, so a caller owns one per symbol and feeds it intervals; ``compute_snapshot`` only reads
it through ``scaled()``, which copies. All per-bin work is vectorized (``np.bincount`` over
entries x tiers, slice assignment for consumption, one multiply for decay).

Choices where §3 is silent:

* Bins are the ``N`` log-spaced intervals between ``N + 1`` edges over ``[P e^-R, P e^+R]``; a
  bin's price is its geometric centre. Liquidation prices off the grid are not stored; their
  notional is counted in ``dropped_usd`` so the loss is visible.
* Mass is kept twice per bin: entry notional in USD (what §3, §6 and T11 count) and base
  quantity ``usd / entry`` (what §5's simulation sells). Every operation scales both alike.
* A long bin is consumed when the mark's low reaches its centre (``centre >= low``), a short bin
  when the high reaches it (``centre <= high``).
* ``apply_interval`` order: decay to the interval end, consume on the interval's low/high, then
  remove falling OI *net of what consumption already removed on that side* (forced closes also
  lower OI; counting them twice would empty the map), then add rising OI at the interval's
  entry price (VWAP, else (H+L+C)/3, else the close). New positions are added after consumption
  because the interval's extremes may predate their entry. An unknown (NaN/non-positive) low or
  high consumes nothing on its side; rising OI without any entry price goes to ``dropped_usd``.
* ``map_gross_to_net = max(1, gross / max(side OI, $1))``: 1 when no scaling was needed, ≫ 1
  when the map still counts closed positions; the $1 floor keeps it finite when a side has no
  OI but the map still holds mass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from gateway.signals._num import (
    ArrayIn,
    BoolArray,
    FloatArray,
    IntArray,
    Num,
    is_price,
    positive_price,
    to_array,
    to_float,
)
from gateway.signals.errors import SignalConfigError, SignalInputError
from gateway.signals.types import Side

_ROW = {"long": 0, "short": 1}
USD_FLOOR = 1.0
"""Smallest notional (USD) used as a denominator: ratios stay finite on empty sides/books."""


@dataclass(frozen=True, slots=True)
class Tier:
    """One leverage cohort ``(L, w, m)`` of §3; ``m`` defaults to ``1/(2L)`` (Kraken: IM/2)."""

    leverage: float
    weight: float
    maintenance: float | None = None

    def __post_init__(self) -> None:
        lev, w = float(self.leverage), float(self.weight)
        if not (math.isfinite(lev) and lev >= 1.0):
            raise SignalConfigError(f"tier leverage must be a finite number >= 1, got {lev}")
        if not (math.isfinite(w) and w >= 0.0):
            raise SignalConfigError(f"tier {lev:g}x: weight must be >= 0, got {w}")
        m = 1.0 / (2.0 * lev) if self.maintenance is None else float(self.maintenance)
        if not (math.isfinite(m) and 0.0 <= m < 1.0 / lev):
            raise SignalConfigError(
                f"tier {lev:g}x: maintenance margin m={m:g} must satisfy 0 <= m < 1/L "
                f"= {1.0 / lev:g} (shared/signals.md §3)"
            )
        object.__setattr__(self, "maintenance", m)

    @property
    def m(self) -> float:
        """The resolved maintenance margin (never ``None`` after construction)."""
        assert self.maintenance is not None
        return self.maintenance


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier(2, 0.20),
    Tier(3, 0.20),
    Tier(5, 0.25),
    Tier(10, 0.20),
    Tier(20, 0.10),
    Tier(50, 0.05),
)
"""shared/signals.md §3 default capital shares, ``m = 1/(2L)``."""


def validate_tiers(tiers: Sequence[Tier], max_leverage: float = 50.0) -> tuple[Tier, ...]:
    """Reject tier sets the venue cannot have: L above its max, weights not summing to 1."""
    if not tiers:
        raise SignalConfigError("at least one leverage tier is required")
    for t in tiers:
        if t.leverage > max_leverage:
            raise SignalConfigError(
                f"tier {t.leverage:g}x exceeds the instrument's max leverage {max_leverage:g}x"
            )
    total = math.fsum(t.weight for t in tiers)
    if abs(total - 1.0) > 1e-9:
        raise SignalConfigError(f"tier weights must sum to 1, got {total:g}")
    return tuple(tiers)


def long_liq_price(p: float, leverage: float, m: float) -> float:
    """shared/signals.md §3: ``p (1 - 1/L) / (1 - m)`` (exact; maintenance on mark)."""
    return p * (1.0 - 1.0 / leverage) / (1.0 - m)


def short_liq_price(p: float, leverage: float, m: float) -> float:
    """shared/signals.md §3: ``p (1 + 1/L) / (1 + m)``."""
    return p * (1.0 + 1.0 / leverage) / (1.0 + m)


class LogGrid:
    """``N`` log-spaced bins over ``[c e^-R, c e^+R]``; index arithmetic instead of search."""

    __slots__ = ("center", "centers", "edges", "half_width", "log_lo", "n_bins", "step")

    def __init__(self, center: Num, n_bins: int = 2000, half_width: float = 0.5) -> None:
        if n_bins < 2:
            raise SignalConfigError(f"grid needs at least 2 bins, got {n_bins}")
        if not (math.isfinite(half_width) and half_width > 0.0):
            raise SignalConfigError(f"grid half width R must be > 0, got {half_width}")
        self.center = positive_price(center, "grid centre")
        self.n_bins = int(n_bins)
        self.half_width = float(half_width)
        self.step = 2.0 * self.half_width / self.n_bins
        self.log_lo = math.log(self.center) - self.half_width
        logs = self.log_lo + self.step * np.arange(self.n_bins + 1, dtype=np.float64)
        self.edges: FloatArray = np.exp(logs)
        self.centers: FloatArray = np.exp(logs[:-1] + 0.5 * self.step)
        self.edges.setflags(write=False)
        self.centers.setflags(write=False)

    def index_of(self, prices: FloatArray) -> tuple[IntArray, BoolArray]:
        """Bin index per price and a mask of prices that fall on the grid.

        Bin ``k`` holds ``[edges[k], edges[k+1])``; the log arithmetic is only a first guess
        (a price on an edge came out one bin low about half the time), corrected against
        the edges themselves.
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            pos = (np.log(prices) - self.log_lo) / self.step
        n = self.n_bins
        e = self.edges
        ok = np.isfinite(pos) & (prices >= e[0]) & (prices < e[n])
        idx: IntArray = np.clip(np.where(ok, pos, 0.0), 0, n - 1).astype(np.intp)
        idx -= ok & (prices < e[idx])
        idx += ok & (prices >= e[idx + 1])
        return idx, ok


@dataclass(frozen=True, slots=True)
class ScaledMap:
    """A read-only copy of the map, consumed at the mark and scaled to each side's OI (§3)."""

    centers: FloatArray
    long_usd: FloatArray
    short_usd: FloatArray
    long_base: FloatArray
    short_base: FloatArray
    mark: float
    gross_usd_long: float
    gross_usd_short: float
    net_usd_long: float
    net_usd_short: float
    side_oi_usd_long: float
    side_oi_usd_short: float
    gross_to_net_long: float
    gross_to_net_short: float


def gross_to_net(gross_usd: float, side_oi_usd: float) -> float:
    """shared/signals.md §3/§6 ``map_gross_to_net`` (T17: 15 M over 10 M -> 1.5)."""
    if gross_usd <= 0.0:
        return 1.0
    return max(1.0, gross_usd / max(side_oi_usd, USD_FLOOR))


class LiquidationMap:
    """Per-symbol accumulator of liquidation notional by price bin, for longs and shorts."""

    __slots__ = (
        "_base",
        "_factors",
        "_usd",
        "_weights",
        "as_of",
        "dropped_usd",
        "grid",
        "half_life_h",
        "tiers",
    )

    def __init__(
        self,
        center: Num,
        tiers: Sequence[Tier] = DEFAULT_TIERS,
        *,
        n_bins: int = 2000,
        half_width: float = 0.5,
        half_life_h: float = 72.0,
        max_leverage: float = 50.0,
        as_of: float = 0.0,
    ) -> None:
        if not half_life_h > 0.0:
            raise SignalConfigError(f"half-life must be > 0 h, got {half_life_h}")
        self.grid = LogGrid(center, n_bins, half_width)
        self.tiers = validate_tiers(tiers, max_leverage)
        self.half_life_h = float(half_life_h)
        self.as_of = float(as_of)
        lev = np.array([t.leverage for t in self.tiers], dtype=np.float64)
        m = np.array([t.m for t in self.tiers], dtype=np.float64)
        self._weights: FloatArray = np.array([t.weight for t in self.tiers], dtype=np.float64)
        # Row 0: long liq price / entry; row 1: short (§3 formulas, per tier).
        long_f = (1.0 - 1.0 / lev) / (1.0 - m)
        short_f = (1.0 + 1.0 / lev) / (1.0 + m)
        self._factors: FloatArray = np.stack((long_f, short_f))
        self._usd: FloatArray = np.zeros((2, self.grid.n_bins), dtype=np.float64)
        self._base: FloatArray = np.zeros((2, self.grid.n_bins), dtype=np.float64)
        self.dropped_usd = [0.0, 0.0]

    # -- reading -----------------------------------------------------------------------------
    def usd(self, side: Side) -> FloatArray:
        """A copy of one side's entry notional per bin."""
        out: FloatArray = self._usd[_ROW[side]].copy()
        return out

    def base(self, side: Side) -> FloatArray:
        """A copy of one side's base quantity per bin."""
        out: FloatArray = self._base[_ROW[side]].copy()
        return out

    def total_usd(self, side: Side) -> float:
        """Gross live notional of one side."""
        return float(self._usd[_ROW[side]].sum())

    def usd_at(self, side: Side, price: Num) -> float:
        """Notional in the bin containing ``price`` (0 off the grid)."""
        idx, ok = self.grid.index_of(np.array([to_float(price)], dtype=np.float64))
        return float(self._usd[_ROW[side], idx[0]]) if bool(ok[0]) else 0.0

    def copy(self) -> LiquidationMap:
        """An independent map with the same state (snapshots must never mutate the caller's)."""
        new = object.__new__(LiquidationMap)
        new.grid, new.tiers, new.half_life_h, new.as_of = (
            self.grid,
            self.tiers,
            self.half_life_h,
            self.as_of,
        )
        new._weights, new._factors = self._weights, self._factors
        new._usd, new._base = self._usd.copy(), self._base.copy()
        new.dropped_usd = list(self.dropped_usd)
        return new

    # -- updating ----------------------------------------------------------------------------
    def add(self, side: Side, usd: ArrayIn | Num, entry_price: ArrayIn | Num) -> None:
        """Spread new OI over the tiers at each entry's liquidation prices (§3, T11)."""
        amounts = np.atleast_1d(_as_array(usd))
        entries = np.atleast_1d(_as_array(entry_price))
        if amounts.shape != entries.shape:
            amounts, entries = np.broadcast_arrays(amounts, entries)
        if np.any(~np.isfinite(amounts)) or np.any(amounts < 0.0):
            raise SignalInputError("added OI must be finite and >= 0 (use remove() for falls)")
        if np.any(~np.isfinite(entries)) or np.any(entries <= 0.0):
            raise SignalInputError("entry prices must be positive and finite")
        row = _ROW[side]
        liq = np.multiply.outer(entries, self._factors[row]).ravel()
        usd_t = np.multiply.outer(amounts, self._weights).ravel()
        base_t = np.multiply.outer(amounts / entries, self._weights).ravel()
        idx, ok = self.grid.index_of(liq)
        n = self.grid.n_bins
        self._usd[row] += np.bincount(idx[ok], weights=usd_t[ok], minlength=n)
        self._base[row] += np.bincount(idx[ok], weights=base_t[ok], minlength=n)
        self.dropped_usd[row] += float(usd_t[~ok].sum())

    def remove(self, side: Side, usd: Num) -> float:
        """Falling OI closes the side proportionally across its live bins; returns USD removed."""
        amount = to_float(usd)
        if not (math.isfinite(amount) and amount >= 0.0):
            raise SignalInputError(f"removed OI must be finite and >= 0, got {amount}")
        row = _ROW[side]
        total = float(self._usd[row].sum())
        if total <= 0.0 or amount == 0.0:
            return 0.0
        keep = max(0.0, 1.0 - amount / total)
        self._usd[row] *= keep
        self._base[row] *= keep
        return total * (1.0 - keep)

    def consume(self, low: Num, high: Num | None = None) -> tuple[float, float]:
        """Zero the bins the mark crossed: longs at or above ``low``, shorts at or below ``high``.

        Returns the consumed (long, short) USD so a caller can net it against falling OI. A
        bound that is not a positive finite price is unknown and consumes nothing on its side
        (``searchsorted`` puts NaN past the grid's end: a NaN high wiped every short bin).
        """
        lo = to_float(low)
        hi = lo if high is None else to_float(high)
        c = self.grid.centers
        n = c.size
        i_long = int(np.searchsorted(c, lo, side="left")) if is_price(lo) else n
        i_short = int(np.searchsorted(c, hi, side="right")) if is_price(hi) else 0
        gone_long = float(self._usd[0, i_long:].sum())
        gone_short = float(self._usd[1, :i_short].sum())
        self._usd[0, i_long:] = 0.0
        self._base[0, i_long:] = 0.0
        self._usd[1, :i_short] = 0.0
        self._base[1, :i_short] = 0.0
        return gone_long, gone_short

    def decay_to(self, ts: float) -> None:
        """Age the mass to ``ts`` with the configured half-life (§3: 72 h); never rewinds."""
        dt_h = (float(ts) - self.as_of) / 3600.0
        if dt_h > 0.0:
            factor = 0.5 ** (dt_h / self.half_life_h)
            self._usd *= factor
            self._base *= factor
            self.as_of = float(ts)

    def apply_interval(
        self,
        ts: float,
        long_delta_usd: Num,
        short_delta_usd: Num,
        entry_price: Num,
        low: Num,
        high: Num,
    ) -> None:
        """One OI interval in the documented order: decay, consume, remove (net), add."""
        self.decay_to(ts)
        consumed = self.consume(low, high)
        entry = to_float(entry_price)
        priced = is_price(entry)  # unpriced new OI cannot be placed: dropped, and counted
        sides: tuple[tuple[Side, float], ...] = (
            ("long", to_float(long_delta_usd)),
            ("short", to_float(short_delta_usd)),
        )
        for s, delta in sides:
            if delta < 0.0:
                net = -delta - consumed[_ROW[s]]
                if net > 0.0:
                    self.remove(s, net)
            elif delta > 0.0 and priced:
                self.add(s, delta, entry)
            elif delta > 0.0:
                self.dropped_usd[_ROW[s]] += delta

    def replay(
        self,
        ts: ArrayIn,
        long_delta_usd: ArrayIn,
        short_delta_usd: ArrayIn,
        entry_price: ArrayIn,
        low: ArrayIn,
        high: ArrayIn,
    ) -> None:
        """Feed a history; the loop is over *intervals* (path-dependent), never over bins."""
        t, dl, ds, e, lo, hi = (
            to_array(x) for x in (ts, long_delta_usd, short_delta_usd, entry_price, low, high)
        )
        if not (t.size == dl.size == ds.size == e.size == lo.size == hi.size):
            raise SignalInputError("replay arrays must have equal lengths")
        for i in range(t.size):
            self.apply_interval(
                float(t[i]), float(dl[i]), float(ds[i]), float(e[i]), float(lo[i]), float(hi[i])
            )

    def recentered(self, center: Num) -> LiquidationMap:
        """A copy re-binned onto a grid around a new price (after a large move)."""
        new = LiquidationMap(
            center,
            self.tiers,
            n_bins=self.grid.n_bins,
            half_width=self.grid.half_width,
            half_life_h=self.half_life_h,
            max_leverage=math.inf,
            as_of=self.as_of,
        )
        idx, ok = new.grid.index_of(np.asarray(self.grid.centers))
        n = new.grid.n_bins
        for row in (0, 1):
            new._usd[row] = np.bincount(idx[ok], weights=self._usd[row][ok], minlength=n)
            new._base[row] = np.bincount(idx[ok], weights=self._base[row][ok], minlength=n)
            new.dropped_usd[row] = self.dropped_usd[row] + float(self._usd[row][~ok].sum())
        return new

    def scaled(
        self, long_oi_usd: Num, short_oi_usd: Num, mark: Num, now: float | None = None
    ) -> ScaledMap:
        """Read-only view for a snapshot: decayed to ``now``, consumed at ``mark``, each side
        scaled to at most its OI. The map itself is not changed."""
        p = positive_price(mark, "mark")
        c = self.grid.centers
        i_long = int(np.searchsorted(c, p, side="left"))
        i_short = int(np.searchsorted(c, p, side="right"))
        age_h = 0.0 if now is None else max(0.0, (float(now) - self.as_of) / 3600.0)
        decay = 0.5 ** (age_h / self.half_life_h)
        usd = self._usd * decay
        base = self._base * decay
        usd[0, i_long:] = 0.0
        base[0, i_long:] = 0.0
        usd[1, :i_short] = 0.0
        base[1, :i_short] = 0.0
        ois = (max(to_float(long_oi_usd), 0.0), max(to_float(short_oi_usd), 0.0))
        gross = (float(usd[0].sum()), float(usd[1].sum()))
        net = [0.0, 0.0]
        for row in (0, 1):
            scale = min(1.0, ois[row] / gross[row]) if gross[row] > 0.0 else 1.0
            if scale < 1.0:
                usd[row] *= scale
                base[row] *= scale
            net[row] = gross[row] * scale
        usd.setflags(write=False)
        base.setflags(write=False)
        return ScaledMap(
            centers=c,
            long_usd=usd[0],
            short_usd=usd[1],
            long_base=base[0],
            short_base=base[1],
            mark=p,
            gross_usd_long=gross[0],
            gross_usd_short=gross[1],
            net_usd_long=net[0],
            net_usd_short=net[1],
            side_oi_usd_long=ois[0],
            side_oi_usd_short=ois[1],
            gross_to_net_long=gross_to_net(gross[0], ois[0]),
            gross_to_net_short=gross_to_net(gross[1], ois[1]),
        )


def _as_array(x: ArrayIn | Num) -> FloatArray:
    if isinstance(x, Decimal | float | int):
        return np.array([float(x)], dtype=np.float64)
    return to_array(x)
