"""Which orders have a cancel on its way (`Router.cancel_in_flight`), in process (the venue
session is a recorder, as in test_router_doubt): the kill switch's sweeps and operator cancels
skip them, the mark goes when the cancel is answered, and a restart rebuilds it from the
journal without keeping it for ever (the end-to-end cases, with a frozen simulator, are in
tests/admin)."""

from __future__ import annotations

import time

import quickfix as fix

from gateway.fix import messages as m
from gateway.orders import state
from gateway.orders.model import Order
from gateway.orders.store import OrderStore
from gateway.risk.validation import OrderValidator
from gateway.routing.router import Router
from tests.unit.test_router_doubt import KEY, SID, _new_order, _World, world

__all__ = ["world"]  # the fixture, shared with test_router_doubt


def _resting(w: _World, cl: str) -> Order:
    """An OMS order the venue acknowledged (New)."""
    _new_order(w, cl)
    order = w.store.find(KEY, cl)
    assert order is not None
    w.report({"11": order.venue_cl_ord_id, "37": f"O-{cl}", "17": f"E-{cl}-new", "150": "0",
              "39": "0", "55": "BTC/USD", "54": "1", "38": "0.01", "14": "0", "6": "0",
              "151": "0.01"}, "fix")
    assert order.status == state.NEW
    return order


def _sweep(w: _World, order: Order) -> tuple[int, list[str], list[str]]:
    return w.router.cancel_each_unasked([order], "KILL", "kill_switch", "test")


def _cancels_sent(w: _World) -> list[str]:
    """The venue ClOrdIDs of the cancels sent to the venue, in order."""
    return [s[11] for s in w.venue.sent if s[35] == "F"]


def _message(f: dict[str, str]) -> fix.Message:
    """The QuickFIX message of `f` (tag -> value, 35 among them), as fromApp hands it over."""
    msg = m.new_message(f["35"])
    for tag, value in f.items():
        if tag != "35":
            msg.setField(int(tag), value)
    return msg


def _venue_refuses(w: _World, order: Order, vid: str) -> None:
    f = {"35": "9", "11": vid, "41": order.venue_cl_ord_id, "37": order.order_id, "39": "0",
         "434": "1", "102": "1", "58": "order already closed"}
    w.router.on_venue_message(_message(f), f)


def _oms_cancels(w: _World, cl: str, orig: str) -> None:
    """The OMS asks to cancel its order `orig` under ClOrdID `cl`."""
    f = {"35": "F", "11": cl, "41": orig, "55": "BTC/USD", "54": "1", "38": "0.01",
         "60": "20260101-00:00:00"}
    w.router.on_oms_message(_message(f), SID, f)


def test_a_second_sweep_sends_no_second_cancel_until_the_first_is_answered(
        world: _World) -> None:
    w = world
    order = _resting(w, "C1")
    assert _sweep(w, order) == (1, [], [])
    (vid,) = _cancels_sent(w)
    on_its_way = w.router.cancel_in_flight(order)
    assert on_its_way is not None and on_its_way.venue_cl_ord_id == vid
    assert on_its_way.cl_ord_id.startswith("KILL-")
    sent, not_sent, already = _sweep(w, order)
    assert (sent, not_sent) == (0, [])
    assert len(already) == 1 and already[0].startswith(f"C1: cancel {on_its_way.cl_ord_id} sent")
    assert _cancels_sent(w) == [vid]  # status still New: only the mark stopped it
    # The venue refuses it (say the order was being filled): nothing on its way any more,
    # so the next sweep sends a new cancel.
    _venue_refuses(w, order, vid)
    assert w.router.cancel_in_flight(order) is None
    assert _sweep(w, order)[0] == 1 and len(_cancels_sent(w)) == 2


def test_the_oms_own_cancel_on_its_way_is_not_doubled(world: _World) -> None:
    w = world
    order = _resting(w, "C2")
    _oms_cancels(w, "C2-X", "C2")
    assert len(_cancels_sent(w)) == 1
    sent, _, already = _sweep(w, order)
    assert sent == 0 and already[0].startswith("C2: cancel C2-X sent")


def test_cancel_on_disconnect_does_not_double_the_oms_own_cancel(world: _World) -> None:
    """The OMS cancels, then drops before the venue answers: its cancel-on-disconnect sweep
    (through the same `cancel_each_unasked`) sends no second cancel for that order, and
    cancels the one without."""
    w = world
    order, other = _resting(w, "C5"), _resting(w, "C6")
    _oms_cancels(w, "C5-X", "C5")
    (oms_cancel,) = _cancels_sent(w)
    w.router.disconnects.watch(KEY, 0.0)
    w.router.disconnects.down(KEY, "logged out")
    deadline = time.monotonic() + 5
    while len(_cancels_sent(w)) < 2:
        assert time.monotonic() < deadline, "cancel on disconnect did not fire"
        time.sleep(0.01)
    time.sleep(0.1)
    sent = _cancels_sent(w)
    assert sent[0] == oms_cancel and len(sent) == 2, sent
    assert w.router.cancel_in_flight(other) is not None
    on_its_way = w.router.cancel_in_flight(order)
    assert on_its_way is not None and on_its_way.cl_ord_id == "C5-X"

def test_the_mark_goes_when_the_order_closes(world: _World) -> None:
    w = world
    order = _resting(w, "C3")
    _sweep(w, order)
    (vid,) = _cancels_sent(w)
    w.report({"11": vid, "41": order.venue_cl_ord_id, "37": "O-C3", "17": "E-C3-cxl",
              "150": "4", "39": "4", "55": "BTC/USD", "54": "1", "38": "0.01", "14": "0",
              "6": "0", "151": "0"}, "fix")
    assert not order.is_open and w.router.cancel_in_flight(order) is None
    assert w.store.unanswered_cancel(order) is None


def test_a_cancel_unanswered_too_long_no_longer_stops_a_new_one(world: _World) -> None:
    w = world
    order = _resting(w, "C4")
    _sweep(w, order)
    w.router.cancel_in_flight_s = 0.05
    time.sleep(0.1)
    assert w.router.cancel_in_flight(order) is None
    assert _sweep(w, order)[0] == 1 and len(_cancels_sent(w)) == 2


def test_a_fix_cancel_from_before_the_last_logon_was_lost_unless_acknowledged(
        world: _World) -> None:
    """The venue session keeps no copy of what it sent: a cancel written before a
    disconnect and unanswered after the next logon may never have reached the venue. One the
    venue acknowledged (PendingCancel) did."""
    w = world
    lost, acked = _resting(w, "C5"), _resting(w, "C6")
    _sweep(w, lost)
    _sweep(w, acked)
    vid = _cancels_sent(w)[1]
    w.report({"11": vid, "41": acked.venue_cl_ord_id, "37": "O-C6", "17": "E-C6-pc",
              "150": "6", "39": "6", "55": "BTC/USD", "54": "1", "38": "0.01", "14": "0",
              "6": "0", "151": "0.01"}, "fix")
    time.sleep(0.002)
    w.router.venue.logged_on_ms = time.time_ns() // 1_000_000 + 1  # a logon since
    assert w.router.cancel_in_flight(lost) is None
    assert w.router.cancel_in_flight(acked) is not None


def test_a_restart_rebuilds_the_mark_from_the_journal(world: _World) -> None:
    """A restarted gateway knows the cancels the journal holds unanswered (one answered
    before the stop is not), until its own venue logon says the connection they went on is
    gone; the one it sends again then (`_send_unanswered_requests`) is on its way again."""
    w = world
    pending, refused = _resting(w, "C7"), _resting(w, "C8")
    _sweep(w, pending)
    _sweep(w, refused)
    _venue_refuses(w, refused, _cancels_sent(w)[1])
    w.store.close()
    store = OrderStore(w.store._journal.path, fsync_interval_ms=0)  # what a restart reads
    try:
        router = Router(store, OrderValidator(lambda s: s == "BTC/USD"))
        router.register_oms(SID, ())
        router.venue.session = w.venue  # type: ignore[assignment]
        again, closed_out = store.find(KEY, "C7"), store.find(KEY, "C8")
        assert again is not None and closed_out is not None
        on_its_way = router.cancel_in_flight(again)
        assert on_its_way is not None and on_its_way.venue_cl_ord_id == _cancels_sent(w)[0]
        assert router.cancel_in_flight(closed_out) is None
        time.sleep(0.002)
        router.venue.logged_on, router.venue.logged_on_ms = True, time.time_ns() // 1_000_000
        assert router.cancel_in_flight(again) is None  # sent on a connection now gone
        assert router.find_unanswered_requests() == 1
        router._send_unanswered_requests()
        assert _cancels_sent(w)[-1] == on_its_way.venue_cl_ord_id  # the same, sent again
        assert router.cancel_in_flight(again) is not None
    finally:
        store.close()
