"""Price-time-priority matching engine of the Kraken UAT venue simulator.

The engine is the single source of truth that every face (FIX today, REST and WebSocket later)
shares, so it speaks none of their protocols: callers hand it plain values and receive typed,
immutable events describing every state change in the order it happened. Faces translate those
events; they never peek into the books.

Design choices, and why:

* ``Decimal`` end to end, with one private arithmetic context, so results never depend on a
  caller thread's ``decimal`` context and no price or quantity ever touches binary floats.
  Every stored price is quantized to the instrument's ``price_decimals`` and every quantity to
  its ``qty_decimals`` so equal values always print identically (faces should format with
  ``format(value, "f")``: ``str(Decimal("0E-8"))`` is scientific).
* One ``threading.Lock`` around each public call: the FIX threads, the synthetic-flow thread and
  later REST/WS threads all call in, and a whole-call lock makes every call atomic, which is
  what a venue promises its participants.
* Events carry a gap-free engine-wide ``seq`` and the engine time of the call, and are also
  pushed to listeners *under the lock*, so a market-data face sees one total order of book
  changes across all callers and can align a :meth:`MatchingEngine.depth_snapshot` with the
  incremental stream. Listeners must be quick (enqueue and return) and must not call back into
  the engine; a re-entrant call raises instead of deadlocking.
* Books are a sorted ``list`` of prices (``bisect``) plus ``dict`` price -> FIFO ``deque``:
  a non-crossing order costs a dict lookup and at most one list insertion.
* Identifiers (OrderID, ExecID, trade txid) come from a counter pushed through a bijective mixer,
  so they look like Kraken's (``OXXXXX-XXXXX-XXXXXX``) and never repeat within a run. The
  counter starts at a random point drawn at every construction, *not* from ``seed``: the FIX
  store carries sequence numbers across a simulator restart and a receiver dedupes reports on
  ExecID across its journal, so ids that replayed per seed would make the first reports after
  a restart look like duplicates and be dropped. ``seed`` keeps its meaning for the books and
  the synthetic flow, which are what tests replay. Kraken's integer trade id is a per-symbol
  counter started at the wall clock in microseconds, so it too keeps increasing across restarts.
* Self-trade prevention is Kraken's default ``cancel_newest``: when an incoming order would
  match a resting order of the same owner, the incoming order's remainder is canceled and the
  resting order stays untouched. Different owners trade freely.
* Kraken's cancel scope (kraken-api.md, FIX "Session and connectivity"): a FIX single cancel or
  cancel/replace only reaches orders placed on the same FIX session; orders placed over REST or
  WS (or by another session) need REST, WS or a mass cancel. So each order remembers the FIX
  session that placed it (``origin``, None otherwise), and :meth:`MatchingEngine.cancel` and
  :meth:`MatchingEngine.replace` called with ``session`` find only that session's orders,
  refusing the others exactly as unknown orders. Status queries and mass cancels are not
  scoped: they cover every order of the owner.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from bisect import bisect_left, insort
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from enum import IntEnum, StrEnum
from typing import Concatenate, Final, ParamSpec, TypeAlias, TypeVar

from gateway.venue_sim.deadline import Deadline
from gateway.venue_sim.instruments import INSTRUMENTS, Instrument

__all__ = [
    "Accepted",
    "BookChanged",
    "CancelReason",
    "CancelRejected",
    "Canceled",
    "CxlRejCode",
    "CxlRejResponseTo",
    "DepthSnapshot",
    "EngineListener",
    "Event",
    "Filled",
    "MatchingEngine",
    "OrdStatus",
    "OrdType",
    "OrderSnapshot",
    "PostOnlyRefused",
    "RejectCode",
    "Rejected",
    "Replaced",
    "Side",
    "TimeInForce",
    "TradePrinted",
]

_log = logging.getLogger(__name__)

# Private context: enough precision that price*qty sums of any admissible order stay exact, and
# traps on the operations that would mean a bug rather than a rounding.
_CTX = Context(
    prec=60, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
_ZERO = Decimal(0)
# Admissible inputs are bounded so every sum the engine forms stays far inside _CTX precision.
_MAX_ADJUSTED_EXPONENT = 15
# Extra decimals kept on an average price that does not divide out exactly.
_AVG_PX_EXTRA_DECIMALS = 8


# --------------------------------------------------------------------------------------------
# Enumerations. Values are the FIX 4.4 wire values so the FIX face maps them 1:1 (``Side(v)``).
# --------------------------------------------------------------------------------------------


class Side(StrEnum):
    """FIX tag 54 values."""

    BUY = "1"
    SELL = "2"


class OrdType(StrEnum):
    """FIX tag 40 values (only the two Kraken spot types the simulator matches)."""

    MARKET = "1"
    LIMIT = "2"


class TimeInForce(StrEnum):
    """FIX tag 59 values."""

    GTC = "1"
    IOC = "3"
    FOK = "4"


class OrdStatus(StrEnum):
    """FIX tag 39 values. The engine never reports REPLACED: FIX 4.4 reports the live status
    (0/1/2) on a replace, so the member exists only so faces can parse every status."""

    NEW = "0"
    PARTIALLY_FILLED = "1"
    FILLED = "2"
    CANCELED = "4"
    REPLACED = "5"
    REJECTED = "8"


class RejectCode(IntEnum):
    """FIX tag 103 OrdRejReason values the engine produces."""

    UNKNOWN_SYMBOL = 1
    DUPLICATE_ORDER = 6
    UNSUPPORTED_ORDER_CHARACTERISTIC = 11
    INCORRECT_QUANTITY = 13
    OTHER = 99


class CxlRejCode(IntEnum):
    """FIX tag 102 CxlRejReason values the engine produces."""

    TOO_LATE_TO_CANCEL = 0
    UNKNOWN_ORDER = 1
    DUPLICATE_CL_ORD_ID = 6
    OTHER = 99


class CxlRejResponseTo(StrEnum):
    """FIX tag 434: which request an OrderCancelReject answers."""

    CANCEL = "1"
    REPLACE = "2"


class CancelReason(StrEnum):
    """Why an order left the book without filling; faces map it to text or Kraken reasons."""

    USER = "user"
    MASS_CANCEL = "mass_cancel"
    IOC_REMAINDER = "ioc_remainder"
    FOK_UNFILLED = "fok_unfilled"
    SELF_TRADE = "self_trade"
    AMEND_BELOW_FILLED = "amend_below_filled"
    DISCONNECT = "disconnect"


# Module-level aliases: enum attribute access is a slow path on Python 3.11 and these sit on the
# per-order hot path.
_BUY = Side.BUY
_SELL = Side.SELL
_LIMIT = OrdType.LIMIT
_GTC = TimeInForce.GTC
_FOK = TimeInForce.FOK
_NEW = OrdStatus.NEW
_PARTIAL = OrdStatus.PARTIALLY_FILLED
_FILLED = OrdStatus.FILLED
_CANCELED = OrdStatus.CANCELED

_CANCEL_TEXT: Mapping[CancelReason, str] = {
    CancelReason.USER: "User requested",
    CancelReason.MASS_CANCEL: "User requested mass cancel",
    CancelReason.IOC_REMAINDER: "Unfilled remainder of immediate order canceled",
    CancelReason.FOK_UNFILLED: "Fill-or-kill order could not be filled in full",
    CancelReason.SELF_TRADE: "Self trade prevention: cancel newest",
    CancelReason.AMEND_BELOW_FILLED: "Order quantity amended below the filled quantity",
    CancelReason.DISCONNECT: "Canceled on disconnect (CancelOrdersOnDisconnect)",
}

# Kraken-style error texts, kept in one place so faces and tests agree on them.
TEXT_UNKNOWN_PAIR = "EQuery:Unknown asset pair"
TEXT_INVALID_VOLUME = "EGeneral:Invalid arguments:volume"
TEXT_ORDER_MINIMUM = "EOrder:Order minimum not met"
TEXT_INVALID_PRICE = "EOrder:Invalid price"
TEXT_PRICE_REQUIRED = "EGeneral:Invalid arguments:price required for limit order"
TEXT_PRICE_ON_MARKET = "EGeneral:Invalid arguments:price not allowed on market order"
TEXT_DUPLICATE = "EOrder:Duplicate cl_ord_id"
TEXT_UNKNOWN_ORDER = "EOrder:Unknown order"
TEXT_ORDER_CLOSED = "EOrder:Unknown order:order already closed"
# Kraken spot's error for a post-only order that would take (REST AddOrder, WS add_order).
TEXT_POST_WOULD_EXECUTE = "EOrder:Post only order"
# Post-only is for limit orders only (Kraken's oflags=post: "when ordertype = limit"): a
# market order can only take, so accepted it filled as a taker under a flag that said never.
TEXT_POST_ONLY_LIMIT = "EGeneral:Invalid arguments:post only is for limit orders"
# Prefixes of the ClOrdIDs the REST faces make up where the engine needs one and Kraken's
# request has none (an AddOrder without cl_ord_id, every CancelOrder): spot and futures. No
# client is ever shown one (`is_made_up_cl_ord_id`).
SPOT_REST_CL_ORD_ID_PREFIX: Final = "_k:"
FUTURES_REST_CL_ORD_ID_PREFIX: Final = "_kf:"
# The spot WS face's (add_order without cl_ord_id, every cancel_order), the same way.
SPOT_WS_CL_ORD_ID_PREFIX: Final = "_kw:"
_MADE_UP_PREFIXES: Final = (SPOT_REST_CL_ORD_ID_PREFIX, FUTURES_REST_CL_ORD_ID_PREFIX,
                            SPOT_WS_CL_ORD_ID_PREFIX)


def is_made_up_cl_ord_id(cl_ord_id: str) -> bool:
    """Whether a REST or WS face made `cl_ord_id` up for the engine (see the prefixes above):
    no client may send one, and none is shown to a client."""
    return cl_ord_id.startswith(_MADE_UP_PREFIXES)
TEXT_INVALID_ARGUMENTS = "EGeneral:Invalid arguments"
# A cancel/replace may change the quantity and the price only (Kraken: "amend qty/price").
TEXT_AMEND_ONLY_QTY_PRICE = f"{TEXT_INVALID_ARGUMENTS}:only qty and price can be amended"


class PostOnlyRefused(Exception):
    """A post-only order would have taken liquidity, so it never existed: no event, not
    counted (as a deadline refusal). Raised by :meth:`MatchingEngine.submit` under its lock,
    so no order can cross between the check and the matching (a face that looked at the top of
    the book first, then submitted, let the synthetic flow land in between and filled the
    post-only order as a taker)."""

    def __init__(self, error: str = TEXT_POST_WOULD_EXECUTE) -> None:
        super().__init__(error)
        self.error = error


# --------------------------------------------------------------------------------------------
# Events. Immutable so a face can hand them to other threads without copying.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """An order as it was right after the event that carries it (never updated later).

    ``price`` is None for market orders. ``avg_px`` is 0 until the first fill. Times are the
    engine's ``time_source`` units (default: epoch nanoseconds).
    """

    order_id: str
    owner: str
    cl_ord_id: str
    orig_cl_ord_id: str | None
    symbol: str
    side: Side
    ord_type: OrdType
    tif: TimeInForce
    price: Decimal | None
    qty: Decimal
    cum_qty: Decimal
    leaves_qty: Decimal
    avg_px: Decimal
    status: OrdStatus
    created_time: int
    transact_time: int
    #: Why a CANCELED order left the book (None otherwise), so a face that reports closed
    #: orders later (REST ``reason``) gives the cause the engine knew, not a guess.
    cancel_reason: CancelReason | None = None
    #: When it was created or last amended (a replace that took effect): Kraken's engine
    #: counter ages an order from there for its cancel and amend penalties (kraken-api.md
    #: section 7), not from ``created_time``. 0 in a snapshot not made by the engine.
    amended_time: int = 0

    @property
    def cancel_text(self) -> str | None:
        """The human text of ``cancel_reason`` (the FIX Text and WS ``reason`` of the cancel)."""
        return None if self.cancel_reason is None else _CANCEL_TEXT[self.cancel_reason]

    @property
    def is_open(self) -> bool:
        """Open means it can still trade; callers should not re-derive this from status chars."""
        return self.status in (OrdStatus.NEW, OrdStatus.PARTIALLY_FILLED)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The order passed validation and exists (FIX ExecType=0 New)."""

    order: OrderSnapshot
    exec_id: str
    seq: int
    time: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """The order never existed (FIX ExecType=8). Echoes the request so a stateless face (REST)
    can still answer fully."""

    owner: str
    cl_ord_id: str
    reason_code: RejectCode
    text: str
    symbol: str
    side: Side
    ord_type: OrdType
    tif: TimeInForce
    qty: Decimal
    price: Decimal | None
    exec_id: str
    seq: int
    time: int


@dataclass(frozen=True, slots=True)
class Filled:
    """One side of one match (FIX ExecType=F). Each match emits one for the maker and one for
    the taker, with distinct ``exec_id`` and the trade's ``trade_id`` and ``trade_txid`` (the
    same as on its :class:`TradePrinted`)."""

    order: OrderSnapshot
    last_qty: Decimal
    last_px: Decimal
    exec_id: str
    is_maker: bool
    trade_id: int
    trade_txid: str
    seq: int
    time: int


@dataclass(frozen=True, slots=True)
class Canceled:
    """The order left the book unfilled (FIX ExecType=4). ``request_cl_ord_id`` is the ClOrdID
    of the cancel request for user cancels (FIX echoes it as ClOrdID), else None."""

    order: OrderSnapshot
    reason: CancelReason
    text: str
    exec_id: str
    request_cl_ord_id: str | None
    seq: int
    time: int


@dataclass(frozen=True, slots=True)
class Replaced:
    """A cancel/replace took effect (FIX ExecType=5). ``order.cl_ord_id`` is the new ClOrdID;
    ``order.status`` is the live status (0/1, or 2 when the new qty closed the order)."""

    order: OrderSnapshot
    orig_cl_ord_id: str
    exec_id: str
    seq: int
    time: int


@dataclass(frozen=True, slots=True)
class CancelRejected:
    """A cancel or replace request was refused (FIX 35=9). ``ord_status`` is the order's live
    status, or REJECTED when the order is unknown (as FIX 4.4 prescribes)."""

    owner: str
    cl_ord_id: str
    orig_cl_ord_id: str | None
    reason: str
    reason_code: CxlRejCode
    response_to: CxlRejResponseTo
    order_id: str | None
    ord_status: OrdStatus
    seq: int
    time: int


@dataclass(frozen=True, slots=True)
class BookChanged:
    """Aggregated size at one price level after a change; ``new_level_qty == 0`` removes it."""

    symbol: str
    side: Side
    price: Decimal
    new_level_qty: Decimal
    seq: int
    time: int


@dataclass(frozen=True, slots=True)
class TradePrinted:
    """Public trade print; ``aggressor_side`` is the taker's side.

    ``trade_id`` is Kraken's integer trade id, per symbol and increasing (REST ``Trades``,
    ``TradesHistory``' ``trade_id``, WS ``trade`` and ``executions``); ``trade_txid`` is the
    trade's Kraken-style txid (``TXXXXX-XXXXX-XXXXXX``: ``TradesHistory``' keys, ``QueryOrders``'
    trades). Every face reports these two, so one trade has one id everywhere.
    """

    symbol: str
    price: Decimal
    qty: Decimal
    aggressor_side: Side
    trade_id: int
    trade_txid: str
    seq: int
    time: int


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    """Book levels consistent with every event whose ``seq`` is <= ``seq``; a market-data face
    applies only BookChanged events with a larger seq on top of it."""

    symbol: str
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    seq: int
    time: int


Event: TypeAlias = (
    Accepted | Rejected | Filled | Canceled | Replaced | CancelRejected | BookChanged | TradePrinted
)
EngineListener: TypeAlias = Callable[[tuple[Event, ...]], None]


# --------------------------------------------------------------------------------------------
# Identifiers.
# --------------------------------------------------------------------------------------------

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648 base32: uppercase letters + digits
_ID_PAIRS = tuple(a + b for a in _ID_ALPHABET for b in _ID_ALPHABET)  # 10 bits per lookup
_ID_BITS = 80
_ID_MASK = (1 << _ID_BITS) - 1
_MUL1 = 0x9E3779B97F4A7C15F39D | 1  # odd multipliers are bijections modulo 2**80
_MUL2 = 0xBF58476D1CE4E5B9D2B5 | 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def _random_id_key() -> int:
    """An 80-bit starting point for one run's id counters.

    Random rather than seeded so a restarted simulator never reissues a previous run's ids;
    two runs overlap only if their starting points fall within a run's id count of each other
    on the 2**80 cycle, which is negligible. ``time_ns`` is folded in so even a degenerate
    entropy source still differs from one start to the next.
    """
    return (int.from_bytes(os.urandom(10), "big") ^ _splitmix64(time.time_ns())) & _ID_MASK


def _first_trade_id() -> int:
    """A book's first integer trade id: the wall clock in microseconds, so ids keep increasing
    across restarts (a book never trades a million times a second) and stay below 2**53, exact
    in every client's JSON numbers."""
    return time.time_ns() // 1000


class _IdGen:
    """Kraken-looking ids (``PXXXXX-XXXXX-XXXXXX``) from a counter.

    The state walks ``key + n * MUL1`` (mod 2**80, odd step: never repeats within 2**80 ids) and
    each id is that value through a xorshift-multiply-xorshift mixer, every step of which is a
    bijection; so ids are unique by construction yet look random like Kraken's, which keeps
    faces from depending on their ordering. ``key`` is per run (see :func:`_random_id_key`).
    """

    __slots__ = ("_prefix", "_x")

    def __init__(self, prefix: str, key: int) -> None:
        self._prefix = prefix
        self._x = (key ^ ord(prefix)) & _ID_MASK

    def next(self) -> str:
        self._x = x = (self._x + _MUL1) & _ID_MASK
        x = ((x ^ (x >> 41)) * _MUL2) & _ID_MASK
        x ^= x >> 37
        p = _ID_PAIRS
        mid = p[(x >> 50) & 1023]
        return (
            f"{self._prefix}{p[x >> 70]}{p[(x >> 60) & 1023]}{mid[0]}-"
            f"{mid[1]}{p[(x >> 40) & 1023]}{p[(x >> 30) & 1023]}-"
            f"{p[(x >> 20) & 1023]}{p[(x >> 10) & 1023]}{p[x & 1023]}"
        )


# --------------------------------------------------------------------------------------------
# Internal mutable state.
# --------------------------------------------------------------------------------------------


class _Order:
    """Mutable order record; only ever touched under the engine lock, exposed as snapshots."""

    __slots__ = (
        "amended", "avg_px", "cancel_reason", "cl_ord_id", "clids", "created", "cum_qty", "inst",
        "leaves_qty", "notional", "ord_type", "order_id", "orig_cl_ord_id", "origin", "owner",
        "price", "qty", "side", "status", "symbol", "tif", "updated",
    )

    def __init__(
        self, order_id: str, owner: str, cl_ord_id: str, inst: Instrument, side: Side,
        ord_type: OrdType, tif: TimeInForce, price: Decimal | None, qty: Decimal, now: int,
        origin: str | None = None,
    ) -> None:
        self.order_id = order_id
        self.owner = owner
        # The FIX session that placed it (see the module docstring's cancel scope), or None:
        # placed over REST or WS, or by the synthetic flow. Kept across replaces and amends.
        self.origin = origin
        self.cl_ord_id = cl_ord_id
        self.orig_cl_ord_id: str | None = None
        self.clids = [cl_ord_id]
        self.inst = inst
        self.symbol = inst.symbol
        self.side = side
        self.ord_type = ord_type
        self.tif = tif
        self.price = price
        self.qty = qty
        self.cum_qty = qty * 0  # keeps the instrument's exponent: 0E-8, not 0
        self.leaves_qty = qty
        self.notional = _ZERO
        self.avg_px = _ZERO
        self.status = _NEW
        self.created = now
        self.updated = now
        self.amended = now
        self.cancel_reason: CancelReason | None = None

    def snapshot(self) -> OrderSnapshot:
        return OrderSnapshot(
            self.order_id, self.owner, self.cl_ord_id, self.orig_cl_ord_id, self.symbol,
            self.side, self.ord_type, self.tif, self.price, self.qty, self.cum_qty,
            self.leaves_qty, self.avg_px, self.status, self.created, self.updated,
            self.cancel_reason, self.amended,
        )


class _Level:
    __slots__ = ("orders", "qty")

    def __init__(self, qty: Decimal) -> None:
        self.orders: deque[_Order] = deque()
        self.qty = qty


class _BookSide:
    """One side of a book: ascending price list (best bid last, best ask first) + levels."""

    __slots__ = ("is_bid", "levels", "prices", "side")

    def __init__(self, side: Side) -> None:
        self.side = side
        self.is_bid = side is _BUY
        self.prices: list[Decimal] = []
        self.levels: dict[Decimal, _Level] = {}

    def best(self) -> Decimal | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.is_bid else self.prices[0]

    def iter_prices(self) -> Iterator[Decimal]:
        return reversed(self.prices) if self.is_bid else iter(self.prices)

    def drop_level(self, price: Decimal) -> None:
        del self.levels[price]
        prices = self.prices
        del prices[bisect_left(prices, price)]

    def depth(self, depth: int | None) -> list[tuple[Decimal, Decimal]]:
        out: list[tuple[Decimal, Decimal]] = []
        levels = self.levels
        for px in self.iter_prices():
            if depth is not None and len(out) >= depth:
                break
            out.append((px, levels[px].qty))
        return out


class _Book:
    __slots__ = ("asks", "bids", "inst", "last_trade_id", "price_q", "qty_q", "trades")

    def __init__(self, inst: Instrument, trade_history: int, first_trade_id: int) -> None:
        self.inst = inst
        self.last_trade_id = first_trade_id - 1
        self.price_q = inst.price_quantum
        self.qty_q = inst.qty_quantum
        self.bids = _BookSide(_BUY)
        self.asks = _BookSide(Side.SELL)
        self.trades: deque[TradePrinted] = deque(maxlen=trade_history)

    def side(self, side: Side) -> _BookSide:
        return self.bids if side is _BUY else self.asks

    def opposite(self, side: Side) -> _BookSide:
        return self.asks if side is _BUY else self.bids


def _mismatch(o: _Order, side: str | None, symbol: str | None, ord_type: str | None = None,
              tif: str | None = None) -> str | None:
    """What a cancel or replace request says about the order that is not so (None: all it
    says matches). Values are enums or their FIX wire values (a StrEnum equals its value)."""
    for name, asked, has in (("side", side, o.side), ("symbol", symbol, o.symbol),
                             ("ord_type", ord_type, o.ord_type), ("tif", tif, o.tif)):
        if asked is not None and asked != has:
            return f"{name} {asked} is not the order's {has}"
    return None


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(
    method: Callable[Concatenate[MatchingEngine, _P], _R],
) -> Callable[Concatenate[MatchingEngine, _P], _R]:
    """Serialise a public call and refuse re-entry from a listener (which would deadlock)."""

    @functools.wraps(method)
    def wrapper(self: MatchingEngine, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        me = threading.get_ident()
        if self._holder == me:
            raise RuntimeError("MatchingEngine called re-entrantly (from a listener?)")
        with self._lock:
            self._holder = me
            try:
                return method(self, *args, **kwargs)
            finally:
                self._holder = None

    return wrapper


# --------------------------------------------------------------------------------------------
# The engine.
# --------------------------------------------------------------------------------------------


class MatchingEngine:
    """All books of the simulated venue; see the module docstring for the contract.

    Every mutating call returns the list of events it caused, in order, including events for
    other owners (a fill against someone's resting order). The same events, as a tuple, go to
    every listener registered with :meth:`add_listener`.

    Matching is deterministic given the calls (no randomness in the book), so replaying a seed
    of the synthetic flow replays the books. ``seed`` is accepted so one seed can be passed to
    the whole simulator, but it does not pick identifiers: those are fresh per instance (see
    the module docstring).
    """

    def __init__(
        self,
        instruments: Mapping[str, Instrument] | None = None,
        *,
        time_source: Callable[[], int] | None = None,
        seed: int = 0,
        closed_order_retention: int = 100_000,
        trade_history: int = 1_000,
        untracked_owner_prefix: str | None = "SIM-",
    ) -> None:
        self._instruments: Mapping[str, Instrument] = dict(instruments or INSTRUMENTS)
        first_trade_id = _first_trade_id()
        self._books: dict[str, _Book] = {
            sym: _Book(inst, trade_history, first_trade_id)
            for sym, inst in self._instruments.items()
        }
        # Epoch ns by default because FIX TransactTime is wall-clock; _now() clamps it so event
        # times never step backwards even if NTP does.
        self._clock = time_source if time_source is not None else time.time_ns
        self._last_time = 0
        self._lock = threading.Lock()
        self._holder: int | None = None
        self._seq = 0
        del seed  # not for ids on purpose: they must differ from the previous run's
        id_key = _random_id_key()
        self._order_ids = _IdGen("O", id_key)
        self._exec_ids = _IdGen("E", id_key)
        self._trade_ids = _IdGen("T", id_key)
        self._orders: dict[str, _Order] = {}  # order_id -> order (open + retained closed)
        self._open_by_clid: dict[tuple[str, str], _Order] = {}  # (owner, current clid)
        self._clid_alias: dict[tuple[str, str], str] = {}  # (owner, any clid) -> latest order_id
        self._open_by_owner: dict[str, dict[str, _Order]] = {}
        self._closed: deque[str] = deque()
        self._retention = closed_order_retention
        self._untracked_prefix = untracked_owner_prefix
        self._listeners: list[EngineListener] = []
        #: Submissions (submit + replace) per (owner, cl_ord_id), accepted or not, so tests can
        #: prove the gateway never sent the same order twice. Owners starting with
        #: ``untracked_owner_prefix`` (synthetic flow) are not counted: they would grow it
        #: without bound and nobody asserts on them.
        self.submission_counts: Counter[tuple[str, str]] = Counter()

    # ---- helpers ------------------------------------------------------------------------------

    def _now(self) -> int:
        t = self._clock()
        if t < self._last_time:  # injected clocks need not be strictly monotonic
            t = self._last_time
        self._last_time = t
        return t

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _publish(self, events: list[Event]) -> list[Event]:
        if events and self._listeners:
            frozen = tuple(events)
            for listener in self._listeners:
                try:
                    listener(frozen)
                except Exception:  # a broken face must not corrupt the venue for the others
                    _log.exception("venue_sim listener %r failed", listener)
        return events

    def _count(self, owner: str, cl_ord_id: str) -> None:
        prefix = self._untracked_prefix
        if prefix is None or not owner.startswith(prefix):
            self.submission_counts[(owner, cl_ord_id)] += 1

    def _lookup(self, owner: str, cl_ord_id: str | None, order_id: str | None,
                session: str | None = None) -> _Order | None:
        """Find an owner's order; another owner's order is reported as unknown on purpose.
        With `session` (a FIX single cancel or cancel/replace: Kraken's cancel scope), only
        an order that session placed: any other is unknown to it, as at the venue."""
        if order_id is not None:
            o = self._orders.get(order_id)
            if o is None or o.owner != owner:
                return None
        elif cl_ord_id is None:
            return None
        else:
            o = self._open_by_clid.get((owner, cl_ord_id))
            if o is None:
                oid = self._clid_alias.get((owner, cl_ord_id))
                o = self._orders.get(oid) if oid is not None else None
        if o is not None and session is not None and o.origin != session:
            return None
        return o

    def _clid_in_use(self, owner: str, cl_ord_id: str) -> _Order | None:
        """The open order that has or had ``cl_ord_id`` (current, or before a replace), if
        any: that ClOrdID names a live order, so a new order or a replace may not take it."""
        o = self._open_by_clid.get((owner, cl_ord_id))
        if o is None:
            oid = self._clid_alias.get((owner, cl_ord_id))
            o = self._orders.get(oid) if oid is not None else None
            if o is not None and o.status not in (_NEW, _PARTIAL):
                o = None
        return o

    def _rekey(self, o: _Order, cl_ord_id: str) -> None:
        """Make ``cl_ord_id`` the open order's latest ClOrdID, the previous one its
        OrigClOrdID: FIX 4.4 chains them, and a client then knows the order by the latest (a
        status request, a cancel or a replace naming only it must find the order). Every
        ClOrdID of the chain stays an alias, so an older one still finds it too."""
        owner = o.owner
        del self._open_by_clid[(owner, o.cl_ord_id)]
        self._open_by_clid[(owner, cl_ord_id)] = o
        self._clid_alias[(owner, cl_ord_id)] = o.order_id
        if cl_ord_id not in o.clids:
            o.clids.append(cl_ord_id)
        o.orig_cl_ord_id = o.cl_ord_id
        o.cl_ord_id = cl_ord_id

    def _close(self, o: _Order) -> None:
        """Move an order out of the open indexes; keep it for status queries for a while."""
        del self._open_by_clid[(o.owner, o.cl_ord_id)]
        owned = self._open_by_owner[o.owner]
        del owned[o.order_id]
        if not owned:
            del self._open_by_owner[o.owner]
        closed = self._closed
        closed.append(o.order_id)
        if len(closed) > self._retention:
            old = self._orders.pop(closed.popleft())
            alias = self._clid_alias
            for clid in old.clids:
                key = (old.owner, clid)
                if alias.get(key) == old.order_id:
                    del alias[key]

    def _price_error(self, inst: Instrument, price: Decimal) -> str | None:
        if not price.is_finite() or price <= 0 or price.adjusted() > _MAX_ADJUSTED_EXPONENT:
            return f"{TEXT_INVALID_PRICE}:price must be positive"
        if _CTX.remainder(price, inst.price_tick) != 0:
            return (f"{TEXT_INVALID_PRICE}:{inst.symbol} price must be a multiple of "
                    f"{inst.price_tick:f}")
        return None

    def _qty_error(self, inst: Instrument, qty: Decimal) -> str | None:
        if not qty.is_finite() or qty <= 0 or qty.adjusted() > _MAX_ADJUSTED_EXPONENT:
            return TEXT_INVALID_VOLUME
        if _CTX.remainder(qty, inst.lot_size) != 0:
            return (f"{TEXT_INVALID_VOLUME}:{inst.symbol} qty must be a multiple of "
                    f"{inst.lot_size:f}")  # not 1E-8
        return None

    def _rest(self, book: _Book, o: _Order, events: list[Event], now: int) -> None:
        """Append at the back of its price level (time priority = arrival at the level)."""
        bs = book.side(o.side)
        px = o.price
        assert px is not None
        lvl = bs.levels.get(px)
        if lvl is None:
            lvl = _Level(o.leaves_qty)
            bs.levels[px] = lvl
            insort(bs.prices, px)
        else:
            lvl.qty = _CTX.add(lvl.qty, o.leaves_qty)
        lvl.orders.append(o)
        events.append(BookChanged(o.symbol, o.side, px, lvl.qty, self._next_seq(), now))

    def _unlink(self, book: _Book, o: _Order) -> Decimal:
        """Take a resting order out of its level; returns the level's remaining size."""
        bs = book.side(o.side)
        px = o.price
        assert px is not None
        lvl = bs.levels[px]
        lvl.orders.remove(o)
        lvl.qty = _CTX.subtract(lvl.qty, o.leaves_qty)
        if not lvl.orders:
            bs.drop_level(px)
        return lvl.qty

    def _fill(self, o: _Order, qty: Decimal, px: Decimal, now: int) -> None:
        o.cum_qty = cum = _CTX.add(o.cum_qty, qty)
        o.leaves_qty = leaves = _CTX.subtract(o.leaves_qty, qty)
        o.notional = notional = _CTX.add(o.notional, _CTX.multiply(px, qty))
        avg = _CTX.divide(notional, cum)
        places = o.inst.price_decimals + _AVG_PX_EXTRA_DECIMALS
        exponent = avg.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -places:
            avg = avg.quantize(Decimal(1).scaleb(-places), context=_CTX)
        o.avg_px = avg
        o.status = _FILLED if not leaves else _PARTIAL
        o.updated = now

    def _fok_fillable(self, book: _Book, o: _Order) -> bool:
        """Whether the whole FOK qty is available before the price limit or a self-trade."""
        opp = book.opposite(o.side)
        need = o.leaves_qty
        limit = o.price
        is_buy = o.side is _BUY
        for px in opp.iter_prices():
            if limit is not None and (px > limit if is_buy else px < limit):
                return False
            for m in opp.levels[px].orders:
                if m.owner == o.owner:
                    return False
                need = _CTX.subtract(need, m.leaves_qty)
                if need <= 0:
                    return True
        return False

    def _match(self, book: _Book, taker: _Order, events: list[Event], now: int) -> bool:
        """Cross ``taker`` against the opposite side; True if stopped by self-trade prevention."""
        opp = book.opposite(taker.side)
        prices = opp.prices
        levels = opp.levels
        is_buy = taker.side is _BUY
        limit = taker.price
        symbol = taker.symbol
        while taker.leaves_qty and prices:
            px = prices[0] if is_buy else prices[-1]
            if limit is not None and (px > limit if is_buy else px < limit):
                break
            lvl = levels[px]
            orders = lvl.orders
            touched = False
            stp = False
            while orders and taker.leaves_qty:
                maker = orders[0]
                if maker.owner == taker.owner:
                    stp = True
                    break
                q = min(maker.leaves_qty, taker.leaves_qty)
                self._fill(maker, q, px, now)
                self._fill(taker, q, px, now)
                lvl.qty = _CTX.subtract(lvl.qty, q)
                touched = True
                book.last_trade_id = trade_id = book.last_trade_id + 1
                trade_txid = self._trade_ids.next()
                events.append(Filled(maker.snapshot(), q, px, self._exec_ids.next(), True,
                                     trade_id, trade_txid, self._next_seq(), now))
                events.append(Filled(taker.snapshot(), q, px, self._exec_ids.next(), False,
                                     trade_id, trade_txid, self._next_seq(), now))
                tp = TradePrinted(symbol, px, q, taker.side, trade_id, trade_txid,
                                  self._next_seq(), now)
                events.append(tp)
                book.trades.append(tp)
                if not maker.leaves_qty:
                    orders.popleft()
                    self._close(maker)
            if touched:
                events.append(BookChanged(symbol, opp.side, px, lvl.qty, self._next_seq(), now))
            if not orders:
                del levels[px]
                if is_buy:
                    del prices[0]
                else:
                    prices.pop()
            if stp:
                return True
        return False

    def _cancel_order(self, o: _Order, reason: CancelReason, request_cl_ord_id: str | None,
                      events: list[Event], now: int) -> None:
        o.status = _CANCELED
        o.leaves_qty = o.qty * 0
        o.updated = now
        o.cancel_reason = reason
        events.append(Canceled(o.snapshot(), reason, _CANCEL_TEXT[reason], self._exec_ids.next(),
                               request_cl_ord_id, self._next_seq(), now))
        self._close(o)

    def _cancel_resting(self, book: _Book, o: _Order, reason: CancelReason,
                        request_cl_ord_id: str | None, events: list[Event], now: int) -> None:
        level_qty = self._unlink(book, o)
        px = o.price
        assert px is not None
        self._cancel_order(o, reason, request_cl_ord_id, events, now)
        events.append(BookChanged(o.symbol, o.side, px, level_qty, self._next_seq(), now))

    def _execute(self, book: _Book, o: _Order, events: list[Event], now: int) -> None:
        """Run an incoming (or re-priced) order: match, then rest or cancel the remainder."""
        if o.tif is _FOK and not self._fok_fillable(book, o):
            self._cancel_order(o, CancelReason.FOK_UNFILLED, None, events, now)
            return
        opp_best = book.opposite(o.side).best()
        stp = False
        if opp_best is not None and (
            o.price is None or (opp_best <= o.price if o.side is _BUY else opp_best >= o.price)
        ):
            stp = self._match(book, o, events, now)
        if not o.leaves_qty:
            self._close(o)
            return
        if stp:
            self._cancel_order(o, CancelReason.SELF_TRADE, None, events, now)
        elif o.ord_type is _LIMIT and o.tif is _GTC:
            self._rest(book, o, events, now)
        else:
            self._cancel_order(o, CancelReason.IOC_REMAINDER, None, events, now)

    def _validate_new(self, book: _Book, qty: Decimal, price: Decimal | None,
                      ord_type: OrdType) -> tuple[RejectCode, str] | None:
        inst = book.inst
        if ord_type is _LIMIT:
            if price is None:
                return RejectCode.OTHER, TEXT_PRICE_REQUIRED
            err = self._price_error(inst, price)
            if err is not None:
                return RejectCode.OTHER, err
        elif price is not None:
            return RejectCode.UNSUPPORTED_ORDER_CHARACTERISTIC, TEXT_PRICE_ON_MARKET
        err = self._qty_error(inst, qty)
        if err is not None:
            return RejectCode.INCORRECT_QUANTITY, err
        if qty < inst.min_qty:
            return RejectCode.INCORRECT_QUANTITY, TEXT_ORDER_MINIMUM
        return None

    # ---- order entry ----------------------------------------------------------------------------

    @_locked
    def submit(
        self,
        owner: str,
        cl_ord_id: str,
        symbol: str,
        side: Side,
        qty: Decimal,
        price: Decimal | None = None,
        ord_type: OrdType = OrdType.LIMIT,
        tif: TimeInForce = TimeInForce.GTC,
        *,
        deadline: Deadline | None = None,
        post_only: bool = False,
        origin: str | None = None,
    ) -> list[Event]:
        """New order (FIX NewOrderSingle). Returns ``[Rejected]`` or ``[Accepted, ...]``.

        ``post_only`` (a limit order that must only add liquidity): if its price would cross
        the opposite side's best at this moment, :class:`PostOnlyRefused` is raised and the
        request leaves no trace (no event, not counted). Checked after the validations (an
        invalid order is Rejected as such, wherever the book is); a post-only order that is
        not a limit order is Rejected (OrdRejReason 11).

        ``origin``: the FIX session placing it (the FIX face's name for it), None over REST/WS;
        only that session's single cancels and cancel/replaces find the order (see the module
        docstring's cancel scope).

        ``deadline`` (Kraken's, from REST/WS) is checked once the call holds the lock: past
        it, :class:`~gateway.venue_sim.deadline.DeadlineRefused` is raised and the request
        leaves no trace (no event, not counted), however long it waited for the lock.

        Raises TypeError for a non-Decimal qty/price: that is a face bug, not a client error,
        and floats must never reach the book. Plain FIX strings ("1", "2", ...) are accepted for
        the enums and converted (ValueError if not a valid value), since the engine compares
        enums by identity.
        """
        if type(qty) is not Decimal or (price is not None and type(price) is not Decimal):
            raise TypeError("qty and price must be decimal.Decimal")
        if type(side) is not Side:
            side = Side(side)
        if type(ord_type) is not OrdType:
            ord_type = OrdType(ord_type)
        if type(tif) is not TimeInForce:
            tif = TimeInForce(tif)
        if deadline is not None:
            deadline.check()
        book = self._books.get(symbol)
        # Invalid input first, wherever the book is: an off-tick price is refused as such,
        # not as a post-only order that would cross (which a client "fixes" by moving it).
        if book is None:
            failure: tuple[RejectCode, str] | None = (RejectCode.UNKNOWN_SYMBOL, TEXT_UNKNOWN_PAIR)
        elif self._clid_in_use(owner, cl_ord_id) is not None:
            failure = (RejectCode.DUPLICATE_ORDER, TEXT_DUPLICATE)
        else:
            failure = self._validate_new(book, qty, price, ord_type)
            if failure is None and post_only:
                if ord_type is not _LIMIT:
                    failure = (RejectCode.UNSUPPORTED_ORDER_CHARACTERISTIC, TEXT_POST_ONLY_LIMIT)
                else:
                    assert price is not None  # a limit order passed validation
                    best = book.opposite(side).best()
                    if best is not None and (price >= best if side is _BUY else price <= best):
                        raise PostOnlyRefused()
        now = self._now()
        self._count(owner, cl_ord_id)
        events: list[Event] = []
        if failure is not None:
            events.append(Rejected(owner, cl_ord_id, failure[0], failure[1], symbol, side,
                                   ord_type, tif, qty, price, self._exec_ids.next(),
                                   self._next_seq(), now))
            return self._publish(events)
        assert book is not None
        inst = book.inst
        if price is not None:
            price = price.quantize(book.price_q, context=_CTX)
        o = _Order(self._order_ids.next(), owner, cl_ord_id, inst, side, ord_type, tif, price,
                   qty.quantize(book.qty_q, context=_CTX), now, origin)
        self._orders[o.order_id] = o
        self._open_by_clid[(owner, cl_ord_id)] = o
        self._clid_alias[(owner, cl_ord_id)] = o.order_id
        owned = self._open_by_owner.get(owner)
        if owned is None:
            owned = self._open_by_owner[owner] = {}
        owned[o.order_id] = o
        events.append(Accepted(o.snapshot(), self._exec_ids.next(), self._next_seq(), now))
        self._execute(book, o, events, now)
        return self._publish(events)

    @_locked
    def cancel(
        self,
        owner: str,
        cl_ord_id: str,
        orig_cl_ord_id: str | None = None,
        order_id: str | None = None,
        *,
        session: str | None = None,
        require_new_cl_ord_id: bool = False,
        side: str | None = None,
        symbol: str | None = None,
    ) -> list[Event]:
        """Cancel one order (FIX OrderCancelRequest); ``order_id`` wins over ``orig_cl_ord_id``.

        ``session``: the FIX session asking, which finds only the orders it placed (Kraken's
        cancel scope); None (REST, WS) finds any of the owner's.
        ``require_new_cl_ord_id`` (FIX 35=F): ``cl_ord_id`` may not be one an open order has or
        had (the Canceled report carries it as ClOrdID, so a client would book it against that
        order): refused as a duplicate (CxlRejReason 6); accepted, it joins the order's ClOrdID
        chain as its latest (FIX 4.4), so a later status request or cancel naming only it finds
        the canceled order. ``side``, ``symbol`` (None: not given) must be the order's, else
        refused (CxlRejReason 99).
        Returns ``[Canceled, BookChanged]`` or ``[CancelRejected]``.
        """
        now = self._now()
        events: list[Event] = []
        o = self._lookup(owner, orig_cl_ord_id, order_id, session)
        if o is None or o.status not in (_NEW, _PARTIAL):
            events.append(self._cancel_reject(owner, cl_ord_id, orig_cl_ord_id, o,
                                              CxlRejResponseTo.CANCEL, now))
            return self._publish(events)
        refusal: tuple[CxlRejCode, str] | None = None
        if require_new_cl_ord_id and self._clid_in_use(owner, cl_ord_id) is not None:
            refusal = (CxlRejCode.DUPLICATE_CL_ORD_ID, TEXT_DUPLICATE)
        elif (mismatch := _mismatch(o, side, symbol)) is not None:
            refusal = (CxlRejCode.OTHER, f"{TEXT_INVALID_ARGUMENTS}:{mismatch}")
        if refusal is not None:
            events.append(self._cancel_reject(owner, cl_ord_id, orig_cl_ord_id, o,
                                              CxlRejResponseTo.CANCEL, now, *refusal))
            return self._publish(events)
        if require_new_cl_ord_id:
            self._rekey(o, cl_ord_id)
        self._cancel_resting(self._books[o.symbol], o, CancelReason.USER, cl_ord_id, events, now)
        return self._publish(events)

    def _cancel_reject(
        self, owner: str, cl_ord_id: str, orig_cl_ord_id: str | None, o: _Order | None,
        response_to: CxlRejResponseTo, now: int, code: CxlRejCode | None = None,
        text: str = "",
    ) -> CancelRejected:
        if code is None:
            if o is None:
                code, text = CxlRejCode.UNKNOWN_ORDER, TEXT_UNKNOWN_ORDER
            else:
                code, text = CxlRejCode.TOO_LATE_TO_CANCEL, TEXT_ORDER_CLOSED
        return CancelRejected(
            owner, cl_ord_id, orig_cl_ord_id, text, code, response_to,
            None if o is None else o.order_id, OrdStatus.REJECTED if o is None else o.status,
            self._next_seq(), now,
        )

    @_locked
    def replace(
        self,
        owner: str,
        cl_ord_id: str,
        orig_cl_ord_id: str | None,
        new_qty: Decimal | None = None,
        new_price: Decimal | None = None,
        *,
        order_id: str | None = None,
        deadline: Deadline | None = None,
        cancel_below_filled: bool = False,
        session: str | None = None,
        require_new_cl_ord_id: bool = False,
        side: str | None = None,
        symbol: str | None = None,
        ord_type: str | None = None,
        tif: str | None = None,
    ) -> list[Event]:
        """Cancel/replace (FIX OrderCancelReplaceRequest); None keeps the current value.

        ``new_qty`` is the new total order qty (FIX OrderQty), cum included. A qty decrease at
        the same price keeps time priority; a price change or qty increase re-queues the order
        at the back (and it may cross, like a new order). A new qty <= cum_qty closes the order
        as FILLED with ``qty = cum_qty``. Returns ``[Replaced, ...]`` or ``[CancelRejected]``.
        ``deadline`` as for :meth:`submit`.

        ``cancel_below_filled`` is Kraken's in-place amend (REST ``AmendOrder``, WS
        ``amend_order``): a new qty *below* cum_qty cancels the remainder instead, as Kraken
        documents it: ``[Canceled, BookChanged]``, the order's qty and cum_qty unchanged,
        leaves 0, status CANCELED. FIX 35=G keeps the FILLED close.

        ``session`` as for :meth:`cancel`: a FIX cancel/replace finds only its session's orders.

        ``require_new_cl_ord_id`` (FIX 35=G): ``cl_ord_id`` must be one the order never had
        (neither its current ClOrdID nor one from before an earlier replace), else the request
        is refused as a duplicate (CxlRejReason 6). REST/WS amends keep their cl_ord_id.

        ``side``, ``symbol``, ``ord_type``, ``tif`` (enums or their FIX wire values; None: not
        given) are what the request says the order is: any that differs from the order is
        refused (CxlRejReason 99), since only the quantity and the price can change. Applied as
        a qty/price change regardless, a client was told its buy had been replaced by a sell.
        """
        if (new_qty is not None and type(new_qty) is not Decimal) or (
            new_price is not None and type(new_price) is not Decimal
        ):
            raise TypeError("new_qty and new_price must be decimal.Decimal")
        if deadline is not None:
            deadline.check()
        now = self._now()
        self._count(owner, cl_ord_id)
        events: list[Event] = []
        o = self._lookup(owner, orig_cl_ord_id, order_id, session)

        def refuse(code: CxlRejCode | None = None, text: str = "") -> list[Event]:
            events.append(self._cancel_reject(owner, cl_ord_id, orig_cl_ord_id, o,
                                              CxlRejResponseTo.REPLACE, now, code, text))
            return self._publish(events)

        if o is None or o.status not in (_NEW, _PARTIAL):
            return refuse()
        other = self._clid_in_use(owner, cl_ord_id)
        if (other is not None and other is not o) or (
                require_new_cl_ord_id and cl_ord_id in o.clids):
            return refuse(CxlRejCode.DUPLICATE_CL_ORD_ID, TEXT_DUPLICATE)
        mismatch = _mismatch(o, side, symbol, ord_type, tif)
        if mismatch is not None:
            return refuse(CxlRejCode.OTHER, f"{TEXT_AMEND_ONLY_QTY_PRICE}:{mismatch}")
        inst = o.inst
        book = self._books[o.symbol]
        price = price_before = o.price
        assert price_before is not None  # only resting GTC limit orders are ever open
        if new_price is not None:
            err = self._price_error(inst, new_price)
            if err is not None:
                return refuse(CxlRejCode.OTHER, err)
            price = new_price.quantize(book.price_q, context=_CTX)
        qty = o.qty
        if new_qty is not None:
            err = self._qty_error(inst, new_qty)
            if err is not None:
                return refuse(CxlRejCode.OTHER, err)
            qty = new_qty.quantize(book.qty_q, context=_CTX)
        closes = qty <= o.cum_qty
        if not closes and qty < inst.min_qty:
            return refuse(CxlRejCode.OTHER, TEXT_ORDER_MINIMUM)
        if cancel_below_filled and qty < o.cum_qty:
            self._cancel_resting(book, o, CancelReason.AMEND_BELOW_FILLED, None, events, now)
            return self._publish(events)

        keeps_priority = price == price_before and qty <= o.qty and not closes
        level_qty = None if keeps_priority else self._unlink(book, o)
        orig = o.cl_ord_id
        self._rekey(o, cl_ord_id)
        o.updated = o.amended = now
        if closes:
            o.qty = o.cum_qty
            o.leaves_qty = o.qty * 0
            o.status = _FILLED
            events.append(Replaced(o.snapshot(), orig, self._exec_ids.next(), self._next_seq(),
                                   now))
            assert level_qty is not None
            events.append(BookChanged(o.symbol, o.side, price_before, level_qty,
                                      self._next_seq(), now))
            self._close(o)
            return self._publish(events)
        new_leaves = _CTX.subtract(qty, o.cum_qty)
        if keeps_priority:
            delta = _CTX.subtract(o.leaves_qty, new_leaves)
            o.qty = qty
            o.leaves_qty = new_leaves
            events.append(Replaced(o.snapshot(), orig, self._exec_ids.next(), self._next_seq(),
                                   now))
            if delta:
                lvl = book.side(o.side).levels[price_before]
                lvl.qty = _CTX.subtract(lvl.qty, delta)
                events.append(BookChanged(o.symbol, o.side, price_before, lvl.qty,
                                          self._next_seq(), now))
            return self._publish(events)
        o.price = price
        o.qty = qty
        o.leaves_qty = new_leaves
        events.append(Replaced(o.snapshot(), orig, self._exec_ids.next(), self._next_seq(), now))
        assert level_qty is not None
        events.append(BookChanged(o.symbol, o.side, price_before, level_qty, self._next_seq(),
                                  now))
        self._execute(book, o, events, now)
        return self._publish(events)

    @_locked
    def mass_cancel(
        self,
        owner: str,
        symbol: str | None = None,
        side: Side | None = None,
        cl_ord_id: str | None = None,
    ) -> list[Event]:
        """Cancel all of an owner's open orders, optionally one symbol and/or side (FIX
        OrderMassCancelRequest, Kraken CancelAll). ``cl_ord_id`` is echoed as the Canceled
        events' ``request_cl_ord_id``. Returns ``[]`` when nothing was open."""
        if side is not None and type(side) is not Side:
            side = Side(side)
        now = self._now()
        events: list[Event] = []
        owned = self._open_by_owner.get(owner)
        if owned:
            for o in list(owned.values()):
                if (symbol is None or o.symbol == symbol) and (side is None or o.side is side):
                    self._cancel_resting(self._books[o.symbol], o, CancelReason.MASS_CANCEL,
                                         cl_ord_id, events, now)
        return self._publish(events)

    @_locked
    def cancel_orders(
        self, owner: str, order_ids: Iterable[str],
        reason: CancelReason = CancelReason.DISCONNECT,
    ) -> list[Event]:
        """Cancel those of ``order_ids`` that are the owner's and still open, silently skipping
        the rest (Kraken's cancel-on-disconnect: the session's orders, whatever became of
        them meanwhile, with no reject for one that has closed). Returns the Canceled and
        BookChanged events."""
        now = self._now()
        events: list[Event] = []
        owned = self._open_by_owner.get(owner)
        if owned:
            wanted = set(order_ids)
            # In acceptance order, so the reports come in the order the orders were placed.
            for o in [o for oid, o in owned.items() if oid in wanted]:
                self._cancel_resting(self._books[o.symbol], o, reason, None, events, now)
        return self._publish(events)

    # ---- queries --------------------------------------------------------------------------------

    @_locked
    def order_status(
        self, owner: str, cl_ord_id: str | None = None, order_id: str | None = None, *,
        then: Callable[[OrderSnapshot | None], object] | None = None,
    ) -> OrderSnapshot | None:
        """Latest state of an owner's order (open, or closed within the retention window).

        A ClOrdID resolves to the open order currently using it, else the latest order that
        ever used it (including pre-replace ClOrdIDs). Other owners' orders are invisible.

        ``then`` gets the answer under the lock, as a listener gets events (so keep it to an
        enqueue, and do not call the engine from it): a face that queues the answer there
        queues it in engine order with the reports, so no report of a later change can
        overtake it (a client would see a fill, then a stale status saying New).
        """
        o = self._lookup(owner, cl_ord_id, order_id)
        snap = o.snapshot() if o is not None else None
        if then is not None:
            then(snap)
        return snap

    @_locked
    def closed_orders(self, owner: str) -> list[OrderSnapshot]:
        """An owner's retained closed orders, newest first: Kraken's ClosedOrders lists the
        account's orders whichever API placed them."""
        orders = self._orders
        return [o.snapshot() for oid in reversed(self._closed)
                if (o := orders.get(oid)) is not None and o.owner == owner]

    @_locked
    def open_orders(self, owner: str, symbol: str | None = None) -> list[OrderSnapshot]:
        """An owner's open orders in acceptance order."""
        owned = self._open_by_owner.get(owner)
        if not owned:
            return []
        return [o.snapshot() for o in owned.values() if symbol is None or o.symbol == symbol]

    @_locked
    def levels(
        self, symbol: str, depth: int | None = None,
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """(bids high->low, asks low->high) as (price, aggregated qty); KeyError if unknown."""
        book = self._books[symbol]
        return book.bids.depth(depth), book.asks.depth(depth)

    @_locked
    def depth_snapshot(self, symbol: str, depth: int | None = None) -> DepthSnapshot:
        """Levels plus the ``seq`` they are consistent with, for snapshot+incremental feeds."""
        book = self._books[symbol]
        return DepthSnapshot(symbol, book.bids.depth(depth), book.asks.depth(depth), self._seq,
                             self._last_time)

    @_locked
    def top_of_book(self, symbol: str) -> tuple[Decimal | None, Decimal | None]:
        """(best bid, best ask); None for an empty side."""
        book = self._books[symbol]
        return book.bids.best(), book.asks.best()

    @_locked
    def last_trades(self, symbol: str, n: int) -> list[TradePrinted]:
        """Up to ``n`` most recent trades, oldest first (bounded by ``trade_history``)."""
        trades = self._books[symbol].trades
        if n <= 0:
            return []
        return list(trades)[-n:]

    @_locked
    def submission_count(self, owner: str, cl_ord_id: str) -> int:
        """Locked read of :attr:`submission_counts` for use while other threads submit."""
        return self.submission_counts[(owner, cl_ord_id)]

    @_locked
    def submission_counts_copy(self) -> dict[tuple[str, str], int]:
        """All of :attr:`submission_counts`, copied under the lock (a submit meanwhile would
        change the dict's size under an iteration)."""
        return dict(self.submission_counts)

    @property
    def closed_order_retention(self) -> int:
        """How many closed orders stay known to status queries (faces keep as many)."""
        return self._retention

    @property
    def instruments(self) -> Mapping[str, Instrument]:
        return self._instruments

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._books)

    @property
    def last_seq(self) -> int:
        """Seq of the newest event (0 before any); a plain int read, so no lock needed."""
        return self._seq

    # ---- listeners ------------------------------------------------------------------------------

    @_locked
    def add_listener(self, listener: EngineListener) -> None:
        """Receive every call's events, in engine order, on the calling thread, under the lock.

        Keep it to an enqueue: the listener runs inside every caller's critical section, and
        calling the engine from it raises RuntimeError.
        """
        self._listeners = [*self._listeners, listener]

    @_locked
    def remove_listener(self, listener: EngineListener) -> None:
        self._listeners = [fn for fn in self._listeners if fn != listener]  # bound methods: ==

    # ---- invariants (tests, soak checks) --------------------------------------------------------

    @_locked
    def check_invariants(self) -> None:
        """Raise AssertionError if the books are inconsistent; cheap enough for soak tests."""
        for sym, book in self._books.items():
            for bs in (book.bids, book.asks):
                if bs.prices != sorted(bs.levels):
                    raise AssertionError(f"{sym}: price index out of sync")
                for px, lvl in bs.levels.items():
                    if not lvl.orders:
                        raise AssertionError(f"{sym}: empty level {px}")
                    total = _ZERO
                    for o in lvl.orders:
                        if o.leaves_qty <= 0 or o.cum_qty < 0 or o.price != px:
                            raise AssertionError(f"{sym}: bad resting order {o.order_id}")
                        if o.cum_qty + o.leaves_qty != o.qty:
                            raise AssertionError(f"{sym}: qty mismatch on {o.order_id}")
                        if self._open_by_clid.get((o.owner, o.cl_ord_id)) is not o:
                            raise AssertionError(f"{sym}: index mismatch on {o.order_id}")
                        total += o.leaves_qty
                    if total != lvl.qty:
                        raise AssertionError(f"{sym}: level {px} qty {lvl.qty} != {total}")
            bid, ask = book.bids.best(), book.asks.best()
            # Never crossed or locked at rest, not even by one owner: self-trade prevention
            # cancels the incoming order, so nothing that could trade is ever left resting.
            if bid is not None and ask is not None and bid >= ask:
                raise AssertionError(f"{sym}: crossed book {bid} >= {ask}")
