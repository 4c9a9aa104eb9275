"""The pieces under the endpoint, by hand: histogram bucketing at the bounds, the counters under
concurrent writers, and the sink fan-out (no wrapper for one sink; one failing sink does not
stop the others)."""

from __future__ import annotations

import threading
from decimal import Decimal

from gateway.fix.application import StatusBoard, counted
from gateway.metrics import GatewayMetrics, LatencyHistogram
from gateway.metrics.collector import _Shards
from gateway.orders.model import Order
from gateway.routing.sinks import FanoutSink, NullSink, fan_out


def test_histogram_le_semantics_and_cumulative_snapshot() -> None:
    h = LatencyHistogram((0.001, 0.01, 0.1))
    for s in (0.0005, 0.001, 0.0011, 0.01, 0.5, 2.0):
        h.observe(s)
    buckets, total = h.snapshot()
    # A sample equal to a bound is in that bucket ("le"), and buckets are cumulative.
    assert buckets == [("0.001", 2), ("0.01", 4), ("0.1", 4), ("+Inf", 6)]
    assert abs(total - (0.0005 + 0.001 + 0.0011 + 0.01 + 0.5 + 2.0)) < 1e-12


def test_counters_lose_nothing_under_concurrent_writers() -> None:
    shards = _Shards()
    board = StatusBoard()
    import itertools

    c = board.out.setdefault((1, "8"), itertools.count())
    per_thread, threads = 20_000, 4

    def work() -> None:
        for _ in range(per_thread):
            shards.inc(("s", "k"))
            next(c)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert shards.totals() == {("s", "k"): per_thread * threads}
    assert counted(c) == per_thread * threads


class _Recorder(NullSink):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def cancel_rejected(self, oms_session: str, cl_ord_id: str, orig_cl_ord_id: str,
                        text: str, *, order: Order | None = None,
                        response_to: str | None = None, reason: str | None = None,
                        ord_status: str | None = None, order_id: str | None = None) -> None:
        self.seen.append(f"{cl_ord_id}/{response_to}/{reason}")


class _Broken(NullSink):
    def cancel_rejected(self, oms_session: str, cl_ord_id: str, orig_cl_ord_id: str,
                        text: str, *, order: Order | None = None,
                        response_to: str | None = None, reason: str | None = None,
                        ord_status: str | None = None, order_id: str | None = None) -> None:
        raise RuntimeError("boom")


def test_fan_out_wraps_only_when_needed_and_isolates_failures() -> None:
    a, b = _Recorder(), _Recorder()
    assert fan_out(a) is a
    assert fan_out(None, NullSink(), a) is a
    assert isinstance(fan_out(), NullSink)
    both = fan_out(a, _Broken(), b)
    assert isinstance(both, FanoutSink)
    both.cancel_rejected("OMS", "X1", "C1", "too late", response_to="2", reason="0")
    assert a.seen == ["X1/2/0"] and b.seen == ["X1/2/0"]  # every argument passed on
    # Fanning out a fan-out flattens it.
    again = fan_out(both, _Recorder())
    assert isinstance(again, FanoutSink) and len(again.sinks) == 4


def test_latency_sample_only_for_routed_orders() -> None:
    board = StatusBoard()
    st = board.get("FIXGW->OMS", "oms")
    m = GatewayMetrics(board)
    sink = m.sink
    from gateway.risk.gate import GateDecision, GateOrder

    allow = GateDecision("allow", None, "", (), (), None, False)
    block = GateDecision("block", "max_qty", "too big", (), (), None, False)
    go = GateOrder("BTC/USD", "1", Decimal("1"), Decimal("1"), "2", "FIXGW->OMS", "")
    st.last_received = 1.0
    sink.gate_decided(go, "C1", allow)
    sink.gate_decided(go, "C2", block)
    sink.order_rejected("FIXGW->OMS", "C2", "BTC/USD", "3", "too big")
    order = Order(oms_session="FIXGW->OMS", oms_cl_ord_id="C1", venue_cl_ord_id="1",
                  symbol="BTC/USD", side="1", ord_type="2", qty=Decimal("1"),
                  price=Decimal("1"), tif="1", account="", transport="fix",
                  oms_history=["C1"])
    sink.execution(order, "0", "0", "E1", None, None)
    sink.execution(order, "F", "2", "E2", Decimal("1"), Decimal("1"))  # not a second sample
    buckets, _ = sink.latency.snapshot()
    assert buckets[-1] == ("+Inf", 1)
    assert sink.gate.totals() == {("none", "allow"): 1, ("max_qty", "block"): 1}
    assert sink.rejects.totals() == {("FIXGW->OMS", "order", "order_exceeds_limit"): 1}
