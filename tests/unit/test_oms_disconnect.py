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
    """Records the cancels; refuses them while `down` is set."""

    def __init__(self, orders: list[Order]) -> None:
        self.orders = orders
        self.sent: list[tuple[str, str, str]] = []
        self.down = False
        self.called = threading.Event()

    def open_orders(self, session: str) -> list[Order]:
        return [o for o in self.orders if o.oms_session == session and o.is_open]

    def cancel(self, o: Order, cl: str, by: str, why: str) -> str | None:
        self.called.set()
        if self.down:
            return "venue trading session not logged on"
        self.sent.append((o.oms_cl_ord_id, cl, by))
        o.status = state.CANCELED
        return None


def test_fires_after_the_delay_and_skips_orders_with_a_cancel_on_its_way() -> None:
    venue = Venue([order("A"), order("B", state.PENDING_CANCEL), order("C", state.FILLED)])
    cod = OmsDisconnectCanceller(venue.open_orders, venue.cancel)
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
    cod = OmsDisconnectCanceller(venue.open_orders, venue.cancel)
    cod.down(S, "logged out")  # not watched: nothing armed
    cod.watch(S, 0.3)
    cod.down(S, "logged out")
    cod.up(S)
    assert not venue.called.wait(0.6)


def test_not_sent_is_tried_again_while_the_session_stays_down() -> None:
    venue = Venue([order("A")])
    venue.down = True
    cod = OmsDisconnectCanceller(venue.open_orders, venue.cancel, retry_s=0.2)
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
    cod = OmsDisconnectCanceller(venue.open_orders, venue.cancel)
    cod.watch(S, 0.2)
    cod.down(S, "logged out")
    cod.close()
    cod.up(S)
    cod.down(S, "logged out")  # the gateway logging its sessions out as it stops
    assert not venue.called.wait(0.5)
