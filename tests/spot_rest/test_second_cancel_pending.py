"""Two cancels of one order over the REST fallback before the venue's Canceled reaches the
gateway: each OMS request gets one answer. The first is answered by the order's Canceled (under
its ClOrdID), the second at once with a 35=9 (CxlRejReason 3, a cancel pending) and is not sent.
The second used to take the first one's place: the first never got an answer, and the Canceled
went out unsolicited under the order's own ClOrdID.

The gateway's router and REST fallback in process against the simulator's spot REST face on
loopback (only the OMS FIX session is replaced by a recorder).
"""

from __future__ import annotations

from tests.integration.test_failover_amend import World, _place, world

__all__ = ["world"]


def _cancel(w: World, cl: str, orig: str) -> None:
    w.oms("F", [(11, cl), (41, orig), (55, "BTC/USD"), (54, "1"), (38, "0.02"),
                (60, "20260101-00:00:00")])


def _mass_cancel(w: World, cl: str) -> None:
    w.oms("q", [(11, cl), (530, "7"), (60, "20260101-00:00:00")])


def test_second_cancel_while_the_first_is_unanswered_is_refused(world: World) -> None:
    w = world
    txid = _place(w, "K1")
    _cancel(w, "K2", "K1")
    assert w.reports("K2") == []  # sent; the next poll reports it
    _cancel(w, "K3", "K1")
    (rej,) = w.reports("K3")
    assert rej[35] == "9" and rej[434] == "1" and rej[102] == "3" and rej[41] == "K1"
    assert "earlier cancel of this order (K2) has no answer yet" in rej[58]
    assert w.server.request_count("/0/private/CancelOrder") == 1
    w.fallback.poll()
    (canceled,) = w.reports("K2")
    assert (canceled[150], canceled[39], canceled[41], canceled[37]) == ("4", "4", "K1", txid)
    assert [r for r in w.sent if r.get(150) == "4"] == [canceled]


def test_mass_cancel_skips_an_order_whose_cancel_is_unanswered(world: World) -> None:
    w = world
    _place(w, "M1")
    _place(w, "M2")
    _cancel(w, "M1c", "M1")
    _mass_cancel(w, "MQ")
    assert w.server.request_count("/0/private/CancelOrder") == 2  # M1 once, M2 by the mass
    w.fallback.poll()
    (one,) = w.reports("M1c")
    assert (one[150], one[41]) == ("4", "M1")
    assert [(r[150], r[41]) for r in w.reports("MQ") if r.get(35) == "8"] == [("4", "M2")]
