"""When nothing feeds the books any more, the OMS subscribers must not keep a frozen book that
looks live: the feed reports the lost source and the fan-out withdraws the book (an empty W)
until a fresh snapshot. Without a venue (a stand-in session that records what it is sent and
answers nothing): a session that is logged on but leaves its resubscribe unanswered, and a
logout whose books are handed to a fallback source that never delivers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from gateway.marketdata.fanout import OmsMarketData
from gateway.marketdata.feed import SOURCE_LOST, STALE, MarketDataFeed
from gateway.marketdata.instruments import Instrument, InstrumentRegistry
from tests.conftest import wait_until
from tests.marketdata.test_feed_integrity import FakeSession
from tests.marketdata.test_md_failover_unit import fix_snapshot
from tests.marketdata.test_oms_md_fanout import _Recorder, _request

D = Decimal
BTC = "BTC/USD"
BIDS = [(D("100.0"), D("1")), (D("99.9"), D("2"))]
ASKS = [(D("100.2"), D("3")), (D("100.3"), D("4"))]
STALE_AFTER_S = 0.4


@pytest.fixture
def feed() -> Iterator[MarketDataFeed]:
    reg = InstrumentRegistry()
    reg.replace_all([Instrument.from_precision(BTC, 1, 8, D("0.0001"), D("0.1"))])
    f = MarketDataFeed((BTC,), 10, reg, stale_after_s=STALE_AFTER_S)
    f._session = FakeSession()  # type: ignore[assignment]
    f._subscribe(BTC)
    fix_snapshot(f, BTC, BIDS, ASKS)
    try:
        yield f
    finally:
        f._session = None
        f.stop()


@pytest.fixture
def fanout(feed: MarketDataFeed) -> Iterator[OmsMarketData]:
    md = OmsMarketData(feed)
    try:
        yield md
    finally:
        md.close()


def _withdrawn(oms: _Recorder) -> bool:
    return bool(oms.got) and oms.got[-1][35] == "W" and oms.got[-1][268] == "0"


def test_a_stalled_session_withdraws_the_book_once_its_resubscribe_goes_unanswered(
        feed: MarketDataFeed, fanout: OmsMarketData) -> None:
    """Logged on, but the venue sends nothing: the first stale resubscribe is no withdrawal (a
    quiet market's is answered in milliseconds), the unanswered one is. A new subscriber gets
    the empty book too, and the fresh snapshot revives both."""
    oms, late = _Recorder(), _Recorder()
    fanout.on_request(_request("R1"), "FIXGW->OMS", oms)
    assert fanout.drained(5) and oms.book().top(5) == (BIDS, ASKS)
    wait_until(lambda: any(r.startswith(STALE) for _, r in feed.integrity_events),
               what="the stale resubscribe")
    assert fanout.drained(5) and oms.types() == ["W:R1"]  # not withdrawn for that
    wait_until(lambda: any(r.startswith(SOURCE_LOST) for _, r in feed.integrity_events),
               what="the unanswered resubscribe found")
    assert fanout.drained(5) and _withdrawn(oms), oms.types()
    fanout.on_request(_request("R2"), "FIXGW->OMS2", late)
    assert fanout.drained(5) and late.types() == ["W:R2"] and _withdrawn(late)

    fresh_bids = [(D("101.0"), D("1"))]
    fix_snapshot(feed, BTC, fresh_bids, ASKS)  # the venue answers at last
    assert fanout.drained(5)
    for got in (oms, late):
        assert got.book().top(5) == (fresh_bids, ASKS) and not got.book().withdrawn


def test_a_logout_handed_to_a_source_that_never_delivers_leaves_no_frozen_book(
        feed: MarketDataFeed, fanout: OmsMarketData) -> None:
    """The MD session logs out and, at once, the books go to a fallback that never sends a
    snapshot (an unreachable WS): the OMS's book is withdrawn exactly once, whichever of the
    watchdog and the hand-over reports it, and stays withdrawn."""
    oms = _Recorder()
    fanout.on_request(_request("R1"), "FIXGW->OMS", oms)
    assert fanout.drained(5)
    feed.on_logout(None)  # type: ignore[arg-type]
    feed.hand_over_books("ws")
    time.sleep(0.3)  # the watchdog's turn too
    assert fanout.drained(5)
    assert oms.types() == ["W:R1", "W:R1"] and _withdrawn(oms)
    lost = [r for _, r in feed.integrity_events if r.startswith(SOURCE_LOST)]
    assert len(lost) == 1 and "logged out" in lost[0], lost


def test_a_logout_withdraws_the_book_and_the_relogon_snapshot_revives_it(
        feed: MarketDataFeed, fanout: OmsMarketData) -> None:
    oms = _Recorder()
    fanout.on_request(_request("R1"), "FIXGW->OMS", oms)
    assert fanout.drained(5)
    feed.on_logout(None)  # type: ignore[arg-type]
    feed.on_logout(None)  # type: ignore[arg-type]  # QuickFIX repeats it per refused logon
    wait_until(lambda: fanout.drained(1) and _withdrawn(oms), what="the withdrawal")
    time.sleep(0.3)
    assert fanout.drained(5) and oms.types() == ["W:R1", "W:R1"]  # told once
    feed._session = FakeSession()  # type: ignore[assignment]  # logged on again
    feed._subscribe(BTC)
    fix_snapshot(feed, BTC, BIDS, ASKS)
    assert fanout.drained(5)
    assert oms.book().top(5) == (BIDS, ASKS) and not oms.book().withdrawn
