"""Instrument shape validation and the registry."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from gateway.marketdata.instruments import Instrument, InstrumentRegistry

D = Decimal

BTC = Instrument("BTC/USD", D("0.1"), D("0.00000001"), D("0.0001"), 1, 8)


def test_valid_orders() -> None:
    assert BTC.validate_order(D("0.0001"), D("45000.1")) is None
    assert BTC.validate_order(D("1.23456789"), D("45000")) is None
    assert BTC.validate_order(D("1"), None) is None  # market order: no price


def test_messages_are_human_and_exact() -> None:
    assert BTC.validate_order(D("1"), D("45000.05")) == (
        "price 45000.05 is not on the tick 0.1 for BTC/USD"
    )
    assert BTC.validate_order(D("0.00001"), D("45000")) == (
        "quantity 0.00001 is under the minimum 0.0001 for BTC/USD"
    )
    assert BTC.validate_order(D("0.123456789"), None) == (
        "quantity 0.123456789 is not a multiple of the step 0.00000001 for BTC/USD"
    )
    assert BTC.validate_order(D("0"), None) == "quantity 0 must be positive for BTC/USD"
    assert BTC.validate_order(D("1"), D("-0.1")) == "price -0.1 must be positive for BTC/USD"
    assert BTC.validate_order(D("NaN"), None) == (
        "quantity NaN is not a finite decimal number for BTC/USD"
    )
    assert BTC.validate_order(D("1"), D("Infinity")) == (
        "price Infinity is not a finite decimal number for BTC/USD"
    )
    # Scientific-notation inputs are echoed in plain notation.
    tiny = Instrument("X/USD", D("0.1"), D("0.00000001"), D("0"), 1, 8)
    assert tiny.validate_order(D("1E-9"), None) == (
        "quantity 0.000000001 is not a multiple of the step 0.00000001 for X/USD"
    )


def test_huge_values_do_not_raise() -> None:
    msg = BTC.validate_order(D("1"), D("1E+40"))
    assert msg is not None and "not on the tick" in msg


def test_float_is_refused_not_coerced() -> None:
    msg = BTC.validate_order(0.5, None)  # type: ignore[arg-type]
    assert msg is not None and "not a finite decimal" in msg


def test_coarse_tick() -> None:
    half = Instrument.from_precision("ETH/USD", 1, 4, D("0.01"), price_tick=D("0.5"))
    assert half.qty_step == D("0.0001")
    assert half.validate_order(D("0.01"), D("3000.5")) is None
    assert half.validate_order(D("0.01"), D("3000.2")) == (
        "price 3000.2 is not on the tick 0.5 for ETH/USD"
    )
    fine = Instrument.from_precision("BTC/USD", 1, 8, D("0.0001"))
    assert fine == BTC


@pytest.mark.parametrize(
    "kwargs",
    [
        {"price_tick": D("0")},
        {"qty_step": D("-1")},
        {"min_qty": D("-1")},
        {"price_tick": D("0.01")},  # finer than 1 decimal
        {"qty_step": D("0.000000001")},  # finer than 8 decimals
        {"price_decimals": -1},
        {"price_tick": 0.1},
    ],
)
def test_invalid_instruments(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "symbol": "BTC/USD",
        "price_tick": D("0.1"),
        "qty_step": D("0.00000001"),
        "min_qty": D("0.0001"),
        "price_decimals": 1,
        "qty_decimals": 8,
    }
    base.update(kwargs)
    with pytest.raises((ValueError, TypeError)):
        Instrument(**base)  # type: ignore[arg-type]


def test_registry() -> None:
    reg = InstrumentRegistry([BTC])
    assert "BTC/USD" in reg and len(reg) == 1 and reg["BTC/USD"] is BTC
    assert reg.validate_order("DOGE/USD", D("1"), None) == "unknown symbol DOGE/USD"
    assert reg.validate_order("BTC/USD", D("1"), D("45000.05")) == (
        "price 45000.05 is not on the tick 0.1 for BTC/USD"
    )
    eth = Instrument.from_precision("ETH/USD", 2, 8, D("0.001"))
    reg.add(eth)
    assert reg.symbols() == ["BTC/USD", "ETH/USD"]
    reg.replace_all([eth])
    assert reg.get("BTC/USD") is None and list(reg) == [eth]
    reg.remove("ETH/USD")
    assert len(reg) == 0
    with pytest.raises(KeyError, match="unknown symbol BTC/USD"):
        reg["BTC/USD"]


def test_registry_concurrent_adds_lose_nothing() -> None:
    reg = InstrumentRegistry()

    def adder(prefix: str) -> None:
        for i in range(200):
            reg.add(Instrument.from_precision(f"{prefix}{i}/USD", 2, 8, D("0.001")))

    threads = [threading.Thread(target=adder, args=(p,)) for p in "ABCD"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reg) == 800
