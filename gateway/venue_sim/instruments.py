"""The venue simulator's instrument table.

The numbers mirror what Kraken's v2 ``instrument`` channel publishes (``price_increment``,
``price_precision``, ``qty_increment``, ``qty_precision``, ``qty_min``) so that anything the
gateway learns to respect here (tick, lot, minimum) is what the real venue will enforce. Where
the live values drift over time (Kraken revises ``qty_min`` now and then) we pick a stable,
plausible value and say so; the simulator must be deterministic, not a mirror of today's venue.

Choices (spot, symbols in Kraken v2 ``BASE/QUOTE`` form):

* ``BTC/USD``: tick 0.1 (1 dp), lot 1e-8 (8 dp), min 0.0001 BTC, start ~45 000.
* ``ETH/USD``: tick 0.01 (2 dp), lot 1e-8 (8 dp), min 0.002 ETH, start ~2 500.
* ``ARB/USD``: tick 0.0001 (4 dp), lot 1e-8 (8 dp), min 5 ARB, start ~0.111.

Perpetuals (Kraken Futures naming, kept for later use; the spot faces do not list them):

* ``PF_XBTUSD``: tick 0.5 (1 dp; a tick that is not a power of ten on purpose, so code that
  derives the tick from ``price_decimals`` gets caught), lot 0.0001 (4 dp), min 0.0001.
* ``PF_ARBUSD``: tick 0.0001 (4 dp), lot 1 (0 dp), min 1 contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType


class InstrumentKind(StrEnum):
    """Spot and perpetual books behave the same in the matcher; faces differ in what they list."""

    SPOT = "spot"
    PERPETUAL = "perpetual"


@dataclass(frozen=True, slots=True)
class Instrument:
    """Trading rules of one book; immutable so every thread can share one table lock-free."""

    symbol: str
    base: str
    quote: str
    kind: InstrumentKind
    price_tick: Decimal
    lot_size: Decimal
    min_qty: Decimal
    price_decimals: int
    qty_decimals: int
    ref_price: Decimal

    def __post_init__(self) -> None:
        # A bad row would silently make every order on that book reject (or worse, accept
        # off-grid prices), so refuse to build an inconsistent table at import time.
        for name in ("price_tick", "lot_size", "min_qty", "ref_price"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise ValueError(f"{self.symbol}: {name} must be a positive finite Decimal")
        if self.price_tick.as_tuple().exponent != -self.price_decimals:
            raise ValueError(f"{self.symbol}: price_tick {self.price_tick} needs "
                             f"{self.price_decimals} decimals")
        if self.lot_size != Decimal(1).scaleb(-self.qty_decimals):
            raise ValueError(f"{self.symbol}: lot_size must be 10^-qty_decimals")
        if self.min_qty % self.lot_size != 0:
            raise ValueError(f"{self.symbol}: min_qty is not a multiple of lot_size")
        if self.ref_price % self.price_tick != 0:
            raise ValueError(f"{self.symbol}: ref_price is not on the tick grid")

    @property
    def price_quantum(self) -> Decimal:
        """Exponent template so every price the engine stores prints with the same decimals."""
        return Decimal(1).scaleb(-self.price_decimals)

    @property
    def qty_quantum(self) -> Decimal:
        """Exponent template so every quantity the engine stores prints with the same decimals."""
        return Decimal(1).scaleb(-self.qty_decimals)


def _spot(symbol: str, tick: str, pdp: int, qdp: int, min_qty: str, ref: str) -> Instrument:
    base, quote = symbol.split("/")
    return Instrument(
        symbol=symbol, base=base, quote=quote, kind=InstrumentKind.SPOT,
        price_tick=Decimal(tick), lot_size=Decimal(1).scaleb(-qdp), min_qty=Decimal(min_qty),
        price_decimals=pdp, qty_decimals=qdp, ref_price=Decimal(ref),
    )


def _perp(symbol: str, base: str, tick: str, pdp: int, qdp: int, min_qty: str,
          ref: str) -> Instrument:
    return Instrument(
        symbol=symbol, base=base, quote="USD", kind=InstrumentKind.PERPETUAL,
        price_tick=Decimal(tick), lot_size=Decimal(1).scaleb(-qdp), min_qty=Decimal(min_qty),
        price_decimals=pdp, qty_decimals=qdp, ref_price=Decimal(ref),
    )


_TABLE: tuple[Instrument, ...] = (
    _spot("BTC/USD", "0.1", 1, 8, "0.0001", "45000.0"),
    _spot("ETH/USD", "0.01", 2, 8, "0.002", "2500.00"),
    _spot("ARB/USD", "0.0001", 4, 8, "5", "0.1110"),
    _perp("PF_XBTUSD", "XBT", "0.5", 1, 4, "0.0001", "45000.0"),
    _perp("PF_ARBUSD", "ARB", "0.0001", 4, 0, "1", "0.1110"),
)

#: Every instrument the simulator knows, by symbol. Read-only so no face can mutate the rules.
INSTRUMENTS: Mapping[str, Instrument] = MappingProxyType({i.symbol: i for i in _TABLE})

#: The books the spot faces (FIX, REST, WS) list today.
SPOT_SYMBOLS: tuple[str, ...] = tuple(i.symbol for i in _TABLE if i.kind is InstrumentKind.SPOT)

#: Perpetuals, defined now so their odd tick/lot rules are exercised before a face needs them.
PERP_SYMBOLS: tuple[str, ...] = tuple(
    i.symbol for i in _TABLE if i.kind is InstrumentKind.PERPETUAL
)


def get_instrument(symbol: str) -> Instrument | None:
    """None rather than KeyError: an unknown symbol is a client error the engine rejects."""
    return INSTRUMENTS.get(symbol)
