"""Business validation of a new order, before any limit or signal rule.

Each failure carries the FIX 4.4 OrdRejReason (103) and a Text (58) that tells the trader
exactly what to change; the order is answered with an ExecutionReport reject, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

# OrdRejReason (103)
UNKNOWN_SYMBOL: Final = "1"
EXCHANGE_CLOSED: Final = "2"
EXCEEDS_LIMIT: Final = "3"
UNKNOWN_ORDER: Final = "5"
DUPLICATE_ORDER: Final = "6"
UNSUPPORTED: Final = "11"
INCORRECT_QTY: Final = "13"
UNKNOWN_ACCOUNT: Final = "15"
OTHER: Final = "99"

# OrdRejReason (103) -> a short machine-readable name: the `reason` label of the metrics'
# reject counter and the `reject_reason` of the event stream's REJECTED order events, so a
# dashboard and an event consumer speak of a reject in the same words.
ORD_REJ_REASON_NAMES: Final = {
    "0": "broker_option", "1": "unknown_symbol", "2": "exchange_closed",
    "3": "order_exceeds_limit", "4": "too_late_to_enter", "5": "unknown_order",
    "6": "duplicate_order", "7": "duplicate_verbal_order", "8": "stale_order",
    "11": "unsupported_order_characteristic", "13": "incorrect_quantity",
    "15": "unknown_account", "16": "price_exceeds_current_price_band", "99": "other"}

ORD_TYPES: Final = {"1": "Market", "2": "Limit", "3": "Stop", "4": "StopLimit",
                    "R": "TakeProfit", "T": "TakeProfitLimit", "U": "TrailingStop",
                    "V": "TrailingStopLimit"}
SUPPORTED_ORD_TYPES: Final = frozenset({"1", "2"})
TIFS: Final = {"0": "Day", "1": "GTC", "2": "OPG", "3": "IOC", "4": "FOK", "5": "GTX",
               "6": "GTD", "7": "AtClose"}
SUPPORTED_TIFS: Final = frozenset({"1", "3", "4"})


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str  # OrdRejReason (103)
    text: str    # Text (58)


@dataclass(frozen=True, slots=True)
class OrderInput:
    """A new order's fields as strings from the wire (None = absent)."""

    symbol: str | None
    side: str | None
    qty: str | None
    ord_type: str | None
    price: str | None
    tif: str | None
    account: str | None = None


@dataclass(frozen=True, slots=True)
class ValidOrder:
    symbol: str
    side: str
    qty: Decimal
    ord_type: str
    price: Decimal | None
    tif: str
    account: str


def _decimal(value: str) -> Decimal | None:
    try:
        d = Decimal(value)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


class OrderValidator:
    """`instrument_check(symbol, qty, price)` returns a text when the instrument's tick, lot or
    minimum is violated (filled from the venue's InstrumentList), else None."""

    def __init__(
        self,
        known_symbol: Callable[[str], bool],
        instrument_check: Callable[[str, Decimal, Decimal | None], str | None] | None = None,
    ) -> None:
        self._known = known_symbol
        self._instrument_check = instrument_check

    def validate(self, o: OrderInput,
                 allowed_accounts: tuple[str, ...] = ()) -> ValidOrder | Rejection:
        if not o.symbol or not self._known(o.symbol):
            return Rejection(UNKNOWN_SYMBOL,
                             f"unknown symbol {o.symbol!r}: not listed by the venue")
        if o.side not in ("1", "2"):
            return Rejection(UNSUPPORTED,
                             f"Side {o.side!r} is not supported; use 1 (buy) or 2 (sell)")
        if o.ord_type not in SUPPORTED_ORD_TYPES:
            name = ORD_TYPES.get(o.ord_type or "", "unknown")
            return Rejection(UNSUPPORTED, f"OrdType {o.ord_type} ({name}) is not supported; "
                                          "use 1 (Market) or 2 (Limit)")
        tif = o.tif or "1"
        if tif not in SUPPORTED_TIFS:
            return Rejection(UNSUPPORTED, f"TimeInForce {tif} ({TIFS.get(tif, 'unknown')}) is not "
                                          "supported by the venue; use 1 (GTC), 3 (IOC) or 4 (FOK)")
        qty = _decimal(o.qty or "")
        if qty is None or qty <= 0:
            return Rejection(INCORRECT_QTY, f"OrderQty must be a positive number, got {o.qty!r}")
        price: Decimal | None = None
        if o.ord_type == "2":
            if o.price is None:
                return Rejection(OTHER, "limit order (OrdType 2) requires Price (44)")
            price = _decimal(o.price)
            if price is None or price <= 0:
                return Rejection(OTHER, f"Price must be a positive number, got {o.price!r}")
        elif o.price is not None:
            return Rejection(OTHER, "market order (OrdType 1) must not carry Price (44)")
        account = o.account or ""
        if allowed_accounts and account not in allowed_accounts:
            return Rejection(UNKNOWN_ACCOUNT,
                             f"account {account!r} is not enabled for this session")
        if self._instrument_check is not None:
            problem = self._instrument_check(o.symbol, qty, price)
            if problem:
                reason = INCORRECT_QTY if "quantity" in problem else OTHER
                return Rejection(reason, problem)
        return ValidOrder(o.symbol, o.side, qty, o.ord_type, price, tif, account)
