"""Seeded synthetic order flow: the other participants of the simulated venue.

A venue with static books never exercises a gateway: resting orders never fill, market data
never moves. This flow quotes a two-sided ladder around a mid that random-walks, churns quotes,
and now and then sends market orders, so the gateway's own orders trade against something that
behaves like a market.

Everything is decided by one ``random.Random(seed)`` and by the engine's answers, and all
prices are whole multiples of the tick computed with integers and ``Decimal`` (never floats),
so a given seed replays the same orders, which is what lets tests call :meth:`step` directly and
assert on the outcome.

The flow uses two owners on purpose: ``SIM-FLOW`` quotes and ``SIM-FLOW-TAKER`` takes. The
engine's self-trade prevention (cancel newest) would otherwise cancel every aggressive order of
a single owner against its own quotes. Both start with ``SIM-`` so the engine does not count
their submissions (``MatchingEngine.submission_counts`` is for the gateway's).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from gateway.venue_sim.engine import (
    Event,
    MatchingEngine,
    OrderSnapshot,
    OrdType,
    Side,
    TimeInForce,
)
from gateway.venue_sim.instruments import Instrument

__all__ = ["FLOW_MAKER", "FLOW_TAKER", "SyntheticFlow"]

_log = logging.getLogger(__name__)

FLOW_MAKER = "SIM-FLOW"
FLOW_TAKER = "SIM-FLOW-TAKER"

# Shape of the simulated market, in basis points of the reference price (converted to whole
# ticks per instrument, at least one tick).
_LEVEL_STEP_BPS = Decimal(2)  # distance between quoted levels
_NOTIONAL_PER_UNIT = Decimal(500)  # quote currency per size unit (1 significant digit)
_MIN_LEVELS = 5  # top up a side that falls below this many levels
_MAX_ORDERS_PER_SIDE = 60  # bounds the book (and the engine's work) however long it runs


@dataclass(slots=True)
class _SymbolState:
    """Per-book walk state; prices in integer ticks so the walk is exact."""

    inst: Instrument
    ref_ticks: int
    mid_ticks: int
    step_ticks: int  # between quoted levels
    half_spread_ticks: int
    max_move_ticks: int  # per step of the walk
    unit: Decimal  # size unit, on the lot grid and >= the minimum

    def price(self, ticks: int) -> Decimal:
        return (self.inst.price_tick * ticks).quantize(self.inst.price_quantum)


def _ticks(inst: Instrument, bps: Decimal) -> int:
    """Whole ticks closest to ``bps`` of the reference price, at least one."""
    raw = inst.ref_price * bps / Decimal(10_000) / inst.price_tick
    return max(1, int(raw.to_integral_value(rounding=ROUND_HALF_EVEN)))


def _unit(inst: Instrument) -> Decimal:
    """A round order size worth about ``_NOTIONAL_PER_UNIT``, valid for the instrument."""
    raw = _NOTIONAL_PER_UNIT / inst.ref_price
    one_digit = raw.quantize(Decimal(1).scaleb(raw.adjusted()), rounding=ROUND_HALF_EVEN)
    unit = max(one_digit, inst.min_qty)
    lots = (unit / inst.lot_size).to_integral_value(rounding=ROUND_HALF_EVEN)
    return (max(lots, Decimal(1)) * inst.lot_size).quantize(inst.qty_quantum)


class SyntheticFlow:
    """Other participants on the simulated venue; see the module docstring for the behaviour.

    Call :meth:`seed_books` once, then either :meth:`step` directly (deterministic tests) or
    :meth:`start` to run steps on a daemon thread at ``rate_hz`` until :meth:`stop`.
    """

    def __init__(
        self,
        engine: MatchingEngine,
        seed: int = 0,
        symbols: Sequence[str] | None = None,
        rate_hz: float = 10.0,
        *,
        levels_per_side: int = 20,
        market_order_probability: float = 0.2,
        maker_owner: str = FLOW_MAKER,
        taker_owner: str = FLOW_TAKER,
    ) -> None:
        self.engine = engine
        self.rate_hz = rate_hz
        self.levels_per_side = levels_per_side
        self.market_order_probability = market_order_probability
        self.maker_owner = maker_owner
        self.taker_owner = taker_owner
        self._rng = random.Random(seed)
        self._n = 0
        self._lock = threading.Lock()  # step() may be called by a test while the thread runs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        chosen = tuple(symbols) if symbols is not None else engine.symbols
        self._state: dict[str, _SymbolState] = {}
        for sym in chosen:
            inst = engine.instruments[sym]  # KeyError for an unknown symbol: a config bug
            ref = int((inst.ref_price / inst.price_tick).to_integral_value())
            step = _ticks(inst, _LEVEL_STEP_BPS)
            self._state[sym] = _SymbolState(
                inst=inst, ref_ticks=ref, mid_ticks=ref, step_ticks=step,
                half_spread_ticks=max(1, step // 2), max_move_ticks=max(1, step // 2),
                unit=_unit(inst),
            )

    # ---- public -------------------------------------------------------------------------------

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._state)

    def mid(self, symbol: str) -> Decimal:
        """The flow's current fair value for a book (not necessarily the book's mid)."""
        s = self._state[symbol]
        return s.price(s.mid_ticks)

    def seed_books(self, levels_per_side: int | None = None) -> list[Event]:
        """Quote ``levels_per_side`` levels on both sides of every book around the mid, so the
        venue opens with depth instead of an empty book."""
        levels = self.levels_per_side if levels_per_side is None else levels_per_side
        events: list[Event] = []
        with self._lock:
            for s in self._state.values():
                for k in range(levels):
                    events += self._quote(s, Side.BUY, k)
                    events += self._quote(s, Side.SELL, k)
        return events

    def step(self) -> list[Event]:
        """One tick of the market: walk each mid, requote, maybe trade. Returns engine events."""
        events: list[Event] = []
        with self._lock:
            for sym, s in self._state.items():
                events += self._step_symbol(sym, s)
        return events

    def start(self) -> None:
        """Run :meth:`step` at ``rate_hz`` on a daemon thread (idempotent)."""
        if self.rate_hz <= 0:
            raise ValueError("rate_hz must be positive to run the flow on a thread")
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="venue-sim-flow", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for the step in progress, so no order lands after this."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- internals ------------------------------------------------------------------------------

    def _run(self) -> None:
        interval = 1.0 / self.rate_hz
        while not self._stop.wait(interval):
            try:
                self.step()
            except Exception:  # keep the venue alive; a bad step is logged, not fatal
                _log.exception("synthetic flow step failed")

    def _clid(self) -> str:
        self._n += 1
        return f"F{self._n}"

    def _quote(self, s: _SymbolState, side: Side, level: int) -> list[Event]:
        """Place one maker order ``level`` steps behind the touch of our own quotes."""
        offset = s.half_spread_ticks + level * s.step_ticks
        ticks = s.mid_ticks - offset if side is Side.BUY else s.mid_ticks + offset
        if ticks <= 0:
            return []
        qty = s.unit * self._rng.randint(1, 10)
        return self.engine.submit(self.maker_owner, self._clid(), s.inst.symbol, side, qty,
                                  s.price(ticks))

    def _walk(self, s: _SymbolState) -> None:
        move = self._rng.randint(-s.max_move_ticks, s.max_move_ticks)
        # Mean reversion once more than ~3% away keeps the walk in a plausible band forever.
        band = max(1, s.ref_ticks * 3 // 100)
        if s.mid_ticks - s.ref_ticks > band:
            move -= self._rng.randint(0, s.max_move_ticks)
        elif s.ref_ticks - s.mid_ticks > band:
            move += self._rng.randint(0, s.max_move_ticks)
        floor = s.half_spread_ticks + self.levels_per_side * s.step_ticks + 1
        s.mid_ticks = max(floor, s.mid_ticks + move)

    def _step_symbol(self, sym: str, s: _SymbolState) -> list[Event]:
        rng = self._rng
        events: list[Event] = []
        self._walk(s)
        mine = self.engine.open_orders(self.maker_owner, sym)
        best_bid = s.price(s.mid_ticks - s.half_spread_ticks)
        best_ask = s.price(s.mid_ticks + s.half_spread_ticks)
        far = s.half_spread_ticks + (self.levels_per_side + 2) * s.step_ticks
        low, high = s.price(max(0, s.mid_ticks - far)), s.price(s.mid_ticks + far)
        bids = [o for o in mine if o.side is Side.BUY]
        asks = [o for o in mine if o.side is Side.SELL]
        # Pull quotes that the move made too aggressive (they would sit inside our own spread
        # and could meet our own other side) or too far to matter, plus the oldest overflow.
        stale = [o for o in bids if o.price is None or o.price > best_bid or o.price < low]
        stale += [o for o in asks if o.price is None or o.price < best_ask or o.price > high]
        for side_orders in (bids, asks):
            overflow = len(side_orders) - _MAX_ORDERS_PER_SIDE
            if overflow > 0:
                stale += side_orders[:overflow]
        # Random churn, like other participants changing their minds.
        if mine and rng.random() < 0.5:
            stale.append(mine[rng.randrange(len(mine))])
        seen: set[str] = set()
        for o in stale:
            if o.order_id not in seen:
                seen.add(o.order_id)
                events += self.engine.cancel(self.maker_owner, self._clid(), order_id=o.order_id)
        # New quotes at random depths, biased to the touch.
        for _ in range(rng.randint(1, 3)):
            level = min(rng.randint(0, self.levels_per_side - 1), rng.randint(0, 6))
            events += self._quote(s, rng.choice((Side.BUY, Side.SELL)), level)
        events += self._top_up(sym, s, seen)
        if rng.random() < self.market_order_probability:
            side = rng.choice((Side.BUY, Side.SELL))
            events += self.engine.submit(self.taker_owner, self._clid(), sym, side,
                                         s.unit * rng.randint(1, 5), None, OrdType.MARKET,
                                         TimeInForce.IOC)
        return events

    def _top_up(self, sym: str, s: _SymbolState, canceled: set[str]) -> list[Event]:
        """Keep at least ``_MIN_LEVELS`` of our own levels per side so books stay two-sided."""
        events: list[Event] = []
        live: list[OrderSnapshot] = [
            o for o in self.engine.open_orders(self.maker_owner, sym) if o.order_id not in canceled
        ]
        for side in (Side.BUY, Side.SELL):
            levels = {o.price for o in live if o.side is side}
            k = 0
            while len(levels) < _MIN_LEVELS and k < self.levels_per_side:
                offset = s.half_spread_ticks + k * s.step_ticks
                ticks = s.mid_ticks - offset if side is Side.BUY else s.mid_ticks + offset
                px = s.price(ticks)
                if px not in levels:
                    got = self._quote(s, side, k)
                    events += got
                    levels.add(px)
                k += 1
        return events
