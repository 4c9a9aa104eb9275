"""A book that keeps failing its checks, on a fake clock (an hour takes no time; the test makes
the watchdog's looks itself), with a stand-in session that records the MarketDataRequests: the
resubscribe schedule (at once, then BROKEN_BACKOFF_FIRST_S doubling to BROKEN_BACKOFF_MAX_S),
the log (one warning, rare reminders, one closing line), what the OMS is told, and the streak's
end once a snapshot has held. The same over a real FIX session: test_md_bad_venue."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal

import pytest

from gateway.marketdata.book import Book
from gateway.marketdata.fanout import OmsMarketData
from gateway.marketdata.feed import (
    BROKEN_BACKOFF_FIRST_S,
    BROKEN_BACKOFF_MAX_S,
    BROKEN_HOLD_S,
    MarketDataFeed,
)
from gateway.marketdata.fix_md import BID, NEW, MdEntry, TopView, build_incremental, build_snapshot
from tests.marketdata.conftest import ASKS, BIDS, BTC, btc_registry
from tests.marketdata.test_feed_integrity import FakeSession
from tests.marketdata.test_md_failover_unit import fix_snapshot
from tests.marketdata.test_md_source_lost import FakeClock
from tests.marketdata.test_oms_md_fanout import _Recorder, _request

D = Decimal
CROSSED_ASKS = [(D("99.9"), D("3")), (D("100.3"), D("4"))]


class Venue:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.feed = MarketDataFeed((BTC,), 10, btc_registry(), stale_after_s=10.0,
                                   clock=self.clock)
        self.feed.stop()  # the test makes the watchdog's looks itself, on its clock
        self.session = FakeSession()
        self.feed._session = self.session  # type: ignore[assignment]
        self.feed._subscribe(BTC)
        fix_snapshot(self.feed, BTC, BIDS, ASKS)
        self.fanout = OmsMarketData(self.feed)
        self.oms = _Recorder()
        self.fanout.on_request(_request("R1", BTC), "FIXGW->OMS", self.oms)

    def subscribes(self) -> int:
        return sum(1 for _, kind in self.session.sent if kind == "1")

    def req_id(self) -> str:
        return next(r for s, r, _, _ in self.feed.subscriptions() if s == BTC)

    def crossed_snapshot(self) -> None:
        book = Book(BTC)
        book.apply_snapshot(BIDS, CROSSED_ASKS)
        view = TopView(10)
        view.reset_from(book)
        self.feed.on_app_message(build_snapshot(self.req_id(), BTC, view, view.checksum(1, 8)),
                                 None, {})  # type: ignore[arg-type]

    def watch(self, seconds: float) -> None:
        """`seconds` pass, and the watchdog looks."""
        self.clock.now += seconds
        self.feed._send_due()
        self.feed._end_held_streaks()


@pytest.fixture
def venue() -> Iterator[Venue]:
    v = Venue()
    try:
        yield v
    finally:
        v.fanout.close()
        v.feed._session = None


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "fixgw.marketdata" and r.levelno >= logging.WARNING]


def test_a_snapshot_that_keeps_failing_is_resubscribed_on_a_doubling_backoff(
        venue: Venue, caplog: pytest.LogCaptureFixture) -> None:
    """An hour of crossed snapshots: the waits go 0, 0.25, 0.5 ... up to the cap; nothing is
    sent before a wait is over; the log has one warning and a few reminders (it had one per
    failure, thousands a second); the OMS was told once (an empty W), not twice per failure;
    and the book stays empty and unhealthy throughout."""
    caplog.set_level(logging.DEBUG, logger="fixgw.marketdata")
    feed, book = venue.feed, venue.feed.books[BTC]
    waits: list[float] = []
    elapsed = 0.0
    while elapsed < 3600 and len(waits) < 1000:  # (resubscribed at once: never ends)
        before = venue.subscribes()
        venue.crossed_snapshot()
        wait = 0.0
        while venue.subscribes() == before:  # the watchdog sends it once its wait is over
            assert book.mid() is None and feed.health_problem() is not None
            venue.watch(0.125)  # exact in binary: the waits add up exactly
            wait += 0.125
        waits.append(wait)
        elapsed += wait
    cap = BROKEN_BACKOFF_MAX_S
    assert elapsed >= 3600, f"{len(waits)} resubscribes in {elapsed} s"
    assert waits[:9] == [0.0, BROKEN_BACKOFF_FIRST_S, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, cap]
    assert set(waits[9:]) == {cap}
    assert len(waits) < 3600 / cap + 10
    assert "crossed book" in (feed.health_problem() or "")
    warnings = _warnings(caplog)
    assert warnings[0].startswith(f"market data {BTC}: crossed book in the snapshot; book "
                                  "emptied, resubscribing")
    reminders = [w for w in warnings[1:] if "still fails its checks" in w]
    assert reminders == warnings[1:] and 3 <= len(reminders) <= 10, warnings
    assert "no snapshot" not in " ".join(warnings)  # never taken for a stall
    assert venue.fanout.drained(5)
    # The book, then its withdrawal (the integrity event's empty W, then the emptied book's),
    # and nothing more for all the failures after the first.
    assert [(f[35], f[268]) for f in venue.oms.got] == [("W", "4"), ("W", "0"), ("W", "0")]

    # A good snapshot: the book is back at once; the streak ends once it has held.
    fix_snapshot(feed, BTC, BIDS, ASKS)
    assert book.mid() == D("100.1") and feed.health_problem() is None
    venue.watch(BROKEN_HOLD_S - 1)
    assert "good again" not in " ".join(_warnings(caplog))
    venue.watch(1)
    closing = _warnings(caplog)[-1]
    assert closing.startswith(f"market data {BTC}: the book is good again"), closing
    assert f"({len(waits)} failures;" in closing
    # A failure now is a first one again: resubscribed at once, and a warning.
    before = venue.subscribes()
    venue.crossed_snapshot()
    assert venue.subscribes() == before + 1
    assert _warnings(caplog)[-1].startswith(f"market data {BTC}: crossed book in the snapshot")


def test_a_snapshot_that_fails_soon_after_it_passed_keeps_backing_off(
        venue: Venue) -> None:
    """A good snapshot whose next update fails (a venue whose updates never match their
    checksum) has not held: the streak goes on, with the next wait, and the OMS, which got the
    good snapshot, is told again that the book is withdrawn."""
    feed = venue.feed
    venue.crossed_snapshot()  # the first failure: resubscribed at once
    venue.crossed_snapshot()  # the second: after BROKEN_BACKOFF_FIRST_S
    venue.watch(BROKEN_BACKOFF_FIRST_S)
    fix_snapshot(feed, BTC, BIDS, ASKS)
    venue.watch(1)
    before = venue.subscribes()
    x = build_incremental(venue.req_id(), BTC, [MdEntry(NEW, BID, D("99.8"), D("1"))], 1, 12345)
    feed.on_app_message(x, None, {})  # type: ignore[arg-type]  # a checksum mismatch
    assert feed.books[BTC].mid() is None
    venue.watch(0.375)
    assert venue.subscribes() == before  # the wait doubled: 0.5 s
    venue.watch(0.125)
    assert venue.subscribes() == before + 1
    assert venue.fanout.drained(5)
    # the book, its withdrawal (two empty Ws), the good snapshot, its withdrawal
    assert [f[268] for f in venue.oms.got if f[35] == "W"] == ["4", "0", "0", "4", "0", "0"]


def test_a_streak_ends_once_its_first_good_snapshot_has_held_through_later_ones(
        venue: Venue, caplog: pytest.LogCaptureFixture) -> None:
    """A quiet symbol gets a fresh snapshot at every staleness check (every ~2 s with
    md_stale_after_s = 2): the hold runs from the first good snapshot after the failure, not
    from the latest, or the streak never ended and every later fault, hours on, was a quiet
    repeat with a backoff."""
    venue.crossed_snapshot()
    venue.crossed_snapshot()
    venue.watch(BROKEN_BACKOFF_FIRST_S)
    for _ in range(4):  # good snapshots 2 s apart: the staleness checks' answers
        fix_snapshot(venue.feed, BTC, BIDS, ASKS)
        venue.watch(2)
    assert _warnings(caplog)[-1].startswith(f"market data {BTC}: the book is good again")
    before = venue.subscribes()
    venue.crossed_snapshot()
    assert venue.subscribes() == before + 1  # a first failure again: at once


def test_another_kind_of_failure_in_a_streak_is_said(
        venue: Venue, caplog: pytest.LogCaptureFixture) -> None:
    """A gap right after a crossed snapshot was fixed is news for ops (a warning), though it
    keeps the backoff of the streak; the same failure again is not."""
    venue.crossed_snapshot()
    venue.crossed_snapshot()
    assert len(_warnings(caplog)) == 1
    venue.watch(BROKEN_BACKOFF_FIRST_S)
    fix_snapshot(venue.feed, BTC, BIDS, ASKS)
    x = build_incremental(venue.req_id(), BTC, [MdEntry(NEW, BID, D("99.8"), D("1"))], 2, None)
    venue.feed.on_app_message(x, None, {})  # type: ignore[arg-type]  # RptSeq 2 after 0
    (gap,) = _warnings(caplog)[1:]
    assert gap.startswith(f"market data {BTC}: sequence gap: RptSeq 2 after 0; book emptied, "
                          "resubscribing for a fresh snapshot in 0.5 s"), gap
