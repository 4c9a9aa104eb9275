"""The OMS market-data fan-out (gateway.marketdata.fanout) on its own, with a stand-in feed:
subscriptions end when the OMS session logs out (rules of engagement, section 3), an OMS
that stops reading holds up neither the venue thread nor the other OMS sessions, requests that
cannot be served as asked are rejected, and a book the feed finds broken is withdrawn."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from types import SimpleNamespace

import pytest
import quickfix as fix

from gateway.fix import messages as m
from gateway.marketdata.book import Book
from gateway.marketdata.fanout import OmsMarketData
from gateway.marketdata.feed import STALE, MarketDataFeed
from gateway.marketdata.fix_md import (
    MdEntry,
    TopView,
    build_incremental,
    build_snapshot,
    md_request,
)
from gateway.marketdata.instruments import Instrument, InstrumentRegistry
from tests.conftest import tag_fields, wait_until
from tests.integration.test_market_data import OmsBook

D = Decimal
SYMBOL, OTHER = "BTC/USD", "ETH/USD"


def _request(req_id: str, symbol: str = SYMBOL, update_type: str = "1") -> fix.Message:
    return md_request(req_id, symbol, "1", 5, (), update_type)


def _book(symbol: str = SYMBOL) -> Book:
    book = Book(symbol, max_depth=10)
    book.apply_snapshot([(D("100") - i, D("1")) for i in range(5)],
                        [(D("101") + i, D("1")) for i in range(5)])
    return book


@pytest.fixture
def book() -> Book:
    return _book()


@pytest.fixture
def fanout(book: Book) -> Iterator[OmsMarketData]:
    feed = SimpleNamespace(books={SYMBOL: book, OTHER: _book(OTHER)}, depth=10, instruments={},
                           listeners=[])
    md = OmsMarketData(feed, outbox_limit=20)  # type: ignore[arg-type]
    try:
        yield md
    finally:
        md.close()


def _move(book: Book, fanout: OmsMarketData, i: int) -> None:
    """One venue update: the best bid's size changes (what the feed does, then tells us)."""
    book.apply_update("bid", D("100"), D(2 + i))
    fanout.on_update(SYMBOL, book, [])


class _Recorder:
    """An OMS session's send: what it got, as {tag: value} per message."""

    def __init__(self) -> None:
        self.got: list[dict[int, str]] = []
        self.raw: list[str] = []

    def __call__(self, msg: fix.Message) -> None:
        self.got.append({**tag_fields(msg), 35: m.msg_type(msg)})
        self.raw.append(msg.toString())

    def book(self) -> OmsBook:
        """The book an OMS builds from all it got (RptSeq-checked)."""
        book = OmsBook()
        for raw in self.raw:
            book.apply(raw)
        return book

    def types(self) -> list[str]:
        return [f"{f[35]}:{f.get(262)}" for f in self.got]


def _in_thread(work: Callable[[], None], timeout: float = 5.0) -> bool:
    """Run `work` as the venue thread would; True if it returned within `timeout`."""
    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive()


def test_a_subscription_from_before_a_logout_is_not_revived_by_a_new_one(
        book: Book, fanout: OmsMarketData) -> None:
    got: list[str] = []

    def send(msg: fix.Message) -> None:
        got.append(f"{m.msg_type(msg)}:{msg.getField(m.MD_REQ_ID)}")

    fanout.on_request(_request("OLD"), "FIXGW->OMS", send)
    assert fanout.drained(5)  # sent by the OMS's outbox thread
    fanout.drop("FIXGW->OMS")  # logged out; the book has not moved since
    fanout.on_request(_request("NEW"), "FIXGW->OMS", send)
    assert fanout.drained(5)
    assert got == ["W:OLD", "W:NEW"]
    book.apply_update("bid", D("100"), D("2"))
    fanout.on_update(SYMBOL, book, [])
    assert fanout.drained(5)
    assert got[2:] == ["X:NEW"]
    assert fanout.subscriber_count() == 1


def test_an_oms_that_stops_reading_holds_up_neither_the_feed_nor_the_others(
        book: Book, fanout: OmsMarketData, caplog: pytest.LogCaptureFixture) -> None:
    """The stalled OMS's send blocks as a socket write to a full TCP buffer does. The venue
    thread's calls return at once, the other OMS gets every update, and the stalled one, once
    it reads again, gets a fresh snapshot of the book as it is then instead of the backlog."""
    reading = threading.Event()
    stalled: list[str] = []
    healthy: list[str] = []

    def stalled_send(msg: fix.Message) -> None:
        reading.wait()
        stalled.append(msg.toString())

    def venue_thread() -> None:
        fanout.on_request(_request("S"), "FIXGW->SLOW", stalled_send)
        fanout.on_request(_request("H"), "FIXGW->OMS", lambda msg: healthy.append(msg.toString()))
        for i in range(100):  # five times the outbox limit
            _move(book, fanout, i)
            # The other OMS reads: it has each update before the next (it never overflows).
            wait_until(lambda n=i + 2: len(healthy) == n, 2, "the reading OMS's update", 0.001)

    caplog.set_level(logging.WARNING, "fixgw.marketdata.oms")
    try:
        assert _in_thread(venue_thread), "the venue thread is blocked by an OMS that does not read"
        assert fanout.drained(0.2) is False  # the stalled OMS's outbox is still busy
        healthy_book = OmsBook()
        for raw in healthy:
            healthy_book.apply(raw)
        assert healthy_book.snapshots == 1 and healthy_book.rpt_seq == 100
        assert healthy_book.top(5) == tuple(list(side) for side in book.depth(5))
        assert stalled == []
    finally:
        reading.set()  # the OMS reads again
    assert fanout.drained(5)
    stalled_book = OmsBook()
    for raw in stalled:
        stalled_book.apply(raw)
    # Its first snapshot (the write it was blocked in), then the fresh one, no stale backlog.
    assert [raw.split("\x0135=")[1][0] for raw in stalled] == ["W", "W"]
    assert stalled_book.top(5) == tuple(list(side) for side in book.depth(5))
    _move(book, fanout, 100)  # and the updates go on from the fresh snapshot
    assert fanout.drained(5)
    stalled_book.apply(stalled[-1])
    assert stalled_book.rpt_seq == 1
    assert stalled_book.top(5) == tuple(list(side) for side in book.depth(5))
    warnings = [r.getMessage() for r in caplog.records if "not reading" in r.getMessage()]
    assert len(warnings) == 1 and "FIXGW->SLOW" in warnings[0], warnings


def test_a_logout_empties_the_outbox_and_close_ends_the_senders(
        book: Book, fanout: OmsMarketData) -> None:
    reading, sending = threading.Event(), threading.Event()
    got: list[str] = []

    def send(msg: fix.Message) -> None:
        sending.set()
        reading.wait()
        got.append(m.msg_type(msg))

    fanout.on_request(_request("S"), "FIXGW->SLOW", send)
    assert sending.wait(5)
    for i in range(5):
        _move(book, fanout, i)  # queued behind the blocked snapshot
    fanout.drop("FIXGW->SLOW")
    reading.set()
    assert fanout.drained(5)
    assert got == ["W"]  # the one being sent at the logout; the queued updates are gone
    fanout.close()
    assert not [t for t in threading.enumerate() if t.name == "md-out-FIXGW->SLOW"]


def test_a_reused_md_req_id_is_rejected_and_the_live_subscription_stays(
        book: Book, fanout: OmsMarketData) -> None:
    oms = _Recorder()
    fanout.on_request(_request("R1", SYMBOL), "FIXGW->OMS", oms)
    fanout.on_request(_request("R1", OTHER), "FIXGW->OMS", oms)
    assert fanout.drained(5)
    assert oms.types() == ["W:R1", "Y:R1"]
    rej = oms.got[1]
    assert rej[281] == "1"  # duplicate MDReqID
    assert "R1" in rej[58] and SYMBOL in rej[58], rej[58]
    _move(book, fanout, 0)  # the first book still moves
    assert fanout.drained(5)
    assert oms.types()[2:] == ["X:R1"] and oms.got[2][55] == SYMBOL
    assert fanout.subscriber_count() == 1


def test_a_subscription_for_full_refreshes_only_is_rejected(
        book: Book, fanout: OmsMarketData) -> None:
    """265=0 would get incrementals it did not ask for: refused, with what to send instead."""
    oms = _Recorder()
    fanout.on_request(_request("F1", update_type="0"), "FIXGW->OMS", oms)
    assert fanout.drained(5)
    assert oms.types() == ["Y:F1"]
    assert oms.got[0][281] == "6"  # unsupported MDUpdateType
    assert "265=1" in oms.got[0][58], oms.got[0][58]
    assert fanout.subscriber_count() == 0


def test_a_quiet_book_resynced_as_stale_is_not_withdrawn() -> None:
    """A quiet market goes stale every md_stale_after_s: its levels were verified, and the
    fresh snapshot follows in milliseconds. The OMS keeps its book, no empty W in between."""
    registry = InstrumentRegistry()
    registry.replace_all([Instrument.from_precision(SYMBOL, 1, 8, D("0.0001"), D("0.1"))])
    feed = MarketDataFeed((SYMBOL,), 10, registry, stale_after_s=3600)
    fanout = OmsMarketData(feed)
    oms = _Recorder()
    try:
        feed._subscribe(SYMBOL)
        (_, req_id, _, _), = feed.subscriptions()
        view = TopView(10)
        view.reset_from(_book())
        feed.on_app_message(build_snapshot(req_id, SYMBOL, view, view.checksum(1, 8)),
                            None, {})  # type: ignore[arg-type]
        fanout.on_request(_request("R1"), "FIXGW->OMS", oms)
        assert fanout.drained(5)
        feed.resubscribe(SYMBOL, f"{STALE}: no update for 12.0 s")
        assert fanout.drained(5)
        assert oms.types() == ["W:R1"] and oms.book().top(5) != ([], [])
    finally:
        fanout.close()
        feed.stop()


def test_a_book_the_feed_finds_broken_is_withdrawn_until_its_fresh_snapshot() -> None:
    """A real feed: the venue's snapshot, then an integrity failure (what the feed does on a
    checksum mismatch, an RptSeq gap, a crossed or stale book). The OMS gets an empty W at
    once, no update while the book is dead, and the fresh W once the venue's snapshot is in."""
    registry = InstrumentRegistry()
    registry.replace_all([Instrument.from_precision(SYMBOL, 1, 8, D("0.0001"), D("0.1"))])
    feed = MarketDataFeed((SYMBOL,), 10, registry, stale_after_s=3600)
    fanout = OmsMarketData(feed)
    oms, late = _Recorder(), _Recorder()

    def venue_snapshot(book: Book) -> None:
        (_, req_id, _, _), = feed.subscriptions()
        view = TopView(10)
        view.reset_from(book)
        feed.on_app_message(build_snapshot(req_id, SYMBOL, view, view.checksum(1, 8)),
                            None, {})  # type: ignore[arg-type]

    try:
        feed._subscribe(SYMBOL)  # no session: registers the venue subscription only
        venue_snapshot(_book())
        fanout.on_request(_request("R1"), "FIXGW->OMS", oms)
        assert fanout.drained(5) and oms.book().top(5) == tuple(
            list(side) for side in feed.books[SYMBOL].depth(5))

        feed.resubscribe(SYMBOL, "checksum mismatch: venue 1, book 2")
        feed.books[SYMBOL].apply_update("bid", D("100"), D("7"))  # a stray: not sent
        fanout.on_update(SYMBOL, feed.books[SYMBOL], [])
        fanout.on_request(_request("R2"), "FIXGW->OMS2", late)  # subscribes meanwhile
        assert fanout.drained(5)
        assert oms.types() == ["W:R1", "W:R1"] and oms.got[1][268] == "0"
        assert oms.book().top(5) == ([], [])
        assert late.types() == ["W:R2"] and late.got[0][268] == "0"

        fresh = Book(SYMBOL)
        fresh.apply_snapshot([(D("200.0"), D("1"))], [(D("200.5"), D("2"))])
        venue_snapshot(fresh)  # the resubscription's snapshot
        (_, req_id, _, _), = feed.subscriptions()
        feed.on_app_message(build_incremental(req_id, SYMBOL, [
            MdEntry("0", "0", D("199.9"), D("3"))], 1, None), None, {})  # type: ignore[arg-type]
        assert fanout.drained(5)
        for got in (oms, late):
            assert got.types()[-2:] == [f"W:{got.got[0][262]}", f"X:{got.got[0][262]}"]
            book = got.book()
            assert book.rpt_seq == 1
            assert book.top(5) == ([(D("200.0"), D("1")), (D("199.9"), D("3"))],
                                   [(D("200.5"), D("2"))])
    finally:
        fanout.close()
        feed.stop()


def _snapshot_request(req_id: str) -> fix.Message:
    """A 263=0 request: one snapshot, no subscription (the resync does not redo it)."""
    v = _request(req_id)
    v.setField(263, "0")
    return v


def test_an_overflow_drops_book_traffic_but_never_the_answers_to_the_omss_requests(
        book: Book, fanout: OmsMarketData) -> None:
    """The OMS does not read (its send blocks) while book updates pile up to the outbox limit
    (20 here) and it asks for a one-off snapshot (263=0) and for a symbol the gateway does not
    carry. The overflow drops the queued updates; the W answering the 263=0 and the Y for the
    unknown symbol are still sent once it reads again (the resync re-snapshots subscriptions
    only, so a dropped answer would never come), and its subscription is resynced."""
    reading, sending = threading.Event(), threading.Event()
    oms = _Recorder()

    def send(msg: fix.Message) -> None:
        sending.set()
        reading.wait()
        oms(msg)

    try:
        fanout.on_request(_request("S1"), "FIXGW->SLOW", send)
        assert sending.wait(5)  # its snapshot is in the blocked send
        for i in range(19):
            _move(book, fanout, i)
        fanout.on_request(_snapshot_request("ONCE"), "FIXGW->SLOW", send)
        fanout.on_request(_request("U1", "DOGE/USD"), "FIXGW->SLOW", send)
        for i in range(19, 24):
            _move(book, fanout, i)  # the first of these overflows the outbox
    finally:
        reading.set()
    assert fanout.drained(5)
    types = oms.types()
    assert "W:ONCE" in types and "Y:U1" in types, types
    assert not [t for t in types if t.startswith("X:")], types  # the backlog was dropped
    assert types[0] == "W:S1" and types[-1] == "W:S1", types  # first and resync snapshots
    reject = oms.got[types.index("Y:U1")]
    assert reject[281] == "0" and "DOGE/USD" in reject[58]
    once = OmsBook()
    once.apply(oms.raw[types.index("W:ONCE")])
    assert once.top(5)[0][0][0] == D("100")
    resynced = OmsBook()
    resynced.apply(oms.raw[-1])
    assert resynced.top(5) == tuple(list(side) for side in book.depth(5))
