"""Kraken's cancel scope in the matching engine: a FIX single cancel or cancel/replace finds
only the orders its own FIX session placed (kraken-api.md, "Cancel scope"); REST/WS calls,
status queries and mass cancels see every order of the owner."""

from __future__ import annotations

from decimal import Decimal

from gateway.venue_sim.engine import (
    TEXT_UNKNOWN_ORDER,
    Accepted,
    Canceled,
    CancelRejected,
    CxlRejCode,
    CxlRejResponseTo,
    MatchingEngine,
    OrdStatus,
    Replaced,
    Side,
)

D = Decimal
BTC = "BTC/USD"


def _order_id(eng: MatchingEngine, cl: str, origin: str | None) -> str:
    (acc,) = [e for e in eng.submit("GW", cl, BTC, Side.BUY, D("0.01"), D("30000"),
                                    origin=origin) if isinstance(e, Accepted)]
    return acc.order.order_id


def test_fix_cancel_and_replace_find_only_their_own_sessions_orders() -> None:
    eng = MatchingEngine()
    rest_id = _order_id(eng, "rest-1", None)       # placed over REST (or WS)
    other_id = _order_id(eng, "other-1", "FIX GW2")  # another FIX session of the account
    own_id = _order_id(eng, "fix-1", "FIX GW")

    for cl, oid in (("rest-1", rest_id), ("other-1", other_id)):
        # By ClOrdID and by OrderID alike: refused as an unknown order, the order untouched.
        for by in ({"orig_cl_ord_id": cl}, {"order_id": oid}):
            (rej,) = eng.cancel("GW", f"x-{cl}", session="FIX GW", **by)
            assert isinstance(rej, CancelRejected)
            assert (rej.reason_code, rej.reason, rej.ord_status, rej.order_id) == (
                CxlRejCode.UNKNOWN_ORDER, TEXT_UNKNOWN_ORDER, OrdStatus.REJECTED, None)
            assert rej.response_to is CxlRejResponseTo.CANCEL
            (rej,) = eng.replace("GW", f"r-{cl}", by.get("orig_cl_ord_id"), D("0.02"),
                                 order_id=by.get("order_id"), session="FIX GW")
            assert isinstance(rej, CancelRejected)
            assert (rej.reason_code, rej.ord_status) == (CxlRejCode.UNKNOWN_ORDER,
                                                         OrdStatus.REJECTED)
            assert rej.response_to is CxlRejResponseTo.REPLACE
        snap = eng.order_status("GW", order_id=oid)  # status is not scoped
        assert snap is not None and snap.status is OrdStatus.NEW and snap.qty == D("0.01")

    # Its own order: replaced, then canceled under the new ClOrdID (the origin stays).
    assert any(isinstance(e, Replaced) for e in eng.replace(
        "GW", "fix-2", "fix-1", D("0.02"), session="FIX GW"))
    assert any(isinstance(e, Canceled) for e in eng.cancel(
        "GW", "x-fix", "fix-2", session="FIX GW"))
    assert eng.order_status("GW", order_id=own_id).status is OrdStatus.CANCELED  # type: ignore[union-attr]

    # REST/WS (no session) reach the REST order; a mass cancel reaches every order left.
    assert any(isinstance(e, Canceled) for e in eng.cancel("GW", "x-rest", order_id=rest_id))
    canceled = [e for e in eng.mass_cancel("GW") if isinstance(e, Canceled)]
    assert [e.order.order_id for e in canceled] == [other_id]
