"""Market-data failover on FIX *health*, not just logon: a FIX MD session that is logged on but
stalled (it answers no resubscribe), or whose subscriptions the venue refuses, hands the books
to WS after ``failover_after_s``; a quiet one (silent, but answering the watchdog's
resubscribes) does not. The FIX side is a stand-in session the test scripts; the WS side is
the simulator's spot WS face over loopback, as in test_md_failover_unit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
import quickfix as fix

from gateway.fix import messages as m
from gateway.marketdata.book import Book
from gateway.marketdata.feed import MarketDataFeed
from gateway.marketdata.fix_md import TopView, build_snapshot, md_reject
from gateway.marketdata.instruments import Instrument, InstrumentRegistry
from gateway.routing.md_failover import MdFailover, WsBookSource
from tests.conftest import wait_until
from tests.marketdata.test_md_failover_unit import BTC, ETH, Venue, book_is, fast_client

D = Decimal
STALE_AFTER_S = 0.4  # the feed's md_stale_after_s (watch period 0.1 s)
FAILOVER_AFTER_S = 0.6
LEVELS = {BTC: ([(D("100.0"), D("1"))], [(D("100.5"), D("2"))]),
          ETH: ([(D("10.00"), D("3"))], [(D("10.05"), D("4"))])}


class VenueMdSession:
    """The FIX MD session as the feed sees it: logged on; answers each subscribe (35=V 263=1)
    with a snapshot a few ms later while `answering`, or with a 35=Y for the symbols in
    `refuse`; otherwise, stalled, with nothing at all."""

    def __init__(self, feed: MarketDataFeed) -> None:
        self.feed = feed
        self.answering = True
        self.refuse: set[str] = set()
        self.subscribes: list[str] = []

    def send(self, msg: fix.Message) -> bool:
        if msg.getField(m.SUBSCRIPTION_REQUEST_TYPE) == "1":
            req_id = msg.getField(m.MD_REQ_ID)
            symbol = req_id.split("-")[1]
            self.subscribes.append(symbol)
            if self.answering:
                threading.Timer(0.005, self._answer, (req_id, symbol)).start()
        return True

    def _answer(self, req_id: str, symbol: str) -> None:
        if symbol in self.refuse:
            reply = md_reject(req_id, "0", f"EQuery:Unknown asset pair {symbol}")
        else:
            book = Book(symbol)
            book.apply_snapshot(*LEVELS[symbol])
            view = TopView(10)
            view.reset_from(book)
            inst = self.feed.instruments.get(symbol)
            assert inst is not None
            reply = build_snapshot(req_id, symbol, view,
                                   view.checksum(inst.price_decimals, inst.qty_decimals))
        self.feed.on_app_message(reply, None, {})  # type: ignore[arg-type]


@pytest.fixture
def venue() -> Iterator[Venue]:
    v = Venue()
    yield v
    v.server.stop()


@pytest.fixture
def feed() -> Iterator[MarketDataFeed]:
    reg = InstrumentRegistry()
    reg.replace_all([Instrument.from_precision(BTC, 1, 8, D("0.0001"), D("0.1")),
                     Instrument.from_precision(ETH, 2, 8, D("0.001"), D("0.01"))])
    f = MarketDataFeed((BTC, ETH), 10, reg, stale_after_s=STALE_AFTER_S)
    yield f
    f.stop()


@pytest.fixture
def session(feed: MarketDataFeed) -> Iterator[VenueMdSession]:
    """The MD session logs on (as QuickFIX's onLogon would record it) and subscribes."""
    s = VenueMdSession(feed)
    feed._session = s  # type: ignore[assignment]
    feed._session_changed = time.monotonic()
    for symbol in feed.symbols:
        feed._subscribe(symbol)
    wait_until(feed.fix_synced, what="the FIX snapshots")
    yield s
    feed._session = None


@pytest.fixture
def failover(feed: MarketDataFeed, venue: Venue) -> Iterator[tuple[MdFailover, list[str]]]:
    reasons: list[str] = []
    src = WsBookSource(feed, venue.server.url, client_factory=fast_client)
    fo = MdFailover(feed, src, failover_after_s=FAILOVER_AFTER_S, failback_after_s=0.5,
                    on_switch=lambda frm, to, reason, auto: reasons.append(f"{to}: {reason}"),
                    check_interval_s=0.05)
    fo.start()
    yield fo, reasons
    fo.stop()


def test_a_quiet_fix_feed_keeps_the_books(
        feed: MarketDataFeed, session: VenueMdSession,
        failover: tuple[MdFailover, list[str]]) -> None:
    """Nothing moves, so every symbol goes silent and is resubscribed every ~0.5 s; each fresh
    snapshot arrives, so FIX stays healthy and the books stay with it.

    A resubscribe leaves its symbol without a snapshot, i.e. unhealthy, until the answer
    arrives: a few ms here, longer on a loaded machine (late threads), and far short of
    failover_after_s, which is what tolerates it. So health is not sampled at one arbitrary
    instant (that failed under load when the instant fell in such a wait), nor are the
    resubscribes counted after a fixed sleep: the test waits for four watchdog resubscribes of
    each symbol, then for their answers (a stalled venue would never answer), and the policy
    must not have switched at any point meanwhile."""
    fo, reasons = failover
    wait_until(lambda: all(session.subscribes.count(s) >= 1 + 4 for s in (BTC, ETH)),
               timeout=30, what="four watchdog resubscribes of each symbol")
    wait_until(lambda: feed.health_problem() is None, timeout=5,
               what="the answers to the latest resubscribes")
    assert fo.active == "fix" and reasons == []


def test_a_logged_on_but_stalled_fix_feed_fails_over_to_ws_and_back(
        feed: MarketDataFeed, venue: Venue, session: VenueMdSession,
        failover: tuple[MdFailover, list[str]]) -> None:
    """The session stays logged on but the venue stops answering: the watchdog's resubscribes
    go unanswered, so after stale_after_s + failover_after_s the books move to WS, and back
    to FIX once the venue answers again."""
    fo, reasons = failover
    session.answering = False
    t0 = time.monotonic()
    # On the switch's announcement: the policy's `active` changes a moment before it.
    wait_until(lambda: fo.active == "ws" and reasons, what="failover to WS", timeout=10)
    assert time.monotonic() - t0 >= STALE_AFTER_S + FAILOVER_AFTER_S
    assert feed.logged_on()
    (reason,) = reasons
    assert reason.startswith("ws: FIX market data unhealthy for "), reason
    assert reason.endswith("although logged on: BTC/USD has no snapshot since its "
                           "(re)subscribe"), reason
    wait_until(lambda: book_is(feed, venue, BTC) and book_is(feed, venue, ETH),
               what="the books over WS")

    session.answering = True  # the next watchdog resubscribes are answered
    wait_until(lambda: fo.active == "fix" and len(reasons) == 2, what="failback to FIX",
               timeout=10)
    assert reasons[1].startswith("fix: FIX market-data session logged on and stable for ")
    assert feed.books[BTC].top() == ((D("100.0"), D("1")), (D("100.5"), D("2")))


def test_a_symbol_the_venue_refuses_fails_over_to_ws(
        feed: MarketDataFeed, venue: Venue, session: VenueMdSession,
        failover: tuple[MdFailover, list[str]]) -> None:
    fo, reasons = failover
    session.refuse.add(ETH)
    feed.resubscribe(ETH, "stale feed: no update for 12.0 s")  # answered with a 35=Y
    wait_until(lambda: fo.active == "ws" and reasons, what="failover to WS", timeout=10)
    (reason,) = reasons
    assert reason.endswith(f"although logged on: {ETH} refused by the venue"), reason
    wait_until(lambda: book_is(feed, venue, ETH), what="ETH over WS")
    time.sleep(3 * STALE_AFTER_S)  # refused: not resubscribed as stale, retried after 1 min
    assert fo.active == "ws" and len(reasons) == 1
