"""An OMS mass cancel's TotalAffectedOrders (533) is the number of cancels it sends, in process
(the venue session is a recorder, as in tests/unit/test_router_doubt, so that a fill can land
between the listing of the orders and the 35=r, and a cancel can stay unanswered): an order
that closed meanwhile is neither canceled nor counted, and one with a cancel already on its
way gets no second one, is not counted, and reaches the OMS as Canceled under the ClOrdID of
the request that canceled it."""

from __future__ import annotations

import pytest

from gateway.orders import state
from gateway.orders.model import Order
from gateway.routing.router import Router
from tests.unit.test_cancel_in_flight import _cancels_sent, _message, _oms_cancels, _resting
from tests.unit.test_router_doubt import SID, _World, world

__all__ = ["world"]  # the fixture, shared with test_router_doubt


def _mass_cancel(w: _World, cl: str) -> dict[int, str]:
    """The OMS cancels all its orders (35=q, type 7); its 35=r."""
    f = {"35": "q", "11": cl, "530": "7", "60": "20260101-00:00:00"}
    w.router.on_oms_message(_message(f), SID, f)
    (rep,) = [r for r in w.oms_got if r[35] == "r" and r[11] == cl]
    return rep


def _filled(w: _World, o: Order) -> None:
    """The venue's Filled for `o`, on its own thread in the gateway (here, in between)."""
    w.report({"11": o.venue_cl_ord_id, "37": o.order_id, "17": f"E-{o.oms_cl_ord_id}-fill",
              "150": "F", "39": "2", "55": "BTC/USD", "54": "1", "38": "0.01", "14": "0.01",
              "6": "30000", "151": "0", "32": "0.01", "31": "30000"}, "fix")


def test_an_order_filled_while_the_mass_cancel_lists_its_orders_is_not_counted(
        world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A and B rest; B fills after the mass cancel listed the open orders and before its
    35=r. The 35=r used to say 2 affected and a cancel went out for the filled B (the venue
    refuses it); now it says 1, and only A's cancel goes out."""
    w = world
    a, b = _resting(w, "A"), _resting(w, "B")
    listed = Router._mass_targets

    def fill_b_meanwhile(self: Router, *args: str | None) -> list[Order]:
        found = listed(self, *args)  # type: ignore[arg-type]
        _filled(w, b)
        return found

    monkeypatch.setattr(Router, "_mass_targets", fill_b_meanwhile)
    rep = _mass_cancel(w, "M1")
    assert b.status == state.FILLED
    assert rep[533] == "1"
    sent = _cancels_sent(w)
    assert [w.store.venue_ref(v).order_key[1] for v in sent] == ["A"]  # type: ignore[union-attr]
    assert a.is_open


def test_an_order_whose_cancel_is_on_its_way_gets_no_second_one_and_is_canceled_under_it(
        world: _World) -> None:
    """A and B rest; the OMS cancels A (C1, not answered yet), then cancels everything. Only
    B gets the mass cancel's cancel (533=1), and A's Canceled reaches the OMS under C1 with
    OrigClOrdID A, as the venue answers C1. It used to get a second cancel, counted in 533,
    which the venue refuses once C1 has closed A."""
    w = world
    a, b = _resting(w, "A"), _resting(w, "B")
    _oms_cancels(w, "C1", "A")
    (c1_vid,) = _cancels_sent(w)
    rep = _mass_cancel(w, "M1")
    assert rep[533] == "1"
    mass_vids = _cancels_sent(w)[1:]
    assert [w.store.venue_ref(v).order_key[1] for v in mass_vids] == ["B"]  # type: ignore[union-attr]
    w.report({"11": c1_vid, "41": a.venue_cl_ord_id, "37": a.order_id, "17": "X-C1",
              "150": "4", "39": "4", "55": "BTC/USD", "54": "1", "38": "0.01", "14": "0",
              "6": "0", "151": "0"}, "fix")
    (canceled,) = [r for r in w.oms_got if r.get(35) == "8" and r.get(150) == "4"]
    assert (canceled[11], canceled[41], canceled[39]) == ("C1", "A", "4")
    (vid_b,) = mass_vids
    w.report({"11": vid_b, "41": b.venue_cl_ord_id, "37": b.order_id, "17": "X-MB",
              "150": "4", "39": "4", "55": "BTC/USD", "54": "1", "38": "0.01", "14": "0",
              "6": "0", "151": "0"}, "fix")
    canceled_b = [r for r in w.oms_got if r.get(35) == "8" and r.get(150) == "4"][1]
    assert (canceled_b[11], canceled_b[41]) == ("M1", "B")
    assert not a.is_open and not b.is_open
