"""The venue MD feed's integrity handling without a venue: W/X messages are handed to
``MarketDataFeed.on_app_message`` as QuickFIX would, and what matters is what the readers of
the books see afterwards, the pre-trade gate above all (through the gateway's own ``_mid``).
Also: listeners that raise, two threads resubscribing one symbol (a stand-in session records
what the venue would get), and the bounded integrity-event and MD-switch records."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from decimal import Decimal
from types import SimpleNamespace

import pytest
import quickfix as fix

from gateway.config.risk import GateConfig
from gateway.fix import messages as m
from gateway.marketdata.book import Book
from gateway.marketdata.fanout import OmsMarketData
from gateway.marketdata.feed import RECENT_INTEGRITY_EVENTS, MarketDataFeed
from gateway.marketdata.fix_md import BID, NEW, OFFER, MdEntry, TopView, build_incremental
from gateway.risk.gate import Gate, GateOrder
from gateway.routing.md_failover import RECENT_SWITCHES, MdFailover, WsBookSource
from gateway.server.gateway import Gateway
from tests.marketdata.conftest import ASKS, BIDS, BTC
from tests.marketdata.test_md_failover_unit import fix_snapshot
from tests.marketdata.test_oms_md_fanout import _request

D = Decimal


class Recorder:
    """An MdListener that keeps what it was told (for a snapshot: the book's level counts)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def on_snapshot(self, symbol: str, book: Book) -> None:
        self.calls.append(("snapshot", f"{symbol} {book.level_counts()}"))

    def on_update(self, symbol: str, book: Book, entries: Sequence[MdEntry]) -> None:
        self.calls.append(("update", symbol))

    def on_integrity(self, symbol: str, reason: str) -> None:
        self.calls.append(("integrity", symbol))


def req_id(feed: MarketDataFeed, symbol: str = BTC) -> str:
    return next(r for s, r, _, _ in feed.subscriptions() if s == symbol)


def incremental(feed: MarketDataFeed, entries: list[MdEntry], rpt_seq: int,
                checksum: int | str | None = "right") -> None:
    """Deliver a venue 35=X for BTC's current subscription; checksum "right" = the one the
    venue's book (ours after the entries) has."""
    if checksum == "right":
        after = Book(BTC)
        d = feed.books[BTC].depth(10)
        after.apply_snapshot(d.bids, d.asks)
        after.apply_updates([("bid" if e.entry_type == BID else "ask", e.price, e.qty)
                             for e in entries])
        view = TopView(10)
        view.reset_from(after)
        checksum = view.checksum(1, 8)
    assert not isinstance(checksum, str)
    feed.on_app_message(build_incremental(req_id(feed), BTC, entries, rpt_seq, checksum),
                        None, {})  # type: ignore[arg-type]


def gate_for(feed: MarketDataFeed) -> Gate:
    """A gate with a 5 % price collar that blocks on a missing or stale book, reading the
    feed's books exactly as the gateway does."""
    stand_in = SimpleNamespace(md_feed=feed)
    return Gate(GateConfig.model_validate({"price_collar_bps": 500}),
                lambda s: Gateway._mid(stand_in, s),  # type: ignore[arg-type]
                lambda s: None)


def limit_buy(price: str) -> GateOrder:
    return GateOrder(BTC, "1", D("0.01"), D(price), "2", "OMS", "ACC")


@pytest.mark.parametrize("fault", ["crossed", "checksum", "gap"])
def test_a_broken_book_is_not_used_until_the_fresh_snapshot(feed: MarketDataFeed,
                                                             fault: str) -> None:
    """Crossed by an update, a checksum mismatch or a RptSeq gap: until the new subscription's
    snapshot the gate finds no book (its stale policy blocks), whatever the update did to the
    levels, and the listeners are told so; the snapshot brings the book back."""
    gate = gate_for(feed)
    rec = Recorder()
    feed.listeners.append(rec)
    before = req_id(feed)
    assert gate.check(limit_buy("100.1")).action == "allow"  # mid 100.1, a sane book

    if fault == "crossed":  # a bid through the asks (a missed delete of the ask)
        incremental(feed, [MdEntry(NEW, BID, D("100.4"), D("1"))], 1)
    elif fault == "checksum":  # the venue's book differs from ours after this update
        incremental(feed, [MdEntry(NEW, OFFER, D("100.1"), D("5"))], 1, checksum=12345)
    else:  # RptSeq 2 after 0: an update is missing, the book no longer matches the venue's
        incremental(feed, [MdEntry(NEW, OFFER, D("100.1"), D("5"))], 2)

    assert req_id(feed) != before  # resubscribed
    d = gate.check(limit_buy("100.1"))
    assert d.action == "block" and d.stale_inputs and d.rule == "price_collar", d.text
    assert d.text.startswith(f"blocked by price_collar: no book for {BTC}")
    book = feed.books[BTC]
    assert book.mid() is None and book.top() == (None, None)
    # An OMS subscribing now gets an empty book, not a copy of the bad one.
    got: list[fix.Message] = []
    fanout = OmsMarketData(feed)
    try:
        fanout.on_request(_request("R1", BTC), "FIXGW->OMS", got.append)
        assert fanout.drained(5)  # sent by the OMS's outbox thread
    finally:
        fanout.close()
    assert [m.get(w, m.NO_MD_ENTRIES) for w in got] == ["0"]
    # Listeners: the integrity event, then the book as it now stands (empty), never an update.
    assert rec.calls == [("integrity", BTC), ("snapshot", f"{BTC} (0, 0)")]
    assert [s for s, _ in feed.integrity_events] == [BTC]

    # Increments of the replaced subscription cannot refill it; the fresh snapshot does.
    feed.on_app_message(build_incremental(before, BTC, [MdEntry(NEW, BID, D("99.0"), D("1"))],
                                          3, None), None, {})  # type: ignore[arg-type]
    assert book.level_counts() == (0, 0)
    fix_snapshot(feed, BTC, [(D("101.0"), D("1"))], [(D("101.2"), D("1"))])
    assert book.mid() == D("101.1")
    assert gate.check(limit_buy("101.1")).action == "allow"


def test_a_broken_shadow_book_stays_out_of_the_shared_one(feed: MarketDataFeed) -> None:
    """While another source owns the books, a FIX book found broken is the FIX shadow: it is
    emptied and resubscribed, the shared book and the listeners are left to the owner."""
    rec = Recorder()
    feed.listeners.append(rec)
    shared = feed.books[BTC]
    feed.hand_over_books("ws")
    incremental(feed, [MdEntry(NEW, BID, D("100.4"), D("1"))], 1)  # crossed
    assert shared.mid() == D("100.1") and rec.calls == []
    assert feed.unsynced_symbols() == [BTC]  # the shadow waits for its fresh snapshot
    assert feed._shadow is not None and feed._shadow[BTC].level_counts() == (0, 0)


class Failing(Recorder):
    """A listener with a bug: every hook raises after recording the call."""

    def on_snapshot(self, symbol: str, book: Book) -> None:
        super().on_snapshot(symbol, book)
        raise RuntimeError("listener bug")

    def on_update(self, symbol: str, book: Book, entries: Sequence[MdEntry]) -> None:
        super().on_update(symbol, book, entries)
        raise RuntimeError("listener bug")

    def on_integrity(self, symbol: str, reason: str) -> None:
        super().on_integrity(symbol, reason)
        raise RuntimeError("listener bug")


@pytest.mark.parametrize(("entry", "reason"), [
    # 100.05 has more decimals than BTC's price precision (1): no checksum can be computed
    (MdEntry(NEW, BID, D("100.05"), D("1")), "checksum mismatch: venue 1, book not computable"),
    (MdEntry(NEW, BID, D("99.8"), D("-1")), "unusable update: invalid level 99.8 x -1"),
])
def test_an_update_the_book_cannot_take_is_a_broken_book(feed: MarketDataFeed, entry: MdEntry,
                                                         reason: str) -> None:
    """The exception used to escape after the book had changed: no resubscribe, no integrity
    event, listeners not told, the subscription still synced, and every later message the
    same. Now it is an integrity failure like a checksum mismatch."""
    rec = Recorder()
    feed.listeners.append(rec)
    before = req_id(feed)
    incremental(feed, [MdEntry(NEW, BID, D("99.7"), D("1")), entry], 1, checksum=1)
    assert req_id(feed) != before and feed.unsynced_symbols() == [BTC]
    (symbol, why), = feed.integrity_events
    assert symbol == BTC and why.startswith(reason), why
    assert feed.books[BTC].level_counts() == (0, 0)
    assert rec.calls == [("integrity", BTC), ("snapshot", f"{BTC} (0, 0)")]


def test_a_failing_listener_does_not_keep_the_others_uninformed(
        feed: MarketDataFeed, caplog: pytest.LogCaptureFixture) -> None:
    bad, good = Failing(), Recorder()
    feed.listeners[:] = [bad, good]
    incremental(feed, [MdEntry(NEW, OFFER, D("100.1"), D("1"))], 1)
    incremental(feed, [MdEntry(NEW, BID, D("100.4"), D("1"))], 2)  # crossed
    fix_snapshot(feed, BTC, BIDS, ASKS)
    want = [("update", BTC), ("integrity", BTC), ("snapshot", f"{BTC} (0, 0)"),
            ("snapshot", f"{BTC} (2, 2)")]
    assert bad.calls == want and good.calls == want
    failed = [r.getMessage() for r in caplog.records if "listener" in r.getMessage()]
    assert len(failed) == 4 and all(t.startswith(f"market data {BTC}: listener <") for t in failed)
    assert [t.split(" failed in ")[1].split(";")[0] for t in failed] == [
        "on_update", "on_integrity", "on_snapshot", "on_snapshot"]
    assert feed.unsynced_symbols() == []  # the resync went through


class FakeSession:
    """Records the MarketDataRequests the feed sends (MDReqID, 263), as the venue gets them.
    `hold_next`: the next send waits (up to 1 s) for `release`, as a slow socket would."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.hold_next = False
        self.holding = threading.Event()
        self.release = threading.Event()

    def send(self, msg: fix.Message) -> bool:
        if self.hold_next:
            self.hold_next = False
            self.holding.set()
            self.release.wait(1.0)
        self.sent.append((msg.getField(m.MD_REQ_ID), msg.getField(m.SUBSCRIPTION_REQUEST_TYPE)))
        return True

    def venue_subscriptions(self) -> set[str]:
        """What the venue feeds after these requests, checking each makes sense to it."""
        live: set[str] = set()
        for req, kind in self.sent:
            if kind == "1":
                assert req not in live, f"{req} subscribed twice: {self.sent}"
                live.add(req)
            else:
                assert req in live, f"{req} ended before it was started: {self.sent}"
                live.discard(req)
        return live


@pytest.fixture
def logged_on(feed: MarketDataFeed) -> FakeSession:
    """`feed` with a session that records what it sends and without its stale watchdog, so
    each test decides who resubscribes when."""
    feed.stop()
    feed._watchdog.join(5)
    session = FakeSession()
    feed._session = session  # type: ignore[assignment]
    session.sent.append((req_id(feed), "1"))  # the subscription from before (no session then)
    return session


def test_two_threads_resubscribing_a_symbol_leave_the_venue_one_subscription(
        feed: MarketDataFeed, logged_on: FakeSession) -> None:
    """The stale watchdog resubscribes BTC and its send is slow; meanwhile the QuickFIX thread
    finds the book crossed and resubscribes too. Whatever the order, the venue must end up
    feeding exactly the subscription the feed listens to, and never see a request out of
    order (with the sends outside the lock it got "end B, start B, ..., start A")."""
    session = logged_on
    session.hold_next = True
    watchdog = threading.Thread(target=feed.resubscribe,
                                args=(BTC, "stale feed: no update for 12.0 s"))
    quickfix = threading.Thread(target=feed.resubscribe,
                                args=(BTC, "crossed book after an update"),
                                kwargs={"broken": True})
    watchdog.start()
    assert session.holding.wait(5)
    quickfix.start()
    quickfix.join(0.3)  # with the sends serialised it waits for the watchdog's to finish
    session.release.set()
    watchdog.join(5)
    quickfix.join(5)
    assert session.venue_subscriptions() == {req_id(feed)}
    assert [r for _, r in feed.integrity_events] == ["stale feed: no update for 12.0 s",
                                                     "crossed book after an update"]


class _SpyLock:
    """Wraps the feed's hand-over lock and says when another thread starts waiting for it."""

    def __init__(self, inner: threading.RLock) -> None:
        self.inner = inner
        self.other_waits = threading.Event()
        self.owner = threading.get_ident()

    def __enter__(self) -> None:
        if threading.get_ident() != self.owner:
            self.other_waits.set()
        self.inner.acquire()

    def __exit__(self, *exc: object) -> None:
        self.inner.release()


def test_the_watchdog_leaves_a_subscription_replaced_since_its_scan_alone(
        feed: MarketDataFeed, logged_on: FakeSession) -> None:
    """The watchdog finds BTC silent; before it resubscribes, the QuickFIX thread has (a gap).
    The fresh subscription is waiting for its snapshot and must not be replaced again."""
    session = logged_on
    with feed._lock:
        feed._subs[BTC].last_rx -= 3600 + 5  # silent for longer than stale_after_s
    spy = _SpyLock(feed._owner)
    feed._owner = spy  # type: ignore[assignment]
    with spy:  # the QuickFIX thread, handling a message
        watchdog = threading.Thread(target=feed._resubscribe_stale)
        watchdog.start()
        assert spy.other_waits.wait(5)  # the watchdog has its candidates and waits
        feed.resubscribe(BTC, "sequence gap: RptSeq 7 after 5", broken=True)
    watchdog.join(5)
    assert [r for _, r in feed.integrity_events] == ["sequence gap: RptSeq 7 after 5"]
    assert [kind for _, kind in session.sent] == ["1", "2", "1"]
    assert session.venue_subscriptions() == {req_id(feed)}


def test_integrity_events_keep_the_latest_and_count_them_all(feed: MarketDataFeed) -> None:
    """A flapping feed resubscribes for the life of the process: the list kept for ops is
    bounded, the count is not."""
    n = RECENT_INTEGRITY_EVENTS + 10
    logger = logging.getLogger("fixgw.marketdata")
    logger.disabled = True  # n warnings are not the point here
    try:
        for i in range(n):
            feed.resubscribe(BTC, f"stale feed #{i}")
    finally:
        logger.disabled = False
    assert len(feed.integrity_events) == RECENT_INTEGRITY_EVENTS
    assert feed.integrity_events[0] == (BTC, "stale feed #10")
    assert feed.integrity_events[-1] == (BTC, f"stale feed #{n - 1}")
    assert feed.integrity_event_count == n


def test_md_failover_switches_keep_the_latest_and_count_them_all(feed: MarketDataFeed) -> None:
    fo = MdFailover(feed, WsBookSource(feed, "ws://127.0.0.1:9/v2"), failover_after_s=1,
                    failback_after_s=1)
    n = RECENT_SWITCHES + 3
    for i in range(n):
        fo._announce("fix", "ws", f"switch #{i}", True)
    assert len(fo.switches) == RECENT_SWITCHES and fo.switch_count == n
    assert fo.switches[0][2] == "switch #3" and fo.switches[-1][2] == f"switch #{n - 1}"
