"""A replace (35=G) the gateway refuses before it reaches the venue because of the order's own
fills, in process (the venue session is a recorder, as in test_router_doubt)."""

from __future__ import annotations

from decimal import Decimal

from tests.unit.test_cancel_in_flight import _message, _resting
from tests.unit.test_router_doubt import SID, _World, world

__all__ = ["world"]  # the fixture, shared with test_router_doubt


def test_a_replace_down_to_the_filled_quantity_is_refused_with_the_figures(
        world: _World) -> None:
    """FIX's OrderQty is the whole order, fills included: a replace to no more than what is
    filled would leave nothing to work. The OMS gets a 35=9 saying so, with the figures, and
    nothing goes to the venue; a replace above the fills goes."""
    w = world
    order = _resting(w, "R1")
    w.report({"11": order.venue_cl_ord_id, "37": "O-R1", "17": "E-R1-fill", "150": "F",
              "39": "1", "55": "BTC/USD", "54": "1", "38": "0.01", "14": "0.006", "6": "1000",
              "151": "0.004", "31": "1000", "32": "0.006"}, "fix")
    assert order.cum_qty == Decimal("0.006")
    sent_before = len(w.venue.sent)
    for cl, qty in (("R1-A", "0.006"), ("R1-B", "0.005")):
        f = {"35": "G", "11": cl, "41": "R1", "55": "BTC/USD", "54": "1", "38": qty,
             "40": "2", "44": "1000", "60": "20260101-00:00:00"}
        w.router.on_oms_message(_message(f), SID, f)
        (rej,) = [r for r in w.oms_got if r[35] == "9" and r[11] == cl]
        assert rej[434] == "2" and rej[58] == (
            f"OrderQty {qty} is not above the 0.006 already filled: nothing would be left to "
            "work; cancel the order instead"), rej
    assert len(w.venue.sent) == sent_before
    f = {"35": "G", "11": "R1-C", "41": "R1", "55": "BTC/USD", "54": "1", "38": "0.008",
         "40": "2", "44": "1000", "60": "20260101-00:00:00"}
    w.router.on_oms_message(_message(f), SID, f)
    assert [s[35] for s in w.venue.sent[sent_before:]] == ["G"]
