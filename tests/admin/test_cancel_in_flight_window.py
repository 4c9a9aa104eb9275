"""`[gateway] cancel_in_flight_s` end to end: a gateway built from a config with a one-second
window, its venue (the simulator) frozen, driven through the AdminService as an operator
would. A module of its own: the stack is process-wide (QuickFIX's session registry), so it
cannot run beside test_admin's, whose cancels use the default window (the unit cases are in
tests/unit/test_cancel_in_flight.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gateway._proto.fixgw.v1 import admin_pb2, orders_pb2
from tests.admin.test_admin import (
    Stack,
    admin_stack,
    auth,
    cancel_traffic,
    canceled_in_time,
    published,
    stub,
    venue_frozen,
)

WINDOW_S = 1


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with admin_stack(tmp_path_factory.mktemp("in-flight"),
                     {"gateway.cancel_in_flight_s": WINDOW_S}) as s:
        yield s


def test_a_cancel_unanswered_past_cancel_in_flight_s_is_sent_again(stack: Stack) -> None:
    """`[gateway] cancel_in_flight_s = 1`, the venue frozen: within the second, an operator
    cancel and the kill switch send no second cancel for an order whose cancel is on its way
    (whichever sent the first); after it, each sends a new one. Once the venue resumes, each
    order is canceled once and its second cancel draws a cancel reject."""
    s = stack
    assert s.gw.router.cancel_in_flight_s == WINDOW_S
    st, op = stub(s), auth(s.operator_token)
    killed, operated = s.resting(("0.01", "1040.0"), ("0.02", "1041.0"))

    def cancel(cl: str) -> str:
        res = st.CancelOrders(admin_pb2.CancelOrdersRequest(id=cl), metadata=op)
        assert res.ok, res.message
        return str(res.message)

    def kill() -> str:
        res = st.KillSwitch(admin_pb2.KillSwitchRequest(on=True), metadata=op)
        assert res.ok and not res.partial, res.message
        return str(res.message)

    try:
        with venue_frozen(s):
            assert f"cancel sent for {operated}" in cancel(operated)
            assert "not answered yet; not sent again" in cancel(operated)
            first = kill()
            assert "cancel sent for 1 open" in first and operated in first, first
            again = kill()
            assert "cancel sent for 0 open" in again, again
            assert "2 already had a cancel on its way" in again, again
            time.sleep(WINDOW_S + 0.5)  # past the window of every cancel sent so far
            assert f"cancel sent for {operated}" in cancel(operated)
            late = kill()
            assert "cancel sent for 1 open" in late, late
            assert f"{operated}: cancel OPS-" in late and killed not in late, late
        canceled_in_time(s, [operated, killed])  # in the order the venue gets them
        asked, _ = cancel_traffic(s, [killed, operated])
        assert asked == sorted([killed, killed, operated, operated])
        # The venue refused exactly the two sent after the window (the order was closed).
        # By request: a refused cancel's event names the order by its ClOrdID of now,
        # the first cancel's, not the OMS's.
        events = published(s.gw)
        requests = [e.order.cl_ord_id for e in events if e.WhichOneof("payload") == "order"
                    and e.order.type == orders_pb2.ORDER_EVENT_TYPE_CANCEL_REQUESTED]
        refused = [e.cancel_reject.cl_ord_id for e in events
                   if e.WhichOneof("payload") == "cancel_reject"]
        assert len(requests) == 4 and sorted(refused) == sorted(requests[2:]), (
            requests, refused)
    finally:
        st.KillSwitch(admin_pb2.KillSwitchRequest(on=False), metadata=op)
