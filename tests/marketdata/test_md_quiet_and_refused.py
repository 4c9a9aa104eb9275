"""The market-data feed's log for the two troubles that are not a stall, on a fake clock (an
hour takes no time; the test makes the watchdog's checks itself), with a stand-in session that
records what the feed sends and answers as the test says:

* a quiet symbol on a live session: nobody trades it, so the watchdog resubscribes it every
  `md_stale_after_s` and the venue answers each with a good snapshot. Normal for an illiquid
  symbol: the check stays, but it is not a warning; only an unanswered one is (the stall).
* a symbol the venue refuses (35=Y): said once as refused with the venue's reason, retried on
  the episode schedule (not called stale), the OMS's book withdrawn once and revived when the
  venue takes the subscription again."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal

import pytest

from gateway.marketdata.fanout import OmsMarketData
from gateway.marketdata.feed import REFUSED_RETRY_S, SOURCE_LOST, STALE, MarketDataFeed
from gateway.marketdata.fix_md import md_reject
from gateway.marketdata.instruments import Instrument, InstrumentRegistry
from tests.marketdata.test_feed_integrity import FakeSession
from tests.marketdata.test_md_failover_unit import fix_snapshot
from tests.marketdata.test_md_source_lost import FakeClock, _withdrawn
from tests.marketdata.test_oms_md_fanout import _Recorder, _request

D = Decimal
BTC = "BTC/USD"
BIDS = [(D("100.0"), D("1")), (D("99.9"), D("2"))]
ASKS = [(D("100.2"), D("3")), (D("100.3"), D("4"))]
HOUR = 3600


class Venue:
    """The feed's FIX MD session on a fake clock: the test and the feed share `clock`."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        reg = InstrumentRegistry()
        reg.replace_all([Instrument.from_precision(BTC, 1, 8, D("0.0001"), D("0.1"))])
        self.feed = MarketDataFeed((BTC,), 10, reg, stale_after_s=10.0, clock=self.clock)
        self.feed.stop()  # the test makes the watchdog's checks itself, on its clock
        self.session = FakeSession()
        self.feed._session = self.session  # type: ignore[assignment]
        self.feed._subscribe(BTC)
        fix_snapshot(self.feed, BTC, BIDS, ASKS)
        self.fanout = OmsMarketData(self.feed)
        self.oms = _Recorder()
        self.fanout.on_request(_request("R1"), "FIXGW->OMS", self.oms)

    def subscribes(self) -> list[str]:
        return [req for req, kind in self.session.sent if kind == "1"]

    def refuse(self, req_id: str, text: str) -> None:
        self.feed.on_app_message(md_reject(req_id, "0", text), None, {})  # type: ignore[arg-type]


@pytest.fixture
def venue() -> Iterator[Venue]:
    v = Venue()
    try:
        yield v
    finally:
        v.fanout.close()
        v.feed._session = None


def _lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    """The feed's lines at `level` and above."""
    return [r.getMessage() for r in caplog.records
            if r.name == "fixgw.marketdata" and r.levelno >= level]


def test_a_quiet_symbol_whose_resubscribes_are_answered_is_no_warning(
        venue: Venue, caplog: pytest.LogCaptureFixture) -> None:
    """An hour of a quiet BTC/USD (md_stale_after_s = 10): the watchdog still resubscribes it
    every 11 s and each is answered with the same good snapshot; the log gets no warning at
    all (it got one per resubscribe, 327 in the hour), only debug lines for the checks. The
    OMS's book is never withdrawn, and each answer makes the shared book fresh for the gate
    again (its age, `Book.last_update`, restarts: that is today's rule, kept). An answer with
    other levels than the book held means updates were missed, not a quiet market: that is a
    warning. And when the venue stops answering, the first unanswered check is the one
    warning (the stall)."""
    caplog.set_level(logging.DEBUG, "fixgw.marketdata")
    feed, book = venue.feed, venue.feed.books[BTC]
    caplog.clear()
    answered = 0
    for _ in range(HOUR):  # the watchdog's checks, one a second
        venue.clock.now += 1.0
        sent = len(venue.subscribes())
        stamp = book.last_update
        feed._resubscribe_stale()
        if len(venue.subscribes()) > sent:  # a resubscribe: the venue answers it at once
            fix_snapshot(feed, BTC, BIDS, ASKS)
            answered += 1
            assert book.last_update != stamp  # fresh for the gate again
    assert answered > HOUR / 11 - 2
    assert _lines(caplog) == []
    said = _lines(caplog, logging.DEBUG)
    assert len(said) == 2 * answered  # the check, and its answer
    assert said[:2] == [f"market data {BTC}: {STALE}: no update for 11.0 s; resubscribing for "
                        f"a fresh snapshot",
                        f"market data {BTC}: the staleness check was answered with the book "
                        f"as held: a quiet market"]
    assert said == said[:2] * answered
    assert sum(r.startswith(STALE) for _, r in feed.integrity_events) == answered
    assert venue.fanout.drained(5)
    assert len(venue.oms.got) == 1 + answered  # the first snapshot, then one per answer
    assert all(f[35] == "W" and f[268] != "0" for f in venue.oms.got)
    assert venue.oms.book().top(5) == (BIDS, ASKS) and not venue.oms.book().withdrawn
    assert feed.health_problem() is None

    caplog.clear()  # the venue's book moved and the updates never came: a warning
    sent = len(venue.subscribes())
    while len(venue.subscribes()) == sent:
        venue.clock.now += 1.0
        feed._resubscribe_stale()
    moved = [(D("100.1"), D("1"))]
    fix_snapshot(feed, BTC, moved, ASKS)
    assert _lines(caplog) == [
        f"market data {BTC}: {STALE}: no update for 11.0 s, and the snapshot answering the "
        f"resubscribe differs from the book held: updates were missed; the book is the "
        f"snapshot's now"]
    assert venue.fanout.drained(5) and venue.oms.book().top(5) == (moved, ASKS)

    caplog.clear()  # the venue stops answering: the unanswered check is the warning
    for _ in range(25):
        venue.clock.now += 1.0
        feed._resubscribe_stale()
    warned = _lines(caplog)
    assert len(warned) == 1 and warned[0].startswith(
        f"market data {BTC}: {SOURCE_LOST}: no snapshot 11.0 s after subscribing"), warned
    assert venue.fanout.drained(5) and _withdrawn(venue.oms)


def test_a_refused_symbol_is_said_once_retried_on_the_schedule_and_withdrawn_once(
        venue: Venue, caplog: pytest.LogCaptureFixture) -> None:
    """The venue refuses BTC/USD's subscription (35=Y) and every retry, for an hour: the log
    gets one error with the venue's reason; the symbol is retried every minute, with a
    reminder line after a minute, then at doubling intervals up to REMINDER_MAX_S; never
    "stale feed" (the old code resubscribed it as stale every 11 s, a warning and the venue's
    error each time). The OMS's book is withdrawn once (an empty W) and stays so, also for a
    late subscriber; FIX health still says refused (the failover's input). When the venue
    takes it again, one line, and the OMS gets the book."""
    caplog.set_level(logging.DEBUG, "fixgw.marketdata")
    feed = venue.feed
    text = "EQuery:Unknown asset pair"
    caplog.clear()
    venue.refuse(venue.subscribes()[-1], text)
    t0 = venue.clock.now
    retries = []
    for _ in range(HOUR):  # the watchdog's checks, one a second; every retry refused at once
        venue.clock.now += 1.0
        sent = len(venue.subscribes())
        feed._resubscribe_stale()
        if len(venue.subscribes()) > sent:
            retries.append(venue.clock.now - t0)
            venue.refuse(venue.subscribes()[-1], text)

    assert retries == [REFUSED_RETRY_S * n for n in range(1, 61)]
    said = _lines(caplog)
    assert said[0] == (
        f"market data {BTC}: MarketDataRequest MD-{BTC}-1 rejected by the venue: {text} "
        f"(reason 0): refused, not stale; the OMS's book is withdrawn until it is taken; "
        f"retrying every 60.0 s")
    assert said[1:] == [
        f"market data {BTC}: still refused by the venue after {lasted} ({n} refusals; the "
        f"venue's reason: {text}); retrying every 60.0 s" for n, lasted in (
            (1, "60.0 s"), (2, "2 min 00 s"), (4, "4 min 00 s"), (8, "8 min 00 s"),
            (16, "16 min 00 s"), (31, "31 min 00 s"), (46, "46 min 00 s"))]
    everything = [r.getMessage() for r in caplog.records]
    assert not any(STALE in line for line in everything), everything
    assert not any(r.startswith(STALE) for _, r in feed.integrity_events)
    assert feed.health_problem() == f"{BTC} refused by the venue"
    assert venue.fanout.drained(5) and venue.oms.types() == ["W:R1", "W:R1"]
    assert _withdrawn(venue.oms)
    late = _Recorder()
    venue.fanout.on_request(_request("R2"), "FIXGW->OMS2", late)
    assert venue.fanout.drained(5) and late.types() == ["W:R2"] and _withdrawn(late)

    caplog.clear()  # the venue takes the next retry
    while len(venue.subscribes()) == 1 + len(retries):
        venue.clock.now += 1.0
        feed._resubscribe_stale()
    fix_snapshot(feed, BTC, BIDS, ASKS)
    assert _lines(caplog)[-1] == (f"market data {BTC}: the venue took the subscription after "
                                  f"1 h 01 min 00 s of refusals (61 refusals)")
    assert feed.health_problem() is None
    assert venue.fanout.drained(5)
    for oms in (venue.oms, late):
        assert oms.book().top(5) == (BIDS, ASKS) and not oms.book().withdrawn
