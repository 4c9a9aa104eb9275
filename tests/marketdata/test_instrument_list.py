"""The venue's InstrumentList (35=y) as the gateway reads it, handed to the MD feed as QuickFIX
would: Kraken's 562 MinTradeVol is the quantity step and 5011 QtyMin the minimum order size
(Kraken's example entry: ``562=0.00000001|5010=8|5011=0.0001``). Without 5011 (this project's
simulator until it sends it), 562 is the minimum and the step is the quantity precision's."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
import quickfix as fix

from gateway.fix import messages as m
from gateway.marketdata.feed import MarketDataFeed
from gateway.marketdata.instruments import InstrumentRegistry

D = Decimal


def _instrument_list(*entries: dict[int, str]) -> fix.Message:
    y = m.new_message("y")
    y.setField(320, "IL1")
    for entry in entries:
        g = fix.Group(m.NO_RELATED_SYM, m.SYMBOL)
        for tag, value in entry.items():
            g.setField(tag, value)
        y.addGroup(g)
    return y


@pytest.fixture
def feed() -> Iterator[MarketDataFeed]:
    f = MarketDataFeed(("BTC/USD",), 10, InstrumentRegistry(), stale_after_s=3600)
    try:
        yield f
    finally:
        f.stop()


def test_krakens_documented_entry_gives_the_minimum_from_5011_and_the_step_from_562(
        feed: MarketDataFeed) -> None:
    feed.on_app_message(_instrument_list(
        {55: "BTC/USD", 562: "0.00000001", 2349: "1", 5010: "8", 5011: "0.0001",
         5022: "0.1"}), None, {})
    btc = feed.instruments["BTC/USD"]
    assert (btc.min_qty, btc.qty_step, btc.price_tick) == (D("0.0001"), D("0.00000001"),
                                                           D("0.1"))
    # Under the venue's minimum: refused by the gateway, not by the venue after a round trip.
    assert feed.instruments.validate_order("BTC/USD", D("0.00005"), D("45000.0")) == (
        "quantity 0.00005 is under the minimum 0.0001 for BTC/USD")
    assert feed.instruments.validate_order("BTC/USD", D("0.00010001"), D("45000.0")) is None


def test_a_step_coarser_than_the_precision_is_the_step(feed: MarketDataFeed) -> None:
    feed.on_app_message(_instrument_list(
        {55: "ARB/USD", 562: "0.1", 2349: "4", 5010: "8", 5011: "5"}),
        None, {})
    arb = feed.instruments["ARB/USD"]
    assert (arb.min_qty, arb.qty_step) == (D("5"), D("0.1"))
    assert "not a multiple of the step 0.1" in (
        feed.instruments.validate_order("ARB/USD", D("5.05"), D("0.1111")) or "")


def test_without_5011_the_562_is_the_minimum_and_the_step_is_the_precisions(
        feed: MarketDataFeed) -> None:
    feed.on_app_message(_instrument_list(
        {55: "ARB/USD", 562: "5", 2349: "4", 5010: "8"}), None, {})
    arb = feed.instruments["ARB/USD"]
    assert (arb.min_qty, arb.qty_step) == (D("5"), D("0.00000001"))
    assert feed.instruments.validate_order("ARB/USD", D("7.5"), D("0.1111")) is None
