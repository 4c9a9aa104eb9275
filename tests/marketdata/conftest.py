"""The feed and fan-out most market-data tests start from: one BTC/USD book, two levels a
side, synced from a venue snapshot with no FIX session behind it. A module that needs another
feed (a session, a shorter staleness) defines its own `feed`; `fanout` then serves that one."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from gateway.marketdata.fanout import OmsMarketData
from gateway.marketdata.feed import MarketDataFeed
from gateway.marketdata.instruments import Instrument, InstrumentRegistry
from tests.marketdata.test_md_failover_unit import fix_snapshot

D = Decimal
BTC = "BTC/USD"
BIDS = [(D("100.0"), D("1")), (D("99.9"), D("2"))]
ASKS = [(D("100.2"), D("3")), (D("100.3"), D("4"))]


def btc_registry() -> InstrumentRegistry:
    """BTC/USD at Kraken's precision: price 1 decimal, qty 8, lot 0.0001, tick 0.1."""
    reg = InstrumentRegistry()
    reg.replace_all([Instrument.from_precision(BTC, 1, 8, D("0.0001"), D("0.1"))])
    return reg


@pytest.fixture
def feed() -> Iterator[MarketDataFeed]:
    f = MarketDataFeed((BTC,), 10, btc_registry(), stale_after_s=3600)
    f._subscribe(BTC)  # no session: registers the subscription only
    fix_snapshot(f, BTC, BIDS, ASKS)
    yield f
    f.stop()


@pytest.fixture
def fanout(feed: MarketDataFeed) -> Iterator[OmsMarketData]:
    md = OmsMarketData(feed)
    try:
        yield md
    finally:
        md.close()
