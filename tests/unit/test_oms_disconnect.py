"""OmsDisconnectCanceller on its own: arming, disarming, retries, and stopping."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from gateway.orders import state
from gateway.orders.model import Order
from gateway.routing.oms_disconnect import OmsDisconnectCanceller

S = "FIXGW->OMS"


def order(cl: str, status: str = state.NEW) -> Order:
    return Order(S, cl, "1", "BTC/USD", "1", "2", Decimal("0.01"), Decimal("1000"), "1",
                 status=status, oms_history=[cl])


class Venue:
    """Records the cancels; refuses them while `down` is set. `cancel_each` stands for
    `Router.cancel_each_unasked`, which takes an order in PendingCancel for one with a cancel
    on its way (the router asks its journal)."""

    def __init__(self, orders: list[Order]) -> None:
        self.orders = orders
        self.sent: list[tuple[str, str, str]] = []
        self.down = False
        self.called = threading.Event()

    def open_orders(self, session: str) -> list[Order]:
        return [o for o in self.orders if o.oms_session == session and o.is_open]

    def cancel_each(self, orders: list[Order], prefix: str, by: str,
                    why: str) -> tuple[int, list[str], list[str]]:
        self.called.set()
        sent, not_sent, already = 0, [], []
        for n, o in enumerate(orders):
            if o.status == state.PENDING_CANCEL:
                already.append(f"{o.oms_cl_ord_id}: a cancel is on its way")
            elif self.down:
                not_sent.append(f"{o.oms_cl_ord_id}: venue trading session not logged on")
            else:
                self.sent.append((o.oms_cl_ord_id, f"{prefix}-{n}", by))
                o.status = state.CANCELED
                sent += 1
        return sent, not_sent, already


def test_fires_after_the_delay_and_skips_orders_with_a_cancel_on_its_way() -> None:
    venue = Venue([order("A"), order("B", state.PENDING_CANCEL), order("C", state.FILLED)])
    cod = OmsDisconnectCanceller(venue.open_orders, venue.cancel_each)
    cod.watch(S, 0.2)
    t0 = time.monotonic()
    cod.down(S, "logged out")
    assert venue.called.wait(5)
    assert time.monotonic() - t0 >= 0.2
    time.sleep(0.05)
    assert [(cl, by) for cl, _req, by in venue.sent] == [("A", "cancel_on_disconnect")]
    assert venue.sent[0][1].startswith("COD-")


def test_logging_on_in_time_disarms_and_unwatched_sessions_are_ignored() -> None:
    venue = Venue([order("A")])
    cod = OmsDisconnectCanceller(venue.open_orders, venue.cancel_each)
    cod.down(S, "logged out")  # not watched: nothing armed
    cod.watch(S, 0.3)
    cod.down(S, "logged out")
    cod.up(S)
    assert not venue.called.wait(0.6)


def test_not_sent_is_tried_again_while_the_session_stays_down() -> None:
    venue = Venue([order("A")])
    venue.down = True
    cod = OmsDisconnectCanceller(venue.open_orders, venue.cancel_each, retry_s=0.2)
    cod.watch(S, 0.05)
    cod.down(S, "logged out")
    assert venue.called.wait(5)
    venue.down = False
    deadline = time.monotonic() + 5
    while not venue.sent:
        assert time.monotonic() < deadline, "not retried"
        time.sleep(0.05)
    assert [cl for cl, _req, _by in venue.sent] == ["A"]


def test_close_cancels_what_is_armed_and_arms_nothing_more() -> None:
    venue = Venue([order("A")])
    cod = OmsDisconnectCanceller(venue.open_orders, venue.cancel_each)
    cod.watch(S, 0.2)
    cod.down(S, "logged out")
    cod.close()
    cod.up(S)
    cod.down(S, "logged out")  # the gateway logging its sessions out as it stops
    assert not venue.called.wait(0.5)
