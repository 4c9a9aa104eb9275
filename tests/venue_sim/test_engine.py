"""Matching-engine behaviour the venue faces rely on: priority, fills, rejects, replace rules,
self-trade prevention, and that the event stream alone reproduces the books."""

from __future__ import annotations

import dataclasses
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.venue_sim.engine import (
    TEXT_DUPLICATE,
    TEXT_ORDER_MINIMUM,
    TEXT_UNKNOWN_ORDER,
    TEXT_UNKNOWN_PAIR,
    Accepted,
    BookChanged,
    Canceled,
    CancelReason,
    CancelRejected,
    CxlRejCode,
    CxlRejResponseTo,
    Event,
    Filled,
    MatchingEngine,
    OrdStatus,
    OrdType,
    RejectCode,
    Rejected,
    Replaced,
    Side,
    TimeInForce,
)

D = Decimal
BTC = "BTC/USD"
BUY, SELL = Side.BUY, Side.SELL
ORDER_ID_RE = re.compile(r"^O[A-Z2-7]{5}-[A-Z2-7]{5}-[A-Z2-7]{6}$")


def clock() -> Callable[[], int]:
    """Deterministic time: every call one microsecond later."""
    ticks: Iterator[int] = iter(range(1_000_000_000, 10**18, 1_000))
    return lambda: next(ticks)


@pytest.fixture
def eng() -> MatchingEngine:
    return MatchingEngine(time_source=clock(), seed=7)


def of(events: list[Event], kind: type[object]) -> list[object]:
    return [e for e in events if isinstance(e, kind)]


def fills(events: list[Event]) -> list[Filled]:
    return [e for e in events if isinstance(e, Filled)]


def only(events: list[Event], kind: type[object]) -> object:
    found = of(events, kind)
    assert len(found) == 1, events
    return found[0]


# ---- resting, priority, sweeps ---------------------------------------------------------------


def test_non_crossing_limit_rests_with_accepted_then_book_change(eng: MatchingEngine) -> None:
    ev = eng.submit("GW", "c1", BTC, BUY, D("0.5"), D("44999.9"))
    assert [type(e) for e in ev] == [Accepted, BookChanged]
    acc = ev[0]
    assert isinstance(acc, Accepted)
    o = acc.order
    assert ORDER_ID_RE.match(o.order_id)
    assert (o.status, o.cum_qty, o.leaves_qty, o.qty) == (OrdStatus.NEW, D(0), D("0.5"), D("0.5"))
    assert o.price == D("44999.9") and o.tif is TimeInForce.GTC and o.ord_type is OrdType.LIMIT
    assert ev[1] == BookChanged(BTC, BUY, D("44999.9"), D("0.5"), ev[1].seq, ev[1].time)
    assert eng.levels(BTC, 5) == ([(D("44999.9"), D("0.5"))], [])
    assert [s.cl_ord_id for s in eng.open_orders("GW")] == ["c1"]


def test_price_then_time_priority(eng: MatchingEngine) -> None:
    eng.submit("A", "a1", BTC, SELL, D("1"), D("45001.0"))
    eng.submit("B", "b1", BTC, SELL, D("1"), D("45000.0"))  # better price, later
    eng.submit("C", "c1", BTC, SELL, D("1"), D("45000.0"))  # same price, later still
    ev = eng.submit("T", "t1", BTC, BUY, D("2.5"), D("45001.0"))
    makers = [(f.order.owner, f.last_px, f.last_qty) for f in fills(ev) if f.is_maker]
    assert makers == [
        ("B", D("45000.0"), D("1")),
        ("C", D("45000.0"), D("1")),
        ("A", D("45001.0"), D("0.5")),
    ]
    taker = [f for f in fills(ev) if not f.is_maker][-1].order
    assert taker.status is OrdStatus.FILLED
    assert taker.avg_px == D("45000.2")  # (45000*2 + 45001*0.5) / 2.5
    assert eng.levels(BTC) == ([], [(D("45001.0"), D("0.5"))])


def test_partial_fill_across_levels_then_rest_at_limit(eng: MatchingEngine) -> None:
    eng.submit("A", "a1", BTC, SELL, D("0.3"), D("45000.0"))
    eng.submit("A", "a2", BTC, SELL, D("0.3"), D("45000.5"))
    eng.submit("A", "a3", BTC, SELL, D("0.3"), D("45002.0"))
    ev = eng.submit("B", "b1", BTC, BUY, D("1"), D("45001.0"))
    assert [f.last_px for f in fills(ev) if not f.is_maker] == [D("45000.0"), D("45000.5")]
    taker = fills(ev)[-1].order
    assert (taker.status, taker.cum_qty, taker.leaves_qty) == (
        OrdStatus.PARTIALLY_FILLED, D("0.6"), D("0.4"))
    assert taker.avg_px == D("45000.25")
    assert eng.levels(BTC) == ([(D("45001.0"), D("0.4"))], [(D("45002.0"), D("0.3"))])
    prints = [(t.price, t.qty, t.aggressor_side) for t in eng.last_trades(BTC, 10)]
    assert prints == [(D("45000.0"), D("0.3"), BUY), (D("45000.5"), D("0.3"), BUY)]
    # Every match reports both sides with distinct exec ids and one shared trade id and txid,
    # the print's.
    f = fills(ev)
    assert f[0].trade_id == f[1].trade_id and f[0].exec_id != f[1].exec_id
    assert f[0].trade_txid == f[1].trade_txid
    assert [(t.trade_id, t.trade_txid) for t in eng.last_trades(BTC, 1)] == [
        (f[-1].trade_id, f[-1].trade_txid)]
    assert f[0].is_maker and not f[1].is_maker


def test_market_order_sweeps_book_and_cancels_remainder(eng: MatchingEngine) -> None:
    for i, px in enumerate(("45000.0", "45010.0", "45020.0")):
        eng.submit("A", f"a{i}", BTC, SELL, D("0.1"), D(px))
    ev = eng.submit("B", "m1", BTC, BUY, D("0.5"), None, OrdType.MARKET)
    assert type(ev[0]) is Accepted and ev[0].order.price is None
    assert [f.last_px for f in fills(ev) if not f.is_maker] == [
        D("45000.0"), D("45010.0"), D("45020.0")]
    cxl = only(ev, Canceled)
    assert isinstance(cxl, Canceled)
    assert cxl.reason is CancelReason.IOC_REMAINDER
    assert (cxl.order.cum_qty, cxl.order.leaves_qty, cxl.order.status) == (
        D("0.3"), D(0), OrdStatus.CANCELED)
    assert eng.levels(BTC) == ([], [])
    # A market order into an empty book is accepted and immediately canceled, never rested.
    ev = eng.submit("B", "m2", BTC, SELL, D("0.5"), None, OrdType.MARKET)
    assert [type(e) for e in ev] == [Accepted, Canceled]


def test_ioc_remainder_canceled_and_gtc_rests(eng: MatchingEngine) -> None:
    eng.submit("A", "a1", BTC, SELL, D("0.2"), D("45000.0"))
    ev = eng.submit("B", "b1", BTC, BUY, D("0.5"), D("45000.0"), tif=TimeInForce.IOC)
    cxl = only(ev, Canceled)
    assert isinstance(cxl, Canceled)
    assert cxl.reason is CancelReason.IOC_REMAINDER and cxl.order.cum_qty == D("0.2")
    assert eng.levels(BTC) == ([], [])
    ev = eng.submit("B", "b2", BTC, BUY, D("0.5"), D("44000.0"), tif=TimeInForce.IOC)
    assert [type(e) for e in ev] == [Accepted, Canceled]
    ev = eng.submit("B", "b3", BTC, BUY, D("0.5"), D("44000.0"), tif=TimeInForce.GTC)
    assert [type(e) for e in ev] == [Accepted, BookChanged]
    assert eng.levels(BTC) == ([(D("44000.0"), D("0.5"))], [])


def test_fok_all_or_nothing(eng: MatchingEngine) -> None:
    eng.submit("A", "a1", BTC, SELL, D("0.2"), D("45000.0"))
    eng.submit("A", "a2", BTC, SELL, D("0.2"), D("45001.0"))
    before = eng.levels(BTC)
    ev = eng.submit("B", "f1", BTC, BUY, D("0.5"), D("45001.0"), tif=TimeInForce.FOK)
    assert [type(e) for e in ev] == [Accepted, Canceled]
    assert ev[1].reason is CancelReason.FOK_UNFILLED  # type: ignore[union-attr]
    assert eng.levels(BTC) == before
    ev = eng.submit("B", "f2", BTC, BUY, D("0.3"), D("45001.0"), tif=TimeInForce.FOK)
    assert fills(ev)[-1].order.status is OrdStatus.FILLED
    assert eng.levels(BTC) == ([], [(D("45001.0"), D("0.1"))])


# ---- cancel ----------------------------------------------------------------------------------


def test_cancel_by_clordid_and_by_order_id(eng: MatchingEngine) -> None:
    oid = eng.submit("GW", "c1", BTC, BUY, D("1"), D("44000.0"))[0].order.order_id  # type: ignore[union-attr]
    eng.submit("GW", "c2", BTC, BUY, D("1"), D("44000.0"))
    ev = eng.cancel("GW", "x1", orig_cl_ord_id="c2")
    assert [type(e) for e in ev] == [Canceled, BookChanged]
    cxl = ev[0]
    assert isinstance(cxl, Canceled)
    assert (cxl.reason, cxl.request_cl_ord_id, cxl.order.cl_ord_id) == (
        CancelReason.USER, "x1", "c2")
    assert cxl.order.status is OrdStatus.CANCELED and cxl.order.leaves_qty == 0
    assert ev[1].new_level_qty == D("1")  # type: ignore[union-attr]
    ev = eng.cancel("GW", "x2", order_id=oid)
    assert ev[1].new_level_qty == 0  # type: ignore[union-attr]
    assert eng.levels(BTC) == ([], [])
    assert eng.open_orders("GW") == []


def test_cancel_rejects_unknown_closed_and_foreign(eng: MatchingEngine) -> None:
    ev = eng.cancel("GW", "x1", orig_cl_ord_id="nope")
    rej = only(ev, CancelRejected)
    assert isinstance(rej, CancelRejected)
    assert (rej.reason_code, rej.ord_status, rej.response_to, rej.reason, rej.order_id) == (
        CxlRejCode.UNKNOWN_ORDER, OrdStatus.REJECTED, CxlRejResponseTo.CANCEL,
        TEXT_UNKNOWN_ORDER, None)
    eng.submit("GW", "c1", BTC, BUY, D("1"), D("44000.0"))
    eng.cancel("GW", "x2", orig_cl_ord_id="c1")
    rej = only(eng.cancel("GW", "x3", orig_cl_ord_id="c1"), CancelRejected)
    assert isinstance(rej, CancelRejected)
    assert (rej.reason_code, rej.ord_status) == (CxlRejCode.TOO_LATE_TO_CANCEL, OrdStatus.CANCELED)
    # Someone else's order is "unknown" to you, whichever key you use.
    other = eng.submit("OTHER", "c1", BTC, BUY, D("1"), D("44000.0"))[0]
    assert isinstance(other, Accepted)
    rej = only(eng.cancel("GW", "x4", order_id=other.order.order_id), CancelRejected)
    assert isinstance(rej, CancelRejected) and rej.reason_code is CxlRejCode.UNKNOWN_ORDER
    assert eng.levels(BTC)[0] == [(D("44000.0"), D("1"))]


def test_cancel_of_filled_order_is_too_late(eng: MatchingEngine) -> None:
    eng.submit("A", "a1", BTC, SELL, D("1"), D("45000.0"))
    eng.submit("B", "b1", BTC, BUY, D("1"), D("45000.0"))
    rej = only(eng.cancel("A", "x", orig_cl_ord_id="a1"), CancelRejected)
    assert isinstance(rej, CancelRejected)
    assert (rej.reason_code, rej.ord_status) == (CxlRejCode.TOO_LATE_TO_CANCEL, OrdStatus.FILLED)


def test_mass_cancel_filters_by_symbol_and_side(eng: MatchingEngine) -> None:
    eng.submit("GW", "b1", BTC, BUY, D("1"), D("44000.0"))
    eng.submit("GW", "s1", BTC, SELL, D("1"), D("46000.0"))
    eng.submit("GW", "e1", "ETH/USD", BUY, D("1"), D("2400.00"))
    eng.submit("OTHER", "b1", BTC, BUY, D("1"), D("44000.0"))
    ev = eng.mass_cancel("GW", symbol=BTC, side=BUY, cl_ord_id="mc1")
    cx = [e for e in ev if isinstance(e, Canceled)]
    assert [(c.order.cl_ord_id, c.reason, c.request_cl_ord_id) for c in cx] == [
        ("b1", CancelReason.MASS_CANCEL, "mc1")]
    assert eng.levels(BTC)[0] == [(D("44000.0"), D("1"))]  # OTHER's bid survives
    ev = eng.mass_cancel("GW")
    assert sorted(c.order.cl_ord_id for c in ev if isinstance(c, Canceled)) == ["e1", "s1"]
    assert eng.open_orders("GW") == [] and eng.mass_cancel("GW") == []


# ---- replace ---------------------------------------------------------------------------------


def _queue(eng: MatchingEngine, side: Side, price: str) -> list[str]:
    """ClOrdIDs in time priority at one level, learnt the way a client would: by sweeping it."""
    opp = SELL if side is BUY else BUY
    ev = eng.submit("PROBE", "probe", BTC, opp, D("100"), D(price), tif=TimeInForce.IOC)
    return [f.order.cl_ord_id for f in fills(ev) if f.is_maker]


def test_replace_qty_down_keeps_priority(eng: MatchingEngine) -> None:
    eng.submit("A", "a1", BTC, BUY, D("1"), D("44000.0"))
    eng.submit("B", "b1", BTC, BUY, D("1"), D("44000.0"))
    ev = eng.replace("A", "a2", "a1", new_qty=D("0.4"))
    assert [type(e) for e in ev] == [Replaced, BookChanged]
    rep = ev[0]
    assert isinstance(rep, Replaced)
    assert (rep.orig_cl_ord_id, rep.order.cl_ord_id, rep.order.orig_cl_ord_id) == ("a1", "a2", "a1")
    assert (rep.order.qty, rep.order.leaves_qty, rep.order.status) == (
        D("0.4"), D("0.4"), OrdStatus.NEW)
    assert ev[1].new_level_qty == D("1.4")  # type: ignore[union-attr]
    assert _queue(eng, BUY, "44000.0") == ["a2", "b1"]


def test_replace_qty_up_loses_priority(eng: MatchingEngine) -> None:
    eng.submit("A", "a1", BTC, BUY, D("1"), D("44000.0"))
    eng.submit("B", "b1", BTC, BUY, D("1"), D("44000.0"))
    eng.replace("A", "a2", "a1", new_qty=D("2"))
    assert eng.levels(BTC)[0] == [(D("44000.0"), D("3"))]
    assert _queue(eng, BUY, "44000.0") == ["b1", "a2"]


def test_replace_price_change_loses_priority_even_back_to_same_price(eng: MatchingEngine) -> None:
    eng.submit("A", "a1", BTC, BUY, D("1"), D("44000.0"))
    eng.submit("B", "b1", BTC, BUY, D("1"), D("44000.0"))
    ev = eng.replace("A", "a2", "a1", new_price=D("43999.0"))
    assert [type(e) for e in ev] == [Replaced, BookChanged, BookChanged]
    assert eng.levels(BTC)[0] == [(D("44000.0"), D("1")), (D("43999.0"), D("1"))]
    eng.replace("A", "a3", "a2", new_price=D("44000.0"))
    assert _queue(eng, BUY, "44000.0") == ["b1", "a3"]


def test_replace_that_crosses_trades_like_a_new_order(eng: MatchingEngine) -> None:
    eng.submit("S", "s1", BTC, SELL, D("0.5"), D("45000.0"))
    eng.submit("A", "a1", BTC, BUY, D("1"), D("44000.0"))
    ev = eng.replace("A", "a2", "a1", new_price=D("45000.0"))
    assert type(ev[0]) is Replaced
    taker = [f for f in fills(ev) if not f.is_maker]
    assert [(f.order.cl_ord_id, f.last_qty, f.last_px) for f in taker] == [
        ("a2", D("0.5"), D("45000.0"))]
    assert eng.levels(BTC) == ([(D("45000.0"), D("0.5"))], [])


def test_replace_to_qty_at_or_below_cum_closes_order(eng: MatchingEngine) -> None:
    eng.submit("A", "a1", BTC, BUY, D("1"), D("44000.0"))
    eng.submit("S", "s1", BTC, SELL, D("0.3"), D("44000.0"))
    ev = eng.replace("A", "a2", "a1", new_qty=D("0.2"))
    rep = ev[0]
    assert isinstance(rep, Replaced)
    assert (rep.order.status, rep.order.qty, rep.order.cum_qty, rep.order.leaves_qty) == (
        OrdStatus.FILLED, D("0.3"), D("0.3"), D(0))
    assert ev[1].new_level_qty == 0  # type: ignore[union-attr]
    assert eng.levels(BTC) == ([], []) and eng.open_orders("A") == []
    status = eng.order_status("A", cl_ord_id="a2")
    assert status is not None and status.status is OrdStatus.FILLED


def test_in_place_amend_below_cum_cancels_the_remainder(eng: MatchingEngine) -> None:
    """Kraken's REST/WS amend: below the filled quantity, the remainder is canceled (the order
    does not become FILLED, unlike FIX 35=G above)."""
    eng.submit("A", "a1", BTC, BUY, D("1"), D("44000.0"))
    eng.submit("S", "s1", BTC, SELL, D("0.3"), D("44000.0"))
    ev = eng.replace("A", "a1", None, new_qty=D("0.2"), order_id=eng.open_orders("A")[0].order_id,
                     cancel_below_filled=True)
    cx = ev[0]
    assert isinstance(cx, Canceled) and cx.reason is CancelReason.AMEND_BELOW_FILLED
    assert (cx.order.status, cx.order.qty, cx.order.cum_qty, cx.order.leaves_qty) == (
        OrdStatus.CANCELED, D("1"), D("0.3"), D(0))
    assert isinstance(ev[1], BookChanged) and ev[1].new_level_qty == 0
    assert eng.levels(BTC) == ([], []) and eng.open_orders("A") == []
    # Down to exactly the filled quantity is not below it: nothing is left, the order is done.
    eng.submit("A", "b1", BTC, BUY, D("1"), D("44000.0"))
    eng.submit("S", "s2", BTC, SELL, D("0.3"), D("44000.0"))
    ev = eng.replace("A", "b1", "b1", new_qty=D("0.3"), cancel_below_filled=True)
    assert isinstance(ev[0], Replaced) and ev[0].order.status is OrdStatus.FILLED


def test_replace_rejects(eng: MatchingEngine) -> None:
    rej = only(eng.replace("A", "a2", "nope", new_qty=D("1")), CancelRejected)
    assert isinstance(rej, CancelRejected)
    assert (rej.reason_code, rej.response_to) == (CxlRejCode.UNKNOWN_ORDER,
                                                  CxlRejResponseTo.REPLACE)
    eng.submit("A", "a1", BTC, BUY, D("1"), D("44000.0"))
    eng.submit("A", "z1", BTC, BUY, D("1"), D("43000.0"))
    rej = only(eng.replace("A", "z1", "a1", new_qty=D("2")), CancelRejected)
    assert isinstance(rej, CancelRejected)
    assert (rej.reason_code, rej.reason) == (CxlRejCode.DUPLICATE_CL_ORD_ID, TEXT_DUPLICATE)
    rej = only(eng.replace("A", "a2", "a1", new_price=D("44000.05")), CancelRejected)
    assert isinstance(rej, CancelRejected) and rej.reason.startswith("EOrder:Invalid price")
    rej = only(eng.replace("A", "a2", "a1", new_qty=D("0.00001")), CancelRejected)
    assert isinstance(rej, CancelRejected) and rej.reason == TEXT_ORDER_MINIMUM
    assert rej.ord_status is OrdStatus.NEW and rej.order_id is not None
    # Nothing changed on the order after the refusals.
    st_ = eng.order_status("A", cl_ord_id="a1")
    assert st_ is not None and (st_.qty, st_.price) == (D("1"), D("44000.0"))


# ---- rejects ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "qty", "price", "ord_type", "code", "text"),
    [
        ("DOGE/USD", "1", "1.0", OrdType.LIMIT, RejectCode.UNKNOWN_SYMBOL, TEXT_UNKNOWN_PAIR),
        (BTC, "0", "45000.0", OrdType.LIMIT, RejectCode.INCORRECT_QUANTITY,
         "EGeneral:Invalid arguments:volume"),
        (BTC, "-1", "45000.0", OrdType.LIMIT, RejectCode.INCORRECT_QUANTITY,
         "EGeneral:Invalid arguments:volume"),
        (BTC, "0.00005", "45000.0", OrdType.LIMIT, RejectCode.INCORRECT_QUANTITY,
         TEXT_ORDER_MINIMUM),
        (BTC, "0.000000001", "45000.0", OrdType.LIMIT, RejectCode.INCORRECT_QUANTITY,
         "EGeneral:Invalid arguments:volume"),
        (BTC, "1", "45000.05", OrdType.LIMIT, RejectCode.OTHER, "EOrder:Invalid price"),
        (BTC, "1", "0", OrdType.LIMIT, RejectCode.OTHER, "EOrder:Invalid price"),
        ("PF_XBTUSD", "1", "45000.1", OrdType.LIMIT, RejectCode.OTHER, "EOrder:Invalid price"),
        (BTC, "1", None, OrdType.LIMIT, RejectCode.OTHER, "EGeneral:Invalid arguments:price"),
        (BTC, "1", "45000.0", OrdType.MARKET, RejectCode.UNSUPPORTED_ORDER_CHARACTERISTIC,
         "EGeneral:Invalid arguments:price"),
        (BTC, "NaN", "45000.0", OrdType.LIMIT, RejectCode.INCORRECT_QUANTITY,
         "EGeneral:Invalid arguments:volume"),
    ],
)
def test_rejects_with_kraken_texts(
    eng: MatchingEngine, symbol: str, qty: str, price: str | None, ord_type: OrdType,
    code: RejectCode, text: str,
) -> None:
    ev = eng.submit("GW", "c1", symbol, BUY, D(qty), None if price is None else D(price), ord_type)
    assert len(ev) == 1
    rej = ev[0]
    assert isinstance(rej, Rejected)
    assert rej.reason_code is code and rej.text.startswith(text), rej.text
    assert (rej.owner, rej.cl_ord_id, rej.symbol, rej.side) == ("GW", "c1", symbol, BUY)
    assert eng.open_orders("GW") == []


def test_duplicate_open_clordid_rejected_but_reusable_after_close(eng: MatchingEngine) -> None:
    eng.submit("GW", "c1", BTC, BUY, D("1"), D("44000.0"))
    rej = only(eng.submit("GW", "c1", BTC, BUY, D("1"), D("44000.0")), Rejected)
    assert isinstance(rej, Rejected) and rej.reason_code is RejectCode.DUPLICATE_ORDER
    # Same ClOrdID from another owner is fine: uniqueness is per session/API key.
    assert type(eng.submit("OTHER", "c1", BTC, BUY, D("1"), D("44000.0"))[0]) is Accepted
    eng.cancel("GW", "x", orig_cl_ord_id="c1")
    assert type(eng.submit("GW", "c1", BTC, BUY, D("1"), D("44000.0"))[0]) is Accepted
    assert eng.submission_counts[("GW", "c1")] == 3
    assert eng.submission_count("GW", "c1") == 3


def test_floats_are_refused_outright(eng: MatchingEngine) -> None:
    with pytest.raises(TypeError):
        eng.submit("GW", "c1", BTC, BUY, 1.0, D("44000.0"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        eng.submit("GW", "c1", BTC, BUY, D("1"), 44000.0)  # type: ignore[arg-type]


def test_inputs_are_normalised_to_instrument_decimals(eng: MatchingEngine) -> None:
    acc = eng.submit("GW", "c1", "ETH/USD", BUY, D("1.5"), D("2400.1"))[0]
    assert isinstance(acc, Accepted)
    assert str(acc.order.price) == "2400.10" and str(acc.order.qty) == "1.50000000"


# ---- self-trade prevention -------------------------------------------------------------------


def test_self_trade_cancels_newest_and_keeps_resting(eng: MatchingEngine) -> None:
    eng.submit("GW", "s1", BTC, SELL, D("1"), D("45000.0"))
    ev = eng.submit("GW", "b1", BTC, BUY, D("1"), D("45000.0"))
    assert [type(e) for e in ev] == [Accepted, Canceled]
    assert ev[1].reason is CancelReason.SELF_TRADE  # type: ignore[union-attr]
    assert not fills(ev)
    assert eng.levels(BTC) == ([], [(D("45000.0"), D("1"))])


def test_self_trade_after_trading_with_others(eng: MatchingEngine) -> None:
    eng.submit("X", "x1", BTC, SELL, D("0.4"), D("45000.0"))
    eng.submit("GW", "s1", BTC, SELL, D("1"), D("45000.0"))
    eng.submit("Y", "y1", BTC, SELL, D("1"), D("45000.0"))
    ev = eng.submit("GW", "b1", BTC, BUY, D("2"), D("45001.0"))
    assert [f.order.owner for f in fills(ev) if f.is_maker] == ["X"]
    cxl = only(ev, Canceled)
    assert isinstance(cxl, Canceled)
    assert cxl.reason is CancelReason.SELF_TRADE and cxl.order.cum_qty == D("0.4")
    assert eng.levels(BTC) == ([], [(D("45000.0"), D("2"))])


def test_different_owners_trade(eng: MatchingEngine) -> None:
    eng.submit("GW-1", "s1", BTC, SELL, D("1"), D("45000.0"))
    ev = eng.submit("GW-2", "b1", BTC, BUY, D("1"), D("45000.0"))
    assert len(fills(ev)) == 2


# ---- queries, ids, listeners -----------------------------------------------------------------


def test_order_status_follows_replace_chain_and_hides_other_owners(eng: MatchingEngine) -> None:
    oid = eng.submit("GW", "c1", BTC, BUY, D("1"), D("44000.0"))[0].order.order_id  # type: ignore[union-attr]
    eng.replace("GW", "c2", "c1", new_qty=D("0.5"))
    for key in ({"cl_ord_id": "c1"}, {"cl_ord_id": "c2"}, {"order_id": oid}):
        s = eng.order_status("GW", **key)
        assert s is not None and (s.cl_ord_id, s.qty) == ("c2", D("0.5"))
    assert eng.order_status("OTHER", order_id=oid) is None
    assert eng.order_status("GW", cl_ord_id="zzz") is None


def renumbered(events: list[Event]) -> list[Event]:
    """The events with every OrderID, ExecID and trade id/txid replaced by its rank of first
    appearance: what must replay for a seed, since the ids themselves are fresh per run."""
    names: dict[str | int, str] = {}

    def rename(v: str | int) -> str:
        return names.setdefault(v, f"#{len(names)}")

    out: list[Event] = []
    for ev in events:
        changes: dict[str, object] = {}
        for name in ("exec_id", "trade_id", "trade_txid", "order_id"):
            value = getattr(ev, name, None)
            if isinstance(value, str | int):
                changes[name] = rename(value)
        order = getattr(ev, "order", None)
        if order is not None:
            changes["order"] = dataclasses.replace(order, order_id=rename(order.order_id))
        out.append(dataclasses.replace(ev, **changes))  # type: ignore[arg-type]
    return out


def test_ids_unique_per_run_and_never_reissued_by_a_new_engine() -> None:
    """A restarted simulator (a new engine, same seed) must not reissue a previous run's ids: a
    receiver that dedupes on ExecID would drop its reports. Everything else replays."""
    def run(seed: int) -> tuple[list[Event], dict[str, list[str]]]:
        e = MatchingEngine(time_source=clock(), seed=seed)
        events: list[Event] = []
        for i in range(300):
            events += e.submit("A" if i % 2 else "B", f"c{i}", BTC, BUY if i % 3 else SELL,
                               D("0.01"), D("45000.0"))
        ids: dict[str, list[str]] = {"order": [], "exec": [], "txid": [], "trade": []}
        for ev in events:
            if isinstance(ev, (Accepted, Filled)):
                ids["exec"].append(ev.exec_id)
            if isinstance(ev, Accepted):
                ids["order"].append(ev.order.order_id)
            if isinstance(ev, Filled) and ev.is_maker:
                ids["txid"].append(ev.trade_txid)
                ids["trade"].append(f"{ev.trade_id:020d}")  # Kraken's integer trade id
        return events, ids

    (events_a, a), (events_b, b) = run(1), run(1)
    assert a["trade"], "the run must trade for trade ids to be compared"
    assert min(b["trade"]) > max(a["trade"])  # and they keep increasing
    for kind in ("order", "exec", "txid", "trade"):
        assert len(set(a[kind])) == len(a[kind]), kind
        assert not set(a[kind]) & set(b[kind]), f"{kind} ids reissued by a new engine"
    assert all(ORDER_ID_RE.match(i) for i in a["order"] + b["order"])
    assert renumbered(events_a) == renumbered(events_b)


def test_listener_sees_every_event_in_gapless_seq_order(eng: MatchingEngine) -> None:
    seen: list[Event] = []
    eng.add_listener(seen.extend)
    returned: list[Event] = []
    returned += eng.submit("A", "a1", BTC, SELL, D("1"), D("45000.0"))
    returned += eng.submit("B", "b1", BTC, BUY, D("0.5"), D("45000.0"))
    returned += eng.cancel("A", "x", orig_cl_ord_id="a1")
    assert seen == returned
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    assert eng.last_seq == len(seen)
    eng.remove_listener(seen.extend)
    eng.submit("A", "a2", BTC, SELL, D("1"), D("45000.0"))
    assert len(seen) == len(returned)


def test_listener_reentry_raises_instead_of_deadlocking(eng: MatchingEngine) -> None:
    errors: list[BaseException] = []

    def bad(_: tuple[Event, ...]) -> None:
        try:
            eng.levels(BTC)
        except RuntimeError as exc:
            errors.append(exc)

    eng.add_listener(bad)
    eng.submit("A", "a1", BTC, SELL, D("1"), D("45000.0"))
    assert len(errors) == 1


def test_depth_snapshot_aligns_with_event_seq(eng: MatchingEngine) -> None:
    eng.submit("A", "a1", BTC, SELL, D("1"), D("45000.0"))
    snap = eng.depth_snapshot(BTC, 10)
    assert snap.seq == eng.last_seq and snap.asks == [(D("45000.0"), D("1"))]
    ev = eng.submit("B", "b1", BTC, BUY, D("1"), D("45000.0"))
    assert all(e.seq > snap.seq for e in ev)


def test_closed_orders_are_evicted_after_retention() -> None:
    e = MatchingEngine(time_source=clock(), closed_order_retention=5)
    for i in range(10):
        e.submit("GW", f"c{i}", BTC, BUY, D("1"), D("44000.0"))
        e.cancel("GW", f"x{i}", orig_cl_ord_id=f"c{i}")
    assert e.order_status("GW", cl_ord_id="c0") is None
    s = e.order_status("GW", cl_ord_id="c9")
    assert s is not None and s.status is OrdStatus.CANCELED


def test_synthetic_owners_not_counted(eng: MatchingEngine) -> None:
    eng.submit("SIM-FLOW", "f1", BTC, BUY, D("1"), D("44000.0"))
    eng.replace("GW", "r1", "nope", new_qty=D("1"))
    assert ("SIM-FLOW", "f1") not in eng.submission_counts
    assert eng.submission_counts[("GW", "r1")] == 1


# ---- book reconstruction from events ---------------------------------------------------------


class Mirror:
    """Rebuilds L2 books purely from BookChanged events, as a market-data face would."""

    def __init__(self) -> None:
        self.books: dict[tuple[str, Side], dict[Decimal, Decimal]] = {}

    def apply(self, events: list[Event]) -> None:
        for e in events:
            if isinstance(e, BookChanged):
                side = self.books.setdefault((e.symbol, e.side), {})
                assert e.new_level_qty >= 0
                if e.new_level_qty == 0:
                    del side[e.price]
                else:
                    side[e.price] = e.new_level_qty

    def levels(self, symbol: str) -> tuple[list[tuple[Decimal, Decimal]],
                                           list[tuple[Decimal, Decimal]]]:
        bids = self.books.get((symbol, BUY), {})
        asks = self.books.get((symbol, SELL), {})
        return sorted(bids.items(), reverse=True), sorted(asks.items())


def random_op(e: MatchingEngine, rng: random.Random, n: int, symbols: list[str]) -> list[Event]:
    owner = rng.choice(["A", "B", "C"])
    sym = rng.choice(symbols)
    inst = e.instruments[sym]
    r = rng.random()
    if r < 0.55:
        ticks = rng.randint(-30, 30)
        px = inst.ref_price + ticks * inst.price_tick
        qty = inst.min_qty * rng.randint(1, 8)
        ord_type = OrdType.MARKET if rng.random() < 0.05 else OrdType.LIMIT
        tif = rng.choice([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK])
        return e.submit(owner, f"{owner}{n}", sym, rng.choice([BUY, SELL]), qty,
                        None if ord_type is OrdType.MARKET else px, ord_type, tif)
    opens = e.open_orders(owner)
    if not opens:
        return []
    target = rng.choice(opens)
    if r < 0.8:
        return e.cancel(owner, f"x{n}", orig_cl_ord_id=target.cl_ord_id)
    if r < 0.97:
        new_qty = None if rng.random() < 0.3 else inst.min_qty * rng.randint(1, 8)
        new_px = (None if rng.random() < 0.5
                  else inst.ref_price + rng.randint(-30, 30) * inst.price_tick)
        return e.replace(owner, f"{owner}{n}", target.cl_ord_id, new_qty, new_px)
    return e.mass_cancel(owner, symbol=sym if rng.random() < 0.5 else None)


def check_event_stream(events: list[Event]) -> None:
    """Per-event invariants a face can rely on."""
    for ev in events:
        if isinstance(ev, (Accepted, Filled, Canceled, Replaced)):
            o = ev.order
            assert o.cum_qty >= 0 and o.leaves_qty >= 0
            assert o.cum_qty + o.leaves_qty == o.qty or o.status is OrdStatus.CANCELED
        if isinstance(ev, Filled):
            assert ev.last_qty > 0


def test_book_changed_events_reconstruct_levels_after_random_ops() -> None:
    e = MatchingEngine(time_source=clock(), seed=3)
    symbols = [BTC, "ARB/USD", "PF_XBTUSD"]
    mirror = Mirror()
    rng = random.Random(12345)
    exec_ids: set[str] = set()
    for n in range(4000):
        events = random_op(e, rng, n, symbols)
        mirror.apply(events)
        check_event_stream(events)
        for ev in events:
            if isinstance(ev, Filled):
                assert ev.exec_id not in exec_ids
                exec_ids.add(ev.exec_id)
        if n % 200 == 0:
            e.check_invariants()
    e.check_invariants()
    for sym in symbols:
        assert mirror.levels(sym) == e.levels(sym), sym
    assert exec_ids  # the random walk did trade


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=20, max_value=250))
def test_book_reconstruction_property(seed: int, steps: int) -> None:
    e = MatchingEngine(time_source=clock(), seed=seed)
    mirror = Mirror()
    rng = random.Random(seed)
    for n in range(steps):
        mirror.apply(random_op(e, rng, n, [BTC]))
    e.check_invariants()
    assert mirror.levels(BTC) == e.levels(BTC)


# ---- concurrency and cost --------------------------------------------------------------------


def recording(errors: list[BaseException],
              fn: Callable[[tuple[Event, ...]], None]) -> Callable[[tuple[Event, ...]], None]:
    """``fn`` as a listener whose failures reach the test: the engine logs and swallows a
    listener's exception (one broken face must not stop the venue), so an assert inside a bare
    listener can never fail a test."""

    def listener(events: tuple[Event, ...]) -> None:
        try:
            fn(events)
        except BaseException as exc:
            errors.append(exc)

    return listener


def test_two_threads_hammering_keep_invariants() -> None:
    e = MatchingEngine(seed=11)
    mirror = Mirror()
    errors: list[BaseException] = []  # the workers' and the listener's (on the workers' threads)
    # Under the lock: one total order of events.
    e.add_listener(recording(errors, lambda evs: mirror.apply(list(evs))))
    start = threading.Barrier(2)

    def worker(owner: str, seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for n in range(2500):
                random_op_owner(e, rng, n, owner)
        except BaseException as exc:  # surface failures from the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"T{i}", i)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    e.check_invariants()
    assert mirror.levels(BTC) == e.levels(BTC)
    for owner in ("T0", "T1"):
        for o in e.open_orders(owner):
            assert o.leaves_qty > 0 and o.cum_qty >= 0
    bid, ask = e.top_of_book(BTC)
    assert bid is None or ask is None or bid < ask


def random_op_owner(e: MatchingEngine, rng: random.Random, n: int, owner: str) -> None:
    px = D("45000.0") + rng.randint(-20, 20) * D("0.1")
    if rng.random() < 0.6:
        e.submit(owner, f"{owner}-{n}", BTC, rng.choice([BUY, SELL]),
                 D("0.0001") * rng.randint(1, 5), px)
    else:
        e.cancel(owner, f"x{owner}-{n}", orig_cl_ord_id=f"{owner}-{rng.randint(0, n)}")


def test_non_crossing_submit_cost_is_microseconds() -> None:
    """Loose guard against an accidental O(n) path; the precise figure is in the report."""
    e = MatchingEngine(seed=1)
    n = 3000
    prices = [D("40000.0") + D(i % 100) for i in range(n)]
    clids = [f"c{i}" for i in range(n)]
    qty = D("0.01")
    t0 = time.perf_counter()
    for i in range(n):
        e.submit("GW", clids[i], BTC, BUY, qty, prices[i])
    per_order = (time.perf_counter() - t0) / n
    assert per_order < 200e-6, f"{per_order * 1e6:.1f} us per non-crossing submit"


def test_fix_wire_strings_are_coerced_to_enums(eng: MatchingEngine) -> None:
    """The engine compares enums by identity; a raw "2" must still be a sell, not a buy."""
    eng.submit("A", "a1", BTC, "2", D("1"), D("45000.0"), "2", "1")  # type: ignore[arg-type]
    assert eng.levels(BTC) == ([], [(D("45000.0"), D("1"))])
    with pytest.raises(ValueError):
        eng.submit("A", "a2", BTC, "7", D("1"), D("45000.0"))  # type: ignore[arg-type]
    ev = eng.mass_cancel("A", side="2")  # type: ignore[arg-type]
    assert len([e for e in ev if isinstance(e, Canceled)]) == 1


def test_grid_reject_texts_print_the_tick_and_lot_in_plain_notation(eng: MatchingEngine) -> None:
    """Kraken-style texts a client shows to people: ``0.00000001``, not ``1E-8``."""
    off_lot = eng.submit("A", "a1", BTC, BUY, D("0.000000015"), D("45000.0"))
    assert isinstance(off_lot[0], Rejected)
    assert off_lot[0].text.endswith("qty must be a multiple of 0.00000001")
    off_tick = eng.submit("A", "a2", "PF_ARBUSD", BUY, D("1"), D("0.11105"))
    assert isinstance(off_tick[0], Rejected)
    assert off_tick[0].text.endswith("price must be a multiple of 0.0001")


# ---- replace: what a FIX cancel/replace may not change -----------------------------------------


def test_fix_replace_must_bring_a_new_cl_ord_id(eng: MatchingEngine) -> None:
    """FIX 35=G needs a ClOrdID the order never had: the current one (11 == 41) or one it had
    before an earlier replace is refused as a duplicate (102=6), the order untouched. Kraken's
    REST/WS amend keeps its cl_ord_id, so it does not ask for this."""
    eng.submit("A", "a1", BTC, BUY, D("1"), D("44000.0"))
    for cl, orig in (("a1", "a1"), ("a2", "a1"), ("a1", "a2")):
        ev = eng.replace("A", cl, orig, new_qty=D("0.5"), require_new_cl_ord_id=True)
        if cl == "a2":
            assert isinstance(ev[0], Replaced), ev
            continue
        rej = only(ev, CancelRejected)
        assert isinstance(rej, CancelRejected)
        assert (rej.reason_code, rej.reason, rej.ord_status, rej.cl_ord_id) == (
            CxlRejCode.DUPLICATE_CL_ORD_ID, TEXT_DUPLICATE, OrdStatus.NEW, cl)
    st_ = eng.order_status("A", cl_ord_id="a2")
    assert st_ is not None and (st_.cl_ord_id, st_.qty) == ("a2", D("0.5"))
    # Without the flag (REST/WS amend) the same ClOrdID is still fine.
    assert isinstance(eng.replace("A", "a2", "a2", new_qty=D("0.4"))[0], Replaced)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"side": SELL}, "side"),
        ({"symbol": "ETH/USD"}, "symbol"),
        ({"ord_type": OrdType.MARKET}, "ord_type"),
        ({"tif": TimeInForce.IOC}, "tif"),
        ({"side": "2"}, "side"),  # FIX wire values compare as the enums do
    ],
)
def test_replace_refuses_to_change_anything_but_qty_and_price(
        eng: MatchingEngine, change: dict[str, str], field: str) -> None:
    """A cancel/replace that names another side, symbol, order type or time in force is refused
    (35=9), not applied as a qty/price change: replaced with the old side, a client would
    believe its order had turned into a sell."""
    eng.submit("A", "a1", BTC, BUY, D("1"), D("44000.0"))
    rej = only(eng.replace("A", "a2", "a1", new_qty=D("0.5"), **change), CancelRejected)  # type: ignore[arg-type]
    assert isinstance(rej, CancelRejected)
    assert rej.reason_code is CxlRejCode.OTHER and field in rej.reason, rej.reason
    assert rej.ord_status is OrdStatus.NEW and rej.order_id is not None
    st_ = eng.order_status("A", cl_ord_id="a1")
    assert st_ is not None and (st_.cl_ord_id, st_.qty, st_.side) == ("a1", D("1"), BUY)
    # The same values as the order's are fine.
    ev = eng.replace("A", "a2", "a1", new_qty=D("0.5"), side=BUY, symbol=BTC,
                     ord_type=OrdType.LIMIT, tif=TimeInForce.GTC)
    assert isinstance(ev[0], Replaced), ev


def test_cl_ord_id_an_open_order_had_before_a_replace_is_still_in_use(eng: MatchingEngine) -> None:
    """g1 replaced by g2 is the same live order: a new order g1 (or a replace of another order
    to g1) is a duplicate, not a second order a later cancel of 41=g1 could mean. Once the
    order is closed, its ClOrdIDs are free again, as the current one is."""
    eng.submit("A", "g1", BTC, BUY, D("1"), D("44000.0"))
    eng.replace("A", "g2", "g1", new_qty=D("0.5"))
    rej = only(eng.submit("A", "g1", BTC, BUY, D("1"), D("43000.0")), Rejected)
    assert isinstance(rej, Rejected) and rej.reason_code is RejectCode.DUPLICATE_ORDER
    eng.submit("A", "h1", BTC, BUY, D("1"), D("43000.0"))
    rej2 = only(eng.replace("A", "g1", "h1", new_qty=D("0.5")), CancelRejected)
    assert isinstance(rej2, CancelRejected)
    assert rej2.reason_code is CxlRejCode.DUPLICATE_CL_ORD_ID
    assert [(o.cl_ord_id, o.qty) for o in eng.open_orders("A")] == [
        ("g2", D("0.5")), ("h1", D("1"))]
    eng.cancel("A", "x1", "g2")
    assert isinstance(eng.submit("A", "g1", BTC, BUY, D("1"), D("43000.0"))[0], Accepted)


def test_fix_cancel_checks_its_cl_ord_id_side_and_symbol(eng: MatchingEngine) -> None:
    eng.submit("A", "a1", BTC, BUY, D("1"), D("44000.0"))
    eng.submit("A", "b1", BTC, BUY, D("1"), D("43000.0"))
    for cl, kw, code in (("a1", {}, CxlRejCode.DUPLICATE_CL_ORD_ID),
                         ("b1", {}, CxlRejCode.DUPLICATE_CL_ORD_ID),
                         ("x1", {"side": "2"}, CxlRejCode.OTHER),
                         ("x1", {"symbol": "ETH/USD"}, CxlRejCode.OTHER)):
        rej = only(eng.cancel("A", cl, "a1", require_new_cl_ord_id=True, **kw), CancelRejected)  # type: ignore[arg-type]
        assert isinstance(rej, CancelRejected)
        assert (rej.reason_code, rej.ord_status, rej.response_to) == (
            code, OrdStatus.NEW, CxlRejResponseTo.CANCEL), rej
    assert len(eng.open_orders("A")) == 2
    ev = eng.cancel("A", "x1", "a1", require_new_cl_ord_id=True, side=BUY, symbol=BTC)
    assert isinstance(ev[0], Canceled)
    # Without the flag (REST, WS) the ClOrdID of the request is not checked.
    assert isinstance(eng.cancel("A", "b1", "b1")[0], Canceled)
