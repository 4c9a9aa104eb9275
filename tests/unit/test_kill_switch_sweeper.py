"""KillSwitchSweeper's re-sweeps, in process: when the order flow moves to the REST fallback
while an operator's kill switch is on, the cancels the FIX session could not carry go that
way (the logon re-sweep is tested end to end in tests/admin/test_admin.py)."""

from __future__ import annotations

import threading
from decimal import Decimal

from gateway.orders.model import Order
from gateway.server.kill_switch import KillSwitchSweeper


def _order(cl: str) -> Order:
    return Order(oms_session="FIXGW->OMS", oms_cl_ord_id=cl, venue_cl_ord_id=f"V{cl}",
                 symbol="BTC/USD", side="1", ord_type="2", qty=Decimal("1"),
                 price=Decimal("1000"), tif="1", oms_history=[cl])


class _Cancels:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []
        self.done = threading.Event()

    def __call__(self, orders: list[Order], prefix: str, by: str,
                 why: str) -> tuple[int, list[str], list[str]]:
        self.asked += [(o.oms_cl_ord_id, why) for o in orders]
        self.done.set()
        return len(orders), [], []


def test_a_move_to_rest_sweeps_again_while_the_switch_is_on() -> None:
    cancels = _Cancels()
    on = [True]
    sweeper = KillSwitchSweeper(lambda: [_order("A"), _order("B")], cancels, lambda: on[0],
                                "FIXGW->KRAKEN-TRD", settle_s=0.0)
    sweeper.transport_switched("fix", "rest", "FIX down", True)
    assert not cancels.done.wait(0.2)  # not armed: no operator's switch
    sweeper.arm()
    sweeper.transport_switched("rest", "fix", "FIX back", True)
    assert not cancels.done.wait(0.2)  # back to FIX: the logon re-sweep's business
    sweeper.transport_switched("fix", "rest", "FIX down", True)
    assert cancels.done.wait(5)
    assert [cl for cl, _ in cancels.asked] == ["A", "B"]
    assert "REST fallback" in cancels.asked[0][1]
    cancels.asked.clear()
    cancels.done.clear()
    on[0] = False  # turned off meanwhile
    sweeper.transport_switched("fix", "rest", "FIX down", True)
    assert not cancels.done.wait(0.2)
