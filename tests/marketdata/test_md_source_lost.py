"""When nothing feeds the books any more, the OMS subscribers must not keep a frozen book that
looks live: the feed reports the lost source and the fan-out withdraws the book (an empty W)
until a fresh snapshot. Without a venue (a stand-in session that records what it is sent and
answers nothing): a session that is logged on but leaves its resubscribe unanswered (also for
an hour, on a fake clock: one episode in the log, not a warning per resubscribe), and a logout
whose books are handed to a fallback source that never delivers."""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from gateway.marketdata.fanout import OmsMarketData
from gateway.marketdata.feed import (
    SOURCE_LOST,
    STALE,
    STALL_REMINDER_MAX_S,
    MarketDataFeed,
)
from gateway.marketdata.instruments import Instrument, InstrumentRegistry
from tests.conftest import wait_until
from tests.marketdata.conftest import ASKS, BIDS, BTC, btc_registry
from tests.marketdata.test_feed_integrity import FakeSession
from tests.marketdata.test_md_failover_unit import fix_snapshot
from tests.marketdata.test_oms_md_fanout import _Recorder, _request

D = Decimal
STALE_AFTER_S = 0.4


@pytest.fixture
def feed() -> Iterator[MarketDataFeed]:
    f = MarketDataFeed((BTC,), 10, btc_registry(), stale_after_s=STALE_AFTER_S)
    f._session = FakeSession()  # type: ignore[assignment]
    f._subscribe(BTC)
    fix_snapshot(f, BTC, BIDS, ASKS)
    try:
        yield f
    finally:
        f._session = None
        f.stop()


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

    fresh_bids = [(D("100.1"), D("1"))]
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


class FakeClock:
    """Monotonic seconds that move only when the test moves them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "fixgw.marketdata" and r.levelno >= logging.WARNING]


def test_an_hour_long_stall_is_one_episode_in_the_log_and_keeps_resubscribing(
        caplog: pytest.LogCaptureFixture) -> None:
    """Logged on, and the venue answers nothing for an hour (md_stale_after_s = 10): the feed
    still resubscribes every 10 s, and the OMS's book is withdrawn once and stays so; but the
    log gets one source-lost warning (the staleness check before it is a debug line: on a
    quiet symbol it is answered), a handful of reminders saying how
    long it has lasted (never more than STALL_REMINDER_MAX_S apart), and one line with the
    stall's length when the venue answers, where it used to get a warning every 10 s."""
    caplog.set_level(logging.DEBUG, "fixgw.marketdata")
    clock = FakeClock()
    reg = InstrumentRegistry()
    reg.replace_all([Instrument.from_precision(BTC, 1, 8, D("0.0001"), D("0.1"))])
    feed = MarketDataFeed((BTC,), 10, reg, stale_after_s=10.0, clock=clock)
    feed.stop()  # the test makes the watchdog's checks itself, on its clock
    venue = FakeSession()
    feed._session = venue  # type: ignore[assignment]
    feed._subscribe(BTC)
    fix_snapshot(feed, BTC, BIDS, ASKS)
    fanout = OmsMarketData(feed)
    oms = _Recorder()
    try:
        fanout.on_request(_request("R1"), "FIXGW->OMS", oms)
        caplog.clear()
        for _ in range(3600):  # the watchdog's checks, one a second for an hour
            clock.now += 1.0
            feed._resubscribe_stale()

        subscribes = [req for req, kind in venue.sent if kind == "1"]
        assert len(subscribes) > 3600 / 11 - 2  # every 11 s (silent > 10 s): as before
        warned = _warnings(caplog)
        assert warned[0].startswith(f"market data {BTC}: {SOURCE_LOST}: no snapshot 11.0 s "
                                    f"after subscribing")
        reminders = warned[1:]
        assert 3 <= len(reminders) <= 10, warned
        lasted = []
        for line in reminders:
            got = re.fullmatch(rf"market data {re.escape(BTC)}: still no snapshot from the venue, "
                               r"(?:(\d+) min (\d+) s|([\d.]+) s) after the first unanswered "
                               r"subscription \((\d+) left unanswered; still resubscribing "
                               r"every ~10 s\); the book stays withdrawn", line)
            assert got is not None, line
            lasted.append(float(got[3]) if got[3] else int(got[1]) * 60 + int(got[2]))
        assert lasted == sorted(lasted) and lasted[0] >= 60 and lasted[-1] > 3600 - 15 * 60
        assert all(b - a <= STALL_REMINDER_MAX_S + 11 for a, b in itertools.pairwise(lasted))
        assert fanout.drained(5) and oms.types() == ["W:R1", "W:R1"] and _withdrawn(oms)

        caplog.clear()
        fix_snapshot(feed, BTC, BIDS, ASKS)  # the venue answers at last
        ended = _warnings(caplog)
        assert len(ended) == 1, ended
        got = re.fullmatch(rf"market data {re.escape(BTC)}: the venue answered at last: a "
                           r"snapshot after 59 min (\d+) s without one \((\d+) subscriptions "
                           r"left unanswered\)", ended[0])
        assert got is not None, ended
        # All but the first subscription (answered) and the last (answered now).
        assert int(got[2]) == len(subscribes) - 2
        assert fanout.drained(5) and oms.book().top(5) == (BIDS, ASKS)

        caplog.clear()  # a later stall is a new episode, warned of again
        for _ in range(25):
            clock.now += 1.0
            feed._resubscribe_stale()
        assert [w.split(":")[1].strip() for w in _warnings(caplog)] == [SOURCE_LOST]
    finally:
        fanout.close()
        feed._session = None
