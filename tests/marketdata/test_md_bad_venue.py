"""The venue MD feed against a misbehaving venue, over a real FIX session on loopback: the
feed (`MarketDataFeed`) on a QuickFIX initiator set up as the gateway sets up its venue
sessions, and a venue of the test's own on a QuickFIX acceptor, which answers every
MarketDataRequest as the test says. The simulator cannot be made to send these (a crossed
snapshot, a RptSeq on a snapshot, an incremental without MDReqID); a real FIX session checks
that they pass QuickFIX (the gateway's data dictionary and venue leniency) as a venue would
send them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import quickfix as fix

from gateway.config.model import ScheduleConfig
from gateway.fix import messages as m
from gateway.fix.application import BaseHandler, SessionApplication, StatusBoard
from gateway.fix.engines import stop_engines
from gateway.fix.messages import Fields
from gateway.fix.settings import (
    VENUE_LENIENCY,
    SessionBlock,
    SettingsFile,
    common_defaults,
    data_dictionary_path,
    free_port,
)
from gateway.marketdata.book import Book
from gateway.marketdata.fanout import OmsMarketData
from gateway.marketdata.feed import (
    BROKEN_BACKOFF_FIRST_S,
    BROKEN_BACKOFF_MAX_S,
    MarketDataFeed,
)
from gateway.marketdata.fix_md import (
    BID,
    NEW,
    OFFER,
    RPT_SEQ,
    MdEntry,
    TopView,
    build_incremental,
    build_snapshot,
)
from gateway.marketdata.instruments import InstrumentRegistry
from tests.conftest import wait_until
from tests.marketdata.test_oms_md_fanout import _Recorder, _request

D = Decimal
BTC = "BTC/USD"
ETH = "ETH/USD"
GOOD_BIDS = [(D("100.0"), D("1")), (D("99.9"), D("2"))]
GOOD_ASKS = [(D("100.2"), D("3")), (D("100.3"), D("4"))]
CROSSED_ASKS = [(D("99.9"), D("3")), (D("100.3"), D("4"))]  # the best ask under the best bid
PRECISION = {BTC: (1, 8), ETH: (2, 8)}


def _view(bids: list[tuple[D, D]], asks: list[tuple[D, D]]) -> TopView:
    book = Book("x")
    book.apply_snapshot(bids, asks)
    view = TopView(10)
    view.reset_from(book)
    return view


class BadVenue(BaseHandler):
    """The venue's side of the MD session. `answer` says how each subscribe is answered:
    "good", "crossed" or "checksum" (a snapshot whose 5041 is not its book's); `then` is sent
    after each BTC/USD snapshot (given its MDReqID: the incrementals that follow it)."""

    def __init__(self) -> None:
        self.answer = "good"
        self.then: Callable[[str], list[fix.Message]] | None = None
        self.requests: list[tuple[float, str, str, str]] = []  # (monotonic, MDReqID, 263, 55)
        self.lock = threading.Lock()
        self.session_id: fix.SessionID | None = None

    def subscribes(self, symbol: str = BTC) -> int:
        with self.lock:
            return sum(1 for _, _, kind, s in self.requests if kind == "1" and s == symbol)

    def on_logon(self, session_id: fix.SessionID) -> None:
        self.session_id = session_id

    def send(self, msg: fix.Message) -> None:
        assert self.session_id is not None
        fix.Session.sendToTarget(msg, self.session_id)

    def on_app_message(self, msg: fix.Message, session_id: fix.SessionID,
                       fields: Fields) -> None:
        t = m.msg_type(msg)
        if t == "x":
            y = m.new_message("y")
            y.setField(320, msg.getField(320))  # SecurityReqID
            y.setField(322, "IL")  # SecurityResponseID
            y.setField(560, "0")  # SecurityRequestResult: valid
            for symbol, (px, qty) in PRECISION.items():
                g = fix.Group(m.NO_RELATED_SYM, m.SYMBOL)
                g.setField(m.SYMBOL, symbol)
                g.setField(2349, str(px))
                g.setField(5010, str(qty))
                g.setField(5011, "0.0001")
                y.addGroup(g)
            self.send(y)
            return
        if t != "V":
            return
        req_id, kind = msg.getField(m.MD_REQ_ID), msg.getField(m.SUBSCRIPTION_REQUEST_TYPE)
        g = fix.Group(m.NO_RELATED_SYM, m.SYMBOL)
        msg.getGroup(1, g)
        symbol = g.getField(m.SYMBOL)
        with self.lock:
            self.requests.append((time.monotonic(), req_id, kind, symbol))
        if kind != "1":
            return
        answer = self.answer if symbol == BTC else "good"
        view = _view(GOOD_BIDS, CROSSED_ASKS if answer == "crossed" else GOOD_ASKS)
        checksum = view.checksum(*PRECISION[symbol])
        w = build_snapshot(req_id, symbol, view, checksum ^ 1 if answer == "checksum" else checksum)
        if answer == "rptseq":
            w.setField(RPT_SEQ, "500")  # the venue numbers its snapshots too
        self.send(w)
        if self.then is not None and symbol == BTC:
            for x in self.then(req_id):
                self.send(x)


class Link:
    """The feed on a real FIX session to `venue`."""

    def __init__(self, tmp: Path, venue: BadVenue, symbols: tuple[str, ...] = (BTC,)) -> None:
        port = free_port()
        sched = ScheduleConfig(mode="non-stop")
        acc_defaults = common_defaults(connection_type="acceptor", store_dir=tmp / "venue",
                                       log_dir=None, schedule=sched,
                                       extra={"SocketAcceptPort": str(port), "HeartBtInt": "30"})
        acc_settings = SettingsFile(acc_defaults, [SessionBlock("KRAKEN-MD", "FIXGW", {})]).write(
            tmp / "venue.cfg")
        ini_defaults = common_defaults(connection_type="initiator", store_dir=tmp / "gw",
                                       log_dir=None, schedule=sched,
                                       extra={"HeartBtInt": "30", "ReconnectInterval": "1",
                                              **VENUE_LENIENCY})
        ini_settings = SettingsFile(ini_defaults, [SessionBlock(
            "FIXGW", "KRAKEN-MD", {"SocketConnectHost": "127.0.0.1",
                                   "SocketConnectPort": str(port), "ResetOnLogon": "Y"})]).write(
            tmp / "gw.cfg")
        self.venue = venue
        self.feed = MarketDataFeed(symbols, 10, InstrumentRegistry(), stale_after_s=60.0)
        self._keep: list[object] = []
        acc_app = SessionApplication(venue, "venue-sim", StatusBoard())
        acc_store = fix.FileStoreFactory(acc_settings)
        self.acceptor = fix.ThreadedSocketAcceptor(acc_app, acc_store, acc_settings)
        ini_app = SessionApplication(self.feed, "venue", StatusBoard())
        ini_store = fix.FileStoreFactory(ini_settings)
        self.initiator = fix.SocketInitiator(ini_app, ini_store, ini_settings)
        self._keep += [acc_app, acc_store, acc_settings, ini_app, ini_store, ini_settings]

    def start(self) -> None:
        self.acceptor.start()
        self.initiator.start()
        wait_until(self.feed.logged_on, what="the MD session logged on")

    def stop(self) -> None:
        self.feed.stop()
        stop_engines([self.initiator, self.acceptor])
        # The engines go before the applications and stores they use (QuickFIX's objects).
        del self.initiator, self.acceptor
        self._keep.clear()


@pytest.fixture
def venue() -> BadVenue:
    return BadVenue()


@pytest.fixture
def link(tmp_path: Path, venue: BadVenue) -> Iterator[Link]:
    lk = Link(tmp_path, venue)
    try:
        yield lk
    finally:
        lk.stop()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "fixgw.marketdata" and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("fault", ["crossed", "checksum"])
def test_a_venue_that_keeps_sending_a_broken_snapshot_is_resubscribed_with_backoff(
        link: Link, venue: BadVenue, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    """Every snapshot the venue sends is crossed (or fails its checksum). It was resubscribed
    the moment it failed, in a tight loop: thousands of MarketDataRequests a second, a warning
    each. Now the resubscribes back off (immediately once, then BROKEN_BACKOFF_FIRST_S,
    doubling): over a 3 s window only a handful, one warning for the episode, and the book
    unusable throughout (no mid for the gate, an empty snapshot for an OMS, unhealthy for the
    failover). A good snapshot afterwards brings the book back."""
    caplog.set_level(logging.DEBUG, logger="fixgw.marketdata")
    venue.answer = fault
    feed = link.feed
    book = feed.books[BTC]
    fanout = OmsMarketData(feed)
    try:
        link.start()
        wait_until(lambda: venue.subscribes() >= 3, what="the broken snapshot resubscribed")
        start = venue.subscribes()
        window_end = time.monotonic() + 3.0
        while time.monotonic() < window_end:  # the book stays unusable while it backs off
            assert book.mid() is None and book.top() == (None, None)
            assert feed.health_problem() is not None
            time.sleep(0.05)
        in_window = venue.subscribes() - start
        # 0, 0.25, 0.5, 1, 2 s apart: at most 5 in any 3 s (it was thousands).
        assert in_window <= 5, f"{in_window} MarketDataRequests in 3 s: no backoff"
        oms = _Recorder()
        fanout.on_request(_request("R1", BTC), "FIXGW->OMS", oms)
        assert fanout.drained(5) and oms.got[-1][268] == "0"  # withdrawn: no levels
        failed = [w for w in _warnings(caplog) if "crossed" in w or "checksum" in w]
        assert len(failed) == 1, failed  # the first failure; the repeats are debug lines

        venue.answer = "good"
        wait_until(lambda: book.mid() == D("100.1"), timeout=BROKEN_BACKOFF_MAX_S + 10,
                   what="the book recovered from the good snapshot")
        assert feed.health_problem() is None
        assert book.depth(10) == ((tuple(GOOD_BIDS)), tuple(GOOD_ASKS))
        assert fanout.drained(5) and oms.book().top(5) == (GOOD_BIDS, GOOD_ASKS)
    finally:
        fanout.close()
    assert BROKEN_BACKOFF_FIRST_S < 1


def test_a_snapshot_with_rptseq_is_the_baseline_of_the_incrementals(
        link: Link, venue: BadVenue) -> None:
    """The venue's snapshot carries RptSeq 500 and its next incremental 501: in sequence. It
    was taken for a gap (501 after 0): the book emptied and resubscribed, again and again."""
    venue.answer = "rptseq"
    venue.then = lambda req_id: [
        build_incremental(req_id, BTC, [MdEntry(NEW, BID, D("100.1"), D("5"))], 501, None)]
    link.start()
    wait_until(lambda: link.feed.books[BTC].top().bid == (D("100.1"), D("5")),
               what="the incremental after the snapshot applied")
    assert venue.subscribes() == 1 and not link.feed.integrity_events


def _x_without_req_id(symbol: str, entries: list[MdEntry], rpt_seq: int, *,
                      body_symbol: bool) -> fix.Message:
    x = build_incremental("", symbol, entries, rpt_seq, None)
    x.removeField(m.MD_REQ_ID)
    if body_symbol:  # as Kraken sends it
        x.setField(m.SYMBOL, symbol)
    return x


@pytest.mark.parametrize("body_symbol", [True, False])
def test_an_incremental_without_mdreqid_goes_to_the_subscription_of_its_symbol(
        tmp_path: Path, venue: BadVenue, body_symbol: bool,
        caplog: pytest.LogCaptureFixture) -> None:
    """MDReqID (262) is optional in an X: one without it, for BTC/USD, is BTC/USD's update
    (it was dropped, so the book silently fell behind the venue's); one for a symbol we do not
    subscribe is dropped, with a line that says why."""
    lk = Link(tmp_path, venue, (BTC, ETH))
    venue.then = lambda req_id: [
        _x_without_req_id("DOGE/USD", [MdEntry(NEW, BID, D("0.1"), D("5"))], 1,
                          body_symbol=body_symbol),
        _x_without_req_id(BTC, [MdEntry(NEW, OFFER, D("100.1"), D("5"))], 1,
                          body_symbol=body_symbol),
    ]
    try:
        lk.start()
        wait_until(lambda: lk.feed.books[BTC].top().ask == (D("100.1"), D("5")),
                   what="the incremental without MDReqID applied")
        wait_until(lambda: lk.feed.books[ETH].depth(10) == (tuple(GOOD_BIDS), tuple(GOOD_ASKS)),
                   what="ETH/USD's snapshot")  # not touched by BTC/USD's update
        assert not lk.feed.integrity_events
        dropped = [r.getMessage() for r in caplog.records if "DOGE/USD" in r.getMessage()]
        assert dropped and "no subscription" in dropped[0], dropped
    finally:
        lk.stop()


def _with_size(x: fix.Message, size: str) -> fix.Message:
    """`x` with its one entry's MDEntrySize (271) replaced by `size`, as the venue would send
    it (QuickFIX passes any text in it)."""
    text = x.toString()
    assert text.count("\x01271=") == 1
    head, _, tail = text.partition("\x01271=")
    dd = fix.DataDictionary(str(data_dictionary_path()))
    return fix.Message(f"{head}\x01271={size}\x01{tail.partition(chr(1))[2]}", dd, False)


@pytest.mark.parametrize(("size", "why"), [
    ("Infinity", "invalid level 100.1 x Infinity"),
    ("NaN", "invalid level 100.1 x NaN"),
    ("abc", "271='abc' is not a number"),
])
def test_an_update_with_a_size_that_is_not_a_quantity_is_a_broken_book(
        link: Link, venue: BadVenue, size: str, why: str) -> None:
    """An update whose size is not a finite number. "Infinity" went into the book (an offer
    of infinite size, passed on to the OMS); "NaN" and "abc" raised out of the handler after
    part of the update was applied (NaN) or before (abc): the update lost, the book silently
    behind the venue's, still synced. Now each is an unusable update: the book is emptied
    and resubscribed, as for a gap."""
    venue.then = lambda req_id: [_with_size(build_incremental(
        req_id, BTC, [MdEntry(NEW, OFFER, D("100.1"), D("5"))], 1, None), size)]
    link.start()
    wait_until(lambda: link.feed.integrity_events, what="the update found unusable")
    symbol, reason = link.feed.integrity_events[0]
    assert symbol == BTC and reason == f"unusable update: {why}", reason
    # Each good snapshot is followed by the same update: it stays withdrawn, never infinite.
    wait_until(lambda: len(link.feed.integrity_events) >= 3, what="the next failures")
    assert all(lv.qty.is_finite() for lv in link.feed.books[BTC].depth(10).asks)
