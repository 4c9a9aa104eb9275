"""FIX 4.4 chains ClOrdIDs: after an accepted cancel (35=F) or cancel/replace (35=G) the
order is known by the request's ClOrdID. A status request (35=H) or a further cancel or
replace naming only that latest ClOrdID (no OrderID 37) must find the order, not answer
"unknown order"; a ClOrdID already in the chain still may not start a new request. Over
loopback, with a raw FIX client, so the wire is what is checked."""

from __future__ import annotations

from decimal import Decimal

from gateway.venue_sim.accounts import ApiAccount
from gateway.venue_sim.server import VenueSimulator
from tests.fix_session.rawclient import RawFixClient, fields_of
from tests.venue_sim.sim_rest import private_call
from tests.venue_sim.test_fix_face_fidelity import (
    OWNER,
    REST_KEY,
    REST_SECRET,
    new_order,
    report,
    trading_client,
)

_T = (60, "20260101-00:00:00.000")


def _status(c: RawFixClient, cl: str) -> dict[int, str]:
    c.send("H", [(11, cl), (55, "BTC/USD"), (54, "1")])
    return fields_of(c.expect("8", match=lambda f: f.get(150) == "I"))


def _cancel(c: RawFixClient, cl: str, orig: str) -> None:
    c.send("F", [(11, cl), (41, orig), (55, "BTC/USD"), (54, "1"), (38, "0.01"), _T])


def _replace(c: RawFixClient, cl: str, orig: str, qty: str = "0.01",
             price: str = "40000.0") -> None:
    c.send("G", [(11, cl), (41, orig), (55, "BTC/USD"), (54, "1"), _T, (38, qty), (40, "2"),
                 (44, price), (59, "1")])


def test_status_by_the_cancel_s_cl_ord_id_finds_the_canceled_order(
        venue: VenueSimulator) -> None:
    """Before, the cancel's ClOrdID was in no index: 35=H 11=x1 got 39=8 "unknown order"."""
    c = trading_client(venue)
    try:
        new_order(c, "o1")
        oid = report(c, "o1", "0")[37]
        _cancel(c, "x1", "o1")
        canceled = report(c, "x1", "4")
        assert (canceled[41], canceled[37]) == ("o1", oid), canceled
        st = _status(c, "x1")
        assert (st[39], st[37], st[11]) == ("4", oid, "x1"), st
        # The chain's older ClOrdID still finds it too.
        st = _status(c, "o1")
        assert (st[39], st[37]) == ("4", oid), st
    finally:
        c.close()


def test_cancel_naming_the_cancel_s_cl_ord_id_is_too_late_not_unknown(
        venue: VenueSimulator) -> None:
    """A second 35=F (or a 35=G) with 41 = the first cancel's ClOrdID names a canceled order:
    CxlRejReason 0 (too late) with its OrderID and OrdStatus 4, not 1 (unknown)."""
    c = trading_client(venue)
    try:
        new_order(c, "o1")
        oid = report(c, "o1", "0")[37]
        _cancel(c, "x1", "o1")
        report(c, "x1", "4")
        _cancel(c, "x2", "x1")
        rej = fields_of(c.expect("9", match=lambda f: f.get(11) == "x2"))
        assert (rej[102], rej[39], rej[37], rej[434]) == ("0", "4", oid, "1"), rej
        _replace(c, "r1", "x1")
        rej = fields_of(c.expect("9", match=lambda f: f.get(11) == "r1"))
        assert (rej[102], rej[39], rej[37], rej[434]) == ("0", "4", oid, "2"), rej
    finally:
        c.close()


def test_after_two_replaces_the_latest_cl_ord_id_cancels_and_the_used_ones_stay_refused(
        venue: VenueSimulator) -> None:
    c = trading_client(venue)
    try:
        new_order(c, "o1", qty="0.03")
        oid = report(c, "o1", "0")[37]
        _replace(c, "r1", "o1", qty="0.02")
        assert report(c, "r1", "5")[41] == "o1"
        _replace(c, "r2", "r1", qty="0.01")
        assert report(c, "r2", "5")[41] == "r1"
        st = _status(c, "r2")
        assert (st[39], st[37], Decimal(st[38])) == ("0", oid, Decimal("0.01")), st
        # A ClOrdID of the chain may not name a new request.
        _cancel(c, "r1", "r2")
        rej = fields_of(c.expect("9", match=lambda f: f.get(11) == "r1"))
        assert rej[102] == "6", rej
        _cancel(c, "x1", "r2")
        canceled = report(c, "x1", "4")
        assert (canceled[41], canceled[37]) == ("r2", oid), canceled
        assert _status(c, "x1")[39] == "4"
    finally:
        c.close()


def test_rest_open_orders_finds_a_replaced_order_by_any_cl_ord_id_of_its_chain(
        venue: VenueSimulator) -> None:
    """REST ClosedOrders, CancelOrder and AmendOrder found an order by any ClOrdID of its chain,
    OpenOrders only by its latest: after a FIX replace o1 -> r1, OpenOrders cl_ord_id=o1 said
    no such open order while CancelOrder cl_ord_id=o1 canceled it."""
    venue.accounts.add(ApiAccount(REST_KEY, REST_SECRET, OWNER))
    c = trading_client(venue)
    try:
        new_order(c, "o1", qty="0.02")
        oid = report(c, "o1", "0")[37]
        _replace(c, "r1", "o1")
        report(c, "r1", "5")
        for clid in ("o1", "r1"):
            listed = private_call(venue.spot_rest, REST_KEY, REST_SECRET, "OpenOrders",
                                  cl_ord_id=clid)
            assert list(listed["result"]["open"]) == [oid], (clid, listed)
        assert private_call(venue.spot_rest, REST_KEY, REST_SECRET, "OpenOrders",
                            cl_ord_id="nope")["result"]["open"] == {}
    finally:
        c.close()
