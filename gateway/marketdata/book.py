"""The gateway's L2 order book for one symbol.

Layout, and why:
  * per side a ``dict`` price -> qty (O(1) lookup: most venue updates change the quantity of a
    level that already exists) and a sorted ``list`` of prices maintained with ``bisect`` (O(log n)
    search; insert/delete is a ``memmove`` of at most a few thousand pointers, which in CPython is
    cheaper than any pure-Python tree). Both lists are ascending, so the best bid is the *last*
    element and the best ask the *first*: no negated keys, no second comparison function.
  * ``Decimal`` everywhere: the venue checksum (gateway.kraken.checksum) is computed over the exact
    decimal text, and a float would already have lost it.

Threading: one writer (the market-data session thread) and any number of readers (risk, routing,
admin). A single ``threading.Lock`` guards every read and write. The writer holds it for about a
microsecond per update; readers copy out only what they asked for (top, ``n`` levels) and do any
further work (checksum, formatting) after releasing it. That is simpler to get right than a
lock-free snapshot scheme, and a snapshot per update would cost the writer more than the lock does.
Nothing here blocks on I/O while holding the lock.

Depth truncation: a venue subscription has a depth (10, 25, ...); levels that fall outside it are
not always deleted explicitly, and a stale one could later resurface inside the checksummed top 10.
With ``max_depth`` set the book drops levels beyond it after each snapshot, each
:meth:`Book.apply_update` and at the end of each :meth:`Book.apply_updates` batch (Kraken: "apply
all updates in the message, then truncate").
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterable
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from gateway.kraken.checksum import CHECKSUM_LEVELS, book_checksum

__all__ = ["Book", "Depth", "Level", "Side", "Stamp", "Top", "Trade", "TradeSide"]

_TWO = Decimal(2)


def _valid(price: Decimal, qty: Decimal) -> bool:
    """A level a book can hold: finite, a price above 0, a quantity not below 0. Finite
    first: "Infinity" passed the sign checks and sat in the book (an ask no order could
    reach), and a NaN raised InvalidOperation from the comparison, which no caller took for
    a bad level."""
    return price.is_finite() and qty.is_finite() and qty >= 0 and price > 0


class Side(StrEnum):
    """Book side. A ``StrEnum`` so plain ``"bid"``/``"ask"`` from a parser work too."""

    BID = "bid"
    ASK = "ask"


class TradeSide(StrEnum):
    """Aggressor (taker) side of a trade, as the venue reports it."""

    BUY = "buy"
    SELL = "sell"


class Level(NamedTuple):
    price: Decimal
    qty: Decimal


class Top(NamedTuple):
    bid: Level | None
    ask: Level | None


class Depth(NamedTuple):
    """Best first on both sides: bids high -> low, asks low -> high."""

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


class Stamp(NamedTuple):
    """When the book last changed: monotonic for ages and latencies, wall clock for humans/logs."""

    monotonic_ns: int
    wall_ns: int


class Trade(NamedTuple):
    price: Decimal
    qty: Decimal
    side: TradeSide
    time_ns: int  # venue trade time if known, else local wall clock at receipt (ns since epoch)
    received_monotonic_ns: int


class Book:
    """L2 book of one symbol; see the module docstring for the design and thread-safety rules."""

    __slots__ = (
        "_ask_prices",
        "_asks",
        "_bid_prices",
        "_bids",
        "_lock",
        "_max_depth",
        "_mid_at",
        "_mono",
        "_stamp",
        "_trades",
        "_version",
        "_wall",
        "symbol",
    )

    def __init__(
        self,
        symbol: str,
        *,
        max_depth: int | None = None,
        trades_capacity: int = 1_000,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if max_depth is not None and max_depth < 1:
            raise ValueError(f"max_depth must be >= 1 or None, got {max_depth}")
        if trades_capacity < 1:
            raise ValueError(f"trades_capacity must be >= 1, got {trades_capacity}")
        self.symbol = symbol
        self._max_depth = max_depth
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}
        self._bid_prices: list[Decimal] = []  # ascending; best bid is the last element
        self._ask_prices: list[Decimal] = []  # ascending; best ask is the first element
        self._lock = threading.Lock()
        self._trades: deque[Trade] = deque(maxlen=trades_capacity)
        self._mono = monotonic_ns
        self._wall = wall_ns
        self._stamp: Stamp | None = None
        self._version = 0
        # (version, mid): the pre-trade gate asks for the mid on every order; between book
        # changes that is one tuple read instead of a lock, two Levels and a Decimal division.
        self._mid_at: tuple[int, Decimal | None] = (-1, None)

    # ------------------------------------------------------------------ writer side

    def apply_snapshot(
        self, bids: Iterable[tuple[Decimal, Decimal]], asks: Iterable[tuple[Decimal, Decimal]]
    ) -> None:
        """Replace both sides. Input order does not matter; zero-quantity levels are skipped."""
        new_bids = self._snapshot_side(bids)
        new_asks = self._snapshot_side(asks)
        with self._lock:
            # In place: the containers keep their identity for the life of the book, which lets
            # apply_update pick its side before taking the lock.
            self._bids.clear()
            self._bids.update(new_bids)
            self._asks.clear()
            self._asks.update(new_asks)
            self._bid_prices[:] = sorted(new_bids)
            self._ask_prices[:] = sorted(new_asks)
            self._truncate()
            self._touch()

    def apply_update(self, side: Side | str, price: Decimal, qty: Decimal) -> None:
        """Set the quantity at one level; ``qty == 0`` removes it (absent level: no-op)."""
        if side == "bid":
            levels, prices = self._bids, self._bid_prices
        elif side == "ask":
            levels, prices = self._asks, self._ask_prices
        else:
            raise ValueError(f"side must be 'bid' or 'ask', got {side!r}")
        if type(price) is not Decimal or type(qty) is not Decimal:
            raise TypeError("price and qty must be Decimal")
        with self._lock:
            self._set(levels, prices, price, qty)
            if self._max_depth is not None:
                self._truncate()
            self._touch()

    def apply_updates(self, updates: Iterable[tuple[Side | str, Decimal, Decimal]]) -> None:
        """Apply one venue message's updates atomically (readers never see half a message)."""
        with self._lock:
            for side, price, qty in updates:
                if type(price) is not Decimal or type(qty) is not Decimal:
                    raise TypeError("price and qty must be Decimal")
                if side == "bid":
                    self._set(self._bids, self._bid_prices, price, qty)
                elif side == "ask":
                    self._set(self._asks, self._ask_prices, price, qty)
                else:
                    raise ValueError(f"side must be 'bid' or 'ask', got {side!r}")
            self._truncate()
            self._touch()

    def clear(self) -> None:
        """Drop all levels (e.g. before resubscribing after a checksum mismatch); keeps trades."""
        with self._lock:
            self._bids.clear()
            self._asks.clear()
            self._bid_prices.clear()
            self._ask_prices.clear()
            self._touch()

    def record_trade(
        self, price: Decimal, qty: Decimal, side: TradeSide | str, time_ns: int | None = None
    ) -> None:
        """Append to the last-trades ring; ``time_ns`` is the venue's time when it sends one."""
        if type(price) is not Decimal or type(qty) is not Decimal:
            raise TypeError("price and qty must be Decimal")
        trade = Trade(
            price,
            qty,
            TradeSide(side),
            self._wall() if time_ns is None else time_ns,
            self._mono(),
        )
        with self._lock:
            self._trades.append(trade)

    @staticmethod
    def _snapshot_side(levels: Iterable[tuple[Decimal, Decimal]]) -> dict[Decimal, Decimal]:
        out: dict[Decimal, Decimal] = {}
        for price, qty in levels:
            if type(price) is not Decimal or type(qty) is not Decimal:
                raise TypeError("price and qty must be Decimal")
            if not _valid(price, qty):
                raise ValueError(f"invalid level {price} x {qty}")
            if qty:
                out[price] = qty
        return out

    @staticmethod
    def _set(
        levels: dict[Decimal, Decimal], prices: list[Decimal], price: Decimal, qty: Decimal
    ) -> None:
        if qty:
            if not _valid(price, qty):
                raise ValueError(f"invalid level {price} x {qty}")
            if price not in levels:
                insort(prices, price)
            levels[price] = qty
        elif levels.pop(price, None) is not None:
            del prices[bisect_left(prices, price)]

    def _truncate(self) -> None:
        depth = self._max_depth
        if depth is None:
            return
        excess = len(self._bid_prices) - depth
        if excess > 0:  # worst bids are at the front
            for p in self._bid_prices[:excess]:
                del self._bids[p]
            del self._bid_prices[:excess]
        if len(self._ask_prices) > depth:  # worst asks are at the back
            for p in self._ask_prices[depth:]:
                del self._asks[p]
            del self._ask_prices[depth:]

    def _touch(self) -> None:
        self._stamp = Stamp(self._mono(), self._wall())
        self._version += 1

    # ------------------------------------------------------------------ reader side

    @property
    def max_depth(self) -> int | None:
        return self._max_depth

    @property
    def version(self) -> int:
        """Bumped on every change, so a reader can skip work when nothing moved."""
        return self._version

    @property
    def last_update(self) -> Stamp | None:
        """When the book last changed, or ``None`` before the first snapshot/update."""
        return self._stamp

    def top(self) -> Top:
        """Best bid and best ask with their quantities (``None`` for an empty side)."""
        with self._lock:
            bp, ap = self._bid_prices, self._ask_prices
            bid = Level(bp[-1], self._bids[bp[-1]]) if bp else None
            ask = Level(ap[0], self._asks[ap[0]]) if ap else None
        return Top(bid, ask)

    def depth(self, n: int) -> Depth:
        """The best ``n`` levels of each side, best first."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        with self._lock:
            bids, asks = self._bids, self._asks
            best_bids = self._bid_prices[-n:] if n else []
            bid_levels = tuple(Level(p, bids[p]) for p in reversed(best_bids))
            ask_levels = tuple(Level(p, asks[p]) for p in self._ask_prices[:n])
        return Depth(bid_levels, ask_levels)

    def level_counts(self) -> tuple[int, int]:
        """(number of bid levels, number of ask levels)."""
        with self._lock:
            return len(self._bid_prices), len(self._ask_prices)

    def mid(self) -> Decimal | None:
        """(best bid + best ask) / 2, or ``None`` if either side is empty."""
        version = self._version
        cached = self._mid_at
        if cached[0] == version:
            return cached[1]
        with self._lock:
            bp, ap = self._bid_prices, self._ask_prices
            mid = (bp[-1] + ap[0]) / _TWO if bp and ap else None
        # Read before computing: a change in between leaves a stale key, so the next call
        # computes again rather than trusting a mid that belongs to an older book.
        self._mid_at = (version, mid)
        return mid

    def spread(self) -> Decimal | None:
        """best ask - best bid (negative when crossed), or ``None`` if either side is empty."""
        bid, ask = self.top()
        if bid is None or ask is None:
            return None
        return ask.price - bid.price

    def is_crossed(self) -> bool:
        """True when best bid >= best ask.

        Locked (equal) counts as crossed: on a continuous venue those orders would have matched, so
        an equal bid and ask in *our* copy means we missed an update.
        """
        with self._lock:
            if not self._bid_prices or not self._ask_prices:
                return False
            return self._bid_prices[-1] >= self._ask_prices[0]

    def checksum(self, price_decimals: int, qty_decimals: int) -> int:
        """Kraken's CRC32 of the top 10 levels (gateway.kraken.checksum), at the given precision."""
        bids, asks = self.depth(CHECKSUM_LEVELS)
        return book_checksum(bids, asks, price_decimals, qty_decimals)

    def trades(self, n: int | None = None) -> list[Trade]:
        """The last ``n`` (default: all kept) trades, oldest first."""
        with self._lock:
            items = list(self._trades)
        return items if n is None else items[-n:] if n > 0 else []

    def __repr__(self) -> str:
        nb, na = self.level_counts()
        return f"Book({self.symbol!r}, bids={nb}, asks={na}, version={self._version})"
