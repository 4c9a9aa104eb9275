"""Market data as a desk consumes it: the venue feed's parsing of what Kraken's dialect may
send, and the OMS fan-out's answers to MarketDataRequests (what it sends, and to whom)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import quickfix as fix

from gateway.fix import messages as m
from gateway.marketdata.book import Book
from gateway.marketdata.fanout import OmsMarketData
from gateway.marketdata.feed import MarketDataFeed
from gateway.marketdata.fix_md import (
    BID,
    NEW,
    OFFER,
    TRADE,
    MdEntry,
    TopView,
    build_incremental,
    build_snapshot,
    md_request,
)
from tests.marketdata.conftest import ASKS, BIDS, BTC
from tests.marketdata.test_md_failover_unit import fix_snapshot
from tests.marketdata.test_oms_md_fanout import _Recorder

D = Decimal


def _req_id(feed: MarketDataFeed) -> str:
    return next(r for s, r, _, _ in feed.subscriptions() if s == BTC)


def request(req_id: str, sub_type: str = "1", depth: int = 10,
            entry_types: tuple[str, ...] = ("0", "1", "2")) -> fix.Message:
    return md_request(req_id, BTC, sub_type, depth, entry_types)


def test_a_venue_snapshot_with_a_trade_entry_does_not_put_the_trade_in_the_asks(
        feed: MarketDataFeed) -> None:
    """We subscribe to 269=0/1/2, and a FIX 4.4 full refresh may carry the last trade (269=2)
    beside the levels. It was read as an ask: a level the venue's book does not have, so the
    checksum failed and the book was emptied and resubscribed, for ever."""
    before = _req_id(feed)
    book = Book(BTC)
    book.apply_snapshot(BIDS, ASKS)
    view = TopView(10)
    view.reset_from(book)
    w = build_snapshot(before, BTC, view, view.checksum(1, 8))
    g = fix.Group(m.NO_MD_ENTRIES, m.MD_ENTRY_TYPE)
    g.setField(m.MD_ENTRY_TYPE, TRADE)
    g.setField(m.MD_ENTRY_PX, "100.1")
    g.setField(m.MD_ENTRY_SIZE, "0.5")
    w.addGroup(g)
    feed.on_app_message(w, None, {})  # type: ignore[arg-type]
    assert _req_id(feed) == before, feed.integrity_events  # not resubscribed
    d = feed.books[BTC].depth(10)
    assert (list(d.bids), list(d.asks)) == (BIDS, ASKS)


def test_an_unsubscribe_of_an_unknown_md_req_id_is_rejected(
        fanout: OmsMarketData) -> None:
    """263=2 naming no live subscription (a typo, one already ended): the OMS is told so
    (35=Y), rather than left believing it stopped a feed that it may still be getting."""
    oms = _Recorder()
    fanout.on_request(request("LIVE"), "FIXGW->OMS", oms)
    fanout.on_request(request("NOPE", "2"), "FIXGW->OMS", oms)
    assert fanout.drained(5)
    assert oms.types() == ["W:LIVE", "Y:NOPE"]
    assert "NOPE" in oms.got[1][58]
    assert fanout.subscriber_count() == 1
    fanout.on_request(request("LIVE", "2"), "FIXGW->OMS", oms)  # a known one: no answer
    assert fanout.drained(5)
    assert oms.types() == ["W:LIVE", "Y:NOPE"] and fanout.subscriber_count() == 0


def test_a_depth_beyond_the_gateways_is_rejected_not_silently_cut(
        fanout: OmsMarketData) -> None:
    """264=25 from a gateway that carries 10 levels: served 10 without a word, the desk took
    the 10th level for the end of the book. Refused with 281=5 (unsupported MarketDepth)."""
    oms = _Recorder()
    fanout.on_request(request("DEEP", depth=25), "FIXGW->OMS", oms)
    fanout.on_request(request("FULL", depth=0), "FIXGW->OMS", oms)  # 0: the full book we have
    assert fanout.drained(5)
    assert oms.types() == ["Y:DEEP", "W:FULL"]
    assert oms.got[0][281] == "5" and "10" in oms.got[0][58]
    assert fanout.subscriber_count() == 1


def test_each_subscription_gets_only_the_entry_types_it_asked_for(
        feed: MarketDataFeed, fanout: OmsMarketData) -> None:
    """An OMS that asks for bids and offers (267: 269=0, 269=1) got the trades too, as 269=2
    entries its book builder does not expect, each one an X (and a RptSeq) of its own."""
    book_only, trades_too = _Recorder(), _Recorder()
    fanout.on_request(request("B", entry_types=("0", "1")), "FIXGW->OMS", book_only)
    fanout.on_request(request("T"), "FIXGW->OMS2", trades_too)
    feed.on_app_message(build_incremental(_req_id(feed), BTC, [
        MdEntry(NEW, TRADE, D("100.2"), D("0.5"), "1")], 1, None), None, {})  # type: ignore[arg-type]
    after = Book(BTC)
    after.apply_snapshot(BIDS, [(D("100.2"), D("2.5")), (D("100.3"), D("4"))])
    view = TopView(10)
    view.reset_from(after)
    feed.on_app_message(build_incremental(_req_id(feed), BTC, [
        MdEntry("1", OFFER, D("100.2"), D("2.5")),
        MdEntry(NEW, TRADE, D("100.2"), D("0.5"), "1")], 2, view.checksum(1, 8)),
        None, {})  # type: ignore[arg-type]
    assert fanout.drained(5)
    assert trades_too.types() == ["W:T", "X:T", "X:T"]
    assert book_only.types() == ["W:B", "X:B"]
    assert book_only.got[1][269] == OFFER and book_only.got[1][83] == "1"
    assert "269=2" not in book_only.raw[1]
    assert book_only.book().top(5) == ([*BIDS], [(D("100.2"), D("2.5")), (D("100.3"), D("4"))])


def test_a_request_for_entry_types_the_gateway_does_not_carry_is_rejected(
        fanout: OmsMarketData) -> None:
    """269=4 (opening price) only: nothing the gateway could ever send; 281=8."""
    oms = _Recorder()
    fanout.on_request(request("OPEN", entry_types=("4",)), "FIXGW->OMS", oms)
    assert fanout.drained(5)
    assert oms.types() == ["Y:OPEN"] and oms.got[0][281] == "8"
    assert fanout.subscriber_count() == 0



def test_a_level_the_checksum_cannot_cover_still_reaches_the_oms(
        feed: MarketDataFeed, fanout: OmsMarketData) -> None:
    """A venue X without a checksum (5041 is Kraken's, not FIX's) brings a level finer than
    the InstrumentList's precision. Our checksum for the OMS could not be computed and the
    fan-out raised after moving the OMS's view: the X was never sent, nor any other while the
    level stayed in its top N, and its book drifted from ours without a gap to see. It gets
    the entries now, without a 5041."""
    oms = _Recorder()
    fanout.on_request(request("R"), "FIXGW->OMS", oms)
    feed.on_app_message(build_incremental(_req_id(feed), BTC, [
        MdEntry(NEW, "0", D("100.05"), D("1"))], 1, None), None, {})  # type: ignore[arg-type]
    feed.on_app_message(build_incremental(_req_id(feed), BTC, [
        MdEntry("1", "0", D("100.0"), D("3"))], 2, None), None, {})  # type: ignore[arg-type]
    assert fanout.drained(5)
    assert oms.types() == ["W:R", "X:R", "X:R"]
    assert 5041 not in oms.got[1] and 5041 not in oms.got[2]
    d = feed.books[BTC].depth(5)
    assert oms.book().top(5) == (list(d.bids), list(d.asks))
    assert oms.book().rpt_seq == 2


@pytest.mark.parametrize("ask", ["100.0", "99.9"])  # locked (same price both sides), crossed
def test_a_crossed_venue_snapshot_is_a_broken_book(feed: MarketDataFeed, fanout: OmsMarketData,
                                                   ask: str) -> None:
    """An update that crosses the book has it emptied and resubscribed; a snapshot that does
    (its checksum right: it is the book the venue sent) went to the gate and to every OMS as
    it was, negative spread and all."""
    oms = _Recorder()
    fanout.on_request(request("R"), "FIXGW->OMS", oms)
    before = _req_id(feed)
    fix_snapshot(feed, BTC, BIDS, [(D(ask), D("3")), (D("100.3"), D("4"))])
    assert _req_id(feed) != before  # resubscribed
    assert feed.books[BTC].level_counts() == (0, 0)
    assert feed.integrity_events[-1][1].startswith("crossed"), feed.integrity_events
    assert fanout.drained(5)
    assert oms.book().top(5) == ([], [])  # withdrawn, never the crossed levels
    assert not any(f.get(268) not in (None, "0") for f in oms.got[1:]), oms.got


def _per_entry_x(feed: MarketDataFeed, entries: list[tuple[MdEntry, int]],
                 checksum: int | None) -> None:
    """A venue X whose RptSeq counts entries (FIX 4.4: "sequence number per instrument
    update"), not messages."""
    x = build_incremental(_req_id(feed), BTC, [e for e, _ in entries], 0, checksum)
    g = fix.Group(m.NO_MD_ENTRIES, m.MD_UPDATE_ACTION)
    for i, (_, seq) in enumerate(entries, 1):
        x.getGroup(i, g)
        g.setField(83, str(seq))
        x.replaceGroup(i, g)
    feed.on_app_message(x, None, {})  # type: ignore[arg-type]


def test_a_rpt_seq_per_entry_is_no_gap_but_a_skip_still_is(feed: MarketDataFeed) -> None:
    """Two entries numbered 1 and 2 after the snapshot: the feed checked only the last one
    against the last message's + 1, took every multi-entry X for a gap and emptied and
    resubscribed the book each time. A skipped number is still a gap."""
    before = _req_id(feed)
    after = Book(BTC)
    after.apply_snapshot([(D("100.0"), D("5")), (D("99.9"), D("2"))],
                         [(D("100.2"), D("6")), (D("100.3"), D("4"))])
    view = TopView(10)
    view.reset_from(after)
    _per_entry_x(feed, [(MdEntry("1", BID, D("100.0"), D("5")), 1),
                        (MdEntry("1", OFFER, D("100.2"), D("6")), 2)], view.checksum(1, 8))
    assert _req_id(feed) == before, feed.integrity_events
    d = feed.books[BTC].depth(10)
    assert (d.bids[0].qty, d.asks[0].qty) == (D("5"), D("6"))
    _per_entry_x(feed, [(MdEntry("2", OFFER, D("100.3"), D("0")), 4)], None)  # 3 is missing
    assert _req_id(feed) != before
    assert feed.integrity_events[-1][1] == "sequence gap: RptSeq 4 after 2"
