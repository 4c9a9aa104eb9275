"""Instrument metadata (tick, lot step, minimum, precisions) and order-shape validation.

Why here and not in risk: the same facts drive the book checksum (precisions) and the pre-trade
check (tick/step/minimum), and both must come from one InstrumentList / AssetPairs load. The
venue would reject a malformed order anyway, but only after it has cost a rate-limit point
(kraken-api.md section 7: the fixed part is charged even when validation fails), so we refuse
it first with a message a trader can act on.

Sources of the fields: FIX InstrumentList 35=y (562 MinTradeVol = qty step, 5011 QtyMin,
5022 TickSize, 2349 PricePrecision, 5010 QtyPrecision) or REST ``AssetPairs`` / WS ``instrument``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

__all__ = ["Instrument", "InstrumentRegistry"]

_ZERO = Decimal(0)


def _exponent(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):  # 'n', 'N', 'F': NaN or infinity
        raise ValueError(f"{value} is not finite")
    return exponent


def _fmt(value: object) -> str:
    """Plain positional notation: ``0.0000001``, never ``1E-7``, in messages humans read."""
    if isinstance(value, Decimal) and value.is_finite():
        return f"{value:f}"
    return str(value)


def _is_multiple(value: Decimal, step: Decimal) -> bool:
    """Exact ``value % step == 0``; False when the quotient overflows the Decimal context."""
    try:
        return value % step == _ZERO
    except InvalidOperation:
        return False


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable symbol's static shape. All amounts ``Decimal``; precisions in decimal places."""

    symbol: str
    price_tick: Decimal
    qty_step: Decimal
    min_qty: Decimal
    price_decimals: int
    qty_decimals: int

    def __post_init__(self) -> None:
        for name in ("price_tick", "qty_step", "min_qty"):
            value = getattr(self, name)
            if type(value) is not Decimal:
                kind = type(value).__name__
                raise TypeError(f"{self.symbol}: {name} must be Decimal, got {kind}")
            if not value.is_finite():
                raise ValueError(f"{self.symbol}: {name} must be finite, got {value}")
        if self.price_tick <= 0 or self.qty_step <= 0:
            raise ValueError(f"{self.symbol}: price_tick and qty_step must be positive")
        if self.min_qty < 0:
            raise ValueError(f"{self.symbol}: min_qty must not be negative")
        for name in ("price_decimals", "qty_decimals"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 18:
                raise ValueError(f"{self.symbol}: {name} must be an int in 0..18, got {value!r}")
        # A tick finer than the precision would allow prices the checksum cannot represent.
        if _exponent(self.price_tick) < -self.price_decimals:
            raise ValueError(
                f"{self.symbol}: price_tick {self.price_tick} is finer than "
                f"{self.price_decimals} decimals"
            )
        if _exponent(self.qty_step) < -self.qty_decimals:
            raise ValueError(
                f"{self.symbol}: qty_step {self.qty_step} is finer than "
                f"{self.qty_decimals} decimals"
            )

    @classmethod
    def from_precision(
        cls,
        symbol: str,
        price_decimals: int,
        qty_decimals: int,
        min_qty: Decimal,
        price_tick: Decimal | None = None,
    ) -> Instrument:
        """Build from precisions, the common case: tick and step are one unit of the last decimal.

        ``price_tick`` overrides the tick for venues that quote coarser than their precision
        (e.g. precision 1 but tick 0.5).
        """
        return cls(
            symbol=symbol,
            price_tick=price_tick if price_tick is not None else Decimal(1).scaleb(-price_decimals),
            qty_step=Decimal(1).scaleb(-qty_decimals),
            min_qty=min_qty,
            price_decimals=price_decimals,
            qty_decimals=qty_decimals,
        )

    def validate_order(self, qty: Decimal, price: Decimal | None = None) -> str | None:
        """A human reason why this order shape is invalid here, or ``None`` if it is fine.

        ``price`` is ``None`` for market orders. Messages name the value, the rule and the symbol
        because they end up verbatim in a FIX 58 Text that a trader reads.
        """
        sym = self.symbol
        if type(qty) is not Decimal or not qty.is_finite():
            return f"quantity {_fmt(qty)} is not a finite decimal number for {sym}"
        if qty <= 0:
            return f"quantity {_fmt(qty)} must be positive for {sym}"
        if qty < self.min_qty:
            return f"quantity {_fmt(qty)} is under the minimum {_fmt(self.min_qty)} for {sym}"
        if not _is_multiple(qty, self.qty_step):
            return (
                f"quantity {_fmt(qty)} is not a multiple of the step {_fmt(self.qty_step)} "
                f"for {sym}"
            )
        if price is not None:
            if type(price) is not Decimal or not price.is_finite():
                return f"price {_fmt(price)} is not a finite decimal number for {sym}"
            if price <= 0:
                return f"price {_fmt(price)} must be positive for {sym}"
            if not _is_multiple(price, self.price_tick):
                return f"price {_fmt(price)} is not on the tick {_fmt(self.price_tick)} for {sym}"
        return None


class InstrumentRegistry:
    """Thread-safe symbol -> :class:`Instrument` map.

    Copy-on-write: writers (the InstrumentList loader, rarely) build a new dict under a lock and
    swap the reference; readers (every order, every book checksum) read the current dict without
    locking. A reader sees either the old or the new universe, never half of a reload.
    """

    __slots__ = ("_by_symbol", "_write_lock")

    def __init__(self, instruments: Iterable[Instrument] = ()) -> None:
        self._write_lock = threading.Lock()
        self._by_symbol: Mapping[str, Instrument] = {i.symbol: i for i in instruments}

    def add(self, instrument: Instrument) -> None:
        """Add or replace one instrument."""
        with self._write_lock:
            new = dict(self._by_symbol)
            new[instrument.symbol] = instrument
            self._by_symbol = new

    def replace_all(self, instruments: Iterable[Instrument]) -> None:
        """Swap in a whole new universe (a fresh InstrumentList): delisted symbols disappear."""
        new = {i.symbol: i for i in instruments}
        with self._write_lock:
            self._by_symbol = new

    def remove(self, symbol: str) -> None:
        with self._write_lock:
            new = dict(self._by_symbol)
            new.pop(symbol, None)
            self._by_symbol = new

    def get(self, symbol: str) -> Instrument | None:
        return self._by_symbol.get(symbol)

    def __getitem__(self, symbol: str) -> Instrument:
        try:
            return self._by_symbol[symbol]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol}") from None

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._by_symbol

    def __len__(self) -> int:
        return len(self._by_symbol)

    def __iter__(self) -> Iterator[Instrument]:
        return iter(tuple(self._by_symbol.values()))

    def symbols(self) -> list[str]:
        return sorted(self._by_symbol)

    def validate_order(self, symbol: str, qty: Decimal, price: Decimal | None = None) -> str | None:
        """Like :meth:`Instrument.validate_order`, plus the unknown-symbol case."""
        instrument = self._by_symbol.get(symbol)
        if instrument is None:
            return f"unknown symbol {symbol}"
        return instrument.validate_order(qty, price)
