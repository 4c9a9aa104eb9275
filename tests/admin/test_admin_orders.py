"""AdminService ListOrders and CancelOrders against a real in-process gateway and the simulator:
orders found by any of their ids, filters, and operator cancels observed on the OMS's FIX wire,
in the audit log and on the event stream."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal

import grpc
import pytest

from gateway._proto.fixgw.v1 import admin_pb2, common_pb2, orders_pb2
from gateway.admin.audit import read_audit
from gateway.fix.client import Received
from gateway.fix.messages import utc_timestamp
from gateway.orders.model import Order
from tests.admin.test_admin import OMS_NAME, TRD_NAME, Stack, admin_stack, auth, published, stub
from tests.conftest import new_id, wait_until


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with admin_stack(tmp_path_factory.mktemp("admin-orders")) as s:
        wait_until(lambda: s.gw.router.venue.is_up(), 20, "venue up")
        yield s


def resting(s: Stack, qty: str, price: str, symbol: str = "BTC/USD") -> str:
    """A buy far below the market, so it rests; returns its ClOrdID once the venue took it."""
    cl = s.oms.buy(qty, price, symbol=symbol)
    s.oms.report(cl, "0")
    return cl


def list_orders(s: Stack, token: str | None = None, **kw: object) -> admin_pb2.ListOrdersResponse:
    resp: admin_pb2.ListOrdersResponse = stub(s).ListOrders(
        admin_pb2.ListOrdersRequest(**kw),  # type: ignore[arg-type]
        metadata=auth(token or s.read_only_token))
    return resp


def cancel(s: Stack, **kw: object) -> admin_pb2.ActionResult:
    res: admin_pb2.ActionResult = stub(s).CancelOrders(
        admin_pb2.CancelOrdersRequest(**kw),  # type: ignore[arg-type]
        metadata=auth(s.operator_token))
    return res


def canceled_by_operator(s: Stack, cl: str) -> Received:
    """The unsolicited Canceled report the OMS gets for its order `cl`."""
    def match(r: Received) -> bool:
        return r.msg_type == "8" and r.fields.get(150) == "4" and r.fields.get(41) == cl
    return s.oms.expect(match)


def test_an_order_is_found_by_each_of_its_ids(stack: Stack) -> None:
    cl = resting(stack, "0.01", "1000.0")
    rcl = new_id("R")
    stack.oms.send("G", [(11, rcl), (41, cl), (55, "BTC/USD"), (54, "1"), (38, "0.02"),
                         (40, "2"), (44, "1001.5"), (60, utc_timestamp())])
    stack.oms.report(rcl, "5")
    (o,) = list_orders(stack, id=cl).orders  # read-only may look
    assert (o.oms_session, o.cl_ord_id, list(o.cl_ord_id_history)) == (OMS_NAME, rcl, [cl, rcl])
    assert (o.symbol, o.side, o.ord_type, o.time_in_force) == ("BTC/USD", "buy", "2", "1")
    # Decimal strings as the venue last reported them (trailing zeros kept), never "0E-8".
    figures = [o.order_qty, o.price, o.cum_qty, o.leaves_qty, o.avg_px]
    assert all(re.fullmatch(r"\d+(\.\d+)?", f) for f in figures), figures
    assert [Decimal(f) for f in figures] == [Decimal("0.02"), Decimal("1001.5"), 0,
                                             Decimal("0.02"), 0]
    assert (o.status, o.open, o.transport) == ("New", True, "fix")
    assert o.order_id and o.venue_cl_ord_id in o.venue_cl_ord_ids
    assert len(o.venue_cl_ord_ids) == 2 and not o.HasField("closed_time")
    for other in (rcl, o.order_id, o.venue_cl_ord_ids[0], o.venue_cl_ord_id):
        assert [x.cl_ord_id for x in list_orders(stack, id=other).orders] == [rcl], other
    assert list_orders(stack, id="no-such-order").matched == 0


def test_filters_newest_first_and_limit(stack: Stack) -> None:
    btc = resting(stack, "0.01", "1002.0")
    eth = resting(stack, "0.1", "50.0", symbol="ETH/USD")
    mine = list_orders(stack, session="OMS")  # the OMS's CompID names its session
    assert [o.cl_ord_id for o in mine.orders][:2] == [eth, btc]  # newest first
    assert mine.matched == len(mine.orders) >= 2
    assert all(o.open for o in mine.orders)
    assert list_orders(stack, session=OMS_NAME).matched == mine.matched
    by_symbol = list_orders(stack, symbol="eth/usd").orders
    assert eth in [o.cl_ord_id for o in by_symbol] and {o.symbol for o in by_symbol} == {"ETH/USD"}
    one = list_orders(stack, limit=1)
    assert len(one.orders) == 1 and one.matched >= 2 and one.orders[0].cl_ord_id == eth
    with pytest.raises(grpc.RpcError) as exc:
        list_orders(stack, session=TRD_NAME)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert "venue session" in (exc.value.details() or "")
    with pytest.raises(grpc.RpcError) as exc:
        list_orders(stack, session="NOPE")
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_cancel_one_order_reaches_its_oms(stack: Stack) -> None:
    keep = resting(stack, "0.01", "1003.0")
    cl = resting(stack, "0.01", "1004.0")
    res = cancel(stack, id=cl)
    assert res.ok and f"cancel sent for {cl} ({OMS_NAME}, BTC/USD)" in res.message, res.message
    er = canceled_by_operator(stack, cl)
    assert er.fields[11].startswith("OPS-") and er.fields[39] == "4"
    wait_until(lambda: not list_orders(stack, id=cl).orders[0].open, 10, "order closed")
    (o,) = list_orders(stack, id=cl).orders
    assert o.status == "Canceled" and o.HasField("closed_time")
    # As after any cancel in FIX, the order's ClOrdID is now the cancel's.
    assert list(o.cl_ord_id_history) == [cl, er.fields[11]] and o.cl_ord_id == er.fields[11]
    assert cl not in [x.cl_ord_id_history[0] for x in list_orders(stack).orders]
    assert cl in [x.cl_ord_id_history[0]
                  for x in list_orders(stack, include_closed=True).orders]
    assert keep in [x.cl_ord_id for x in list_orders(stack).orders]  # only that one
    again = cancel(stack, id=cl)
    assert not again.ok and "is Canceled: nothing to cancel" in again.message
    unknown = cancel(stack, id="no-such-order")
    assert not unknown.ok and "no order named no-such-order" in unknown.message
    rec = [r for r in read_audit(stack.audit_path) if r["what"] == "cancel_orders"]
    assert [r["result"]["ok"] for r in rec[-3:]] == [True, False, False]
    assert rec[-3]["args"] == {"id": cl}
    asked = [e.order for e in published(stack.gw) if e.WhichOneof("payload") == "order"
             and e.order.type == orders_pb2.ORDER_EVENT_TYPE_CANCEL_REQUESTED]
    assert [(a.orig_cl_ord_id, a.cl_ord_id) for a in asked][-1] == (cl, er.fields[11])
    assert asked[-1].text.startswith("canceled by operator operator:")


def test_cancel_by_session_and_symbol(stack: Stack) -> None:
    btc = resting(stack, "0.01", "1005.0")
    eth = resting(stack, "0.1", "51.0", symbol="ETH/USD")
    res = cancel(stack, session="OMS", symbol="ETH/USD")
    assert res.ok and res.message.startswith("cancel sent for "), res.message
    canceled_by_operator(stack, eth)
    wait_until(lambda: not list_orders(stack, id=eth).orders[0].open, 10, "ETH order closed")
    assert list_orders(stack, id=btc).orders[0].open
    assert not list_orders(stack, symbol="ETH/USD").orders
    nothing = cancel(stack, symbol="ETH/USD")
    assert nothing.ok and "nothing to cancel" in nothing.message
    for bad, says in (({}, "say which orders"), ({"all": True, "symbol": "BTC/USD"}, "alone"),
                      ({"session": TRD_NAME}, "venue session")):
        refused = cancel(stack, **bad)
        assert not refused.ok and says in refused.message, (bad, refused.message)
    with pytest.raises(grpc.RpcError) as exc:
        stub(stack).CancelOrders(admin_pb2.CancelOrdersRequest(id=btc),
                                 metadata=auth(stack.read_only_token))
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    everything = cancel(stack, all=True)
    assert everything.ok, everything.message
    canceled_by_operator(stack, btc)
    wait_until(lambda: not list_orders(stack).orders, 10, "no open order left")


def test_a_venue_refusal_is_not_sent_to_the_oms(stack: Stack) -> None:
    """An operator's cancel the venue refuses (the order filled meanwhile, or the venue lost it)
    reaches ops and the event stream, not the OMS, which asked for nothing."""
    cl = resting(stack, "0.01", "1006.0")
    order = stack.gw.router.store.find(OMS_NAME, cl)
    assert order is not None
    real = order.venue_cl_ord_id, order.order_id
    # Ids the venue never saw, as if it had lost the order: it refuses the cancel.
    order.venue_cl_ord_id, order.order_id = "999", ""
    try:
        assert cancel(stack, id=cl).ok
        wait_until(lambda: any(e.WhichOneof("payload") == "cancel_reject"
                               and e.cancel_reject.orig_cl_ord_id == cl
                               for e in published(stack.gw)), 10, "cancel reject event")
    finally:
        order.venue_cl_ord_id, order.order_id = real
    # The event names the order and what the venue said (its 35=9's 434, 102 and 39).
    (ev,) = [e for e in published(stack.gw) if e.WhichOneof("payload") == "cancel_reject"
             and e.cancel_reject.orig_cl_ord_id == cl]
    assert (ev.symbol, ev.source.session) == ("BTC/USD", OMS_NAME)
    cr = ev.cancel_reject
    assert cr.cl_ord_id.startswith("OPS-") and cr.side == common_pb2.SIDE_BUY
    assert cr.response_to == orders_pb2.CXL_REJ_RESPONSE_TO_ORDER_CANCEL_REQUEST
    assert cr.HasField("cxl_rej_reason") and cr.ord_status != orders_pb2.ORD_STATUS_UNSPECIFIED
    assert cr.order_id
    with pytest.raises(TimeoutError):
        stack.oms.expect(lambda r: r.msg_type == "9", timeout=1.0)
    assert list_orders(stack, id=cl).orders[0].open
    assert cancel(stack, id=cl).ok
    canceled_by_operator(stack, cl)


def test_status_while_the_venue_is_logged_out_comes_from_the_record(stack: Stack) -> None:
    """With the venue session down (an operator's Logout), an OrderStatusRequest is answered
    from the gateway's record, and its figures are FIX decimals: the venue reported the
    order's CumQty as 0.00000000, which Python's str() would write as 0E-8."""
    cl = resting(stack, "0.01", "1007.0")
    op = auth(stack.operator_token)
    assert stub(stack).Logout(admin_pb2.LogoutRequest(name=TRD_NAME), metadata=op).ok
    try:
        wait_until(lambda: not stack.gw.router.venue.is_up(), 10, "venue down")
        stack.oms.send("H", [(11, cl), (55, "BTC/USD"), (54, "1")])
        er = stack.oms.report(cl, "I")
        assert "from the gateway's record" in er.fields[58] and er.fields[39] == "0"
        for tag in (38, 14, 151, 6):
            assert re.fullmatch(r"\d+(\.\d+)?", er.fields[tag]), (tag, er.fields[tag])
        assert Decimal(er.fields[151]) == Decimal("0.01") and Decimal(er.fields[14]) == 0
    finally:
        assert stub(stack).Logon(admin_pb2.LogonRequest(name=TRD_NAME), metadata=op).ok
        wait_until(lambda: stack.gw.router.venue.is_up(), 20, "venue back")


def test_cancel_all_with_some_not_sent_is_done_in_part(stack: Stack) -> None:
    """`cancel --all` that cancels one order and cannot send another (an order of an OMS
    session the configuration no longer has, as a restart after dropping it leaves one): ok,
    but partial, naming the one not sent; fixgwctl exits 6, not 0."""
    cl = resting(stack, "0.01", "1008.0")
    ghost = Order(oms_session="FIXGW->GONE", oms_cl_ord_id=new_id("G"),
                  venue_cl_ord_id=stack.gw.store.venue_ids.next(), symbol="BTC/USD", side="1",
                  ord_type="2", qty=Decimal("0.01"), price=Decimal("1009.0"), tif="1",
                  status="0", oms_history=[])
    ghost.oms_history.append(ghost.oms_cl_ord_id)
    stack.gw.store.add_order(ghost)
    res = cancel(stack, all=True)
    assert res.ok and res.partial, res.message
    assert "1 NOT sent" in res.message and ghost.oms_cl_ord_id in res.message
    assert "not in this gateway's configuration" in res.message
    canceled_by_operator(stack, cl)
    refused = cancel(stack, id=ghost.oms_cl_ord_id)
    assert not refused.ok and not refused.partial  # nothing sent: refused, not partial
