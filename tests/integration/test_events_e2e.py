"""The event stream of a running gateway, over real gRPC: orders, reports, sessions and market
data normalized into events, and a subscriber resuming across a gateway restart."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path

import grpc

from gateway._proto.fixgw.v1 import events_pb2, events_pb2_grpc
from gateway._proto.fixgw.v1 import orders_pb2 as O
from tests.conftest import Oms, make_client, new_id, order_fields
from tests.procs import Credentials, GatewayProcess, SimProcess

K = events_pb2


def _collect(port: int, req: events_pb2.SubscribeRequest, until: float,
             stop_when: object = None) -> list[events_pb2.Event]:
    got: list[events_pb2.Event] = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = events_pb2_grpc.EventServiceStub(ch)
        call = stub.Subscribe(req, timeout=max(0.1, until - time.monotonic()))
        try:
            for batch in call:
                got.extend(batch.events)
                if callable(stop_when) and stop_when(got):
                    call.cancel()
                    break
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                raise
    return got


def test_order_session_and_market_data_events_then_resume_after_restart(tmp_path: Path) -> None:
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, clients=("FIXGW", "MAKER"))
    gw = GatewayProcess(tmp_path / "gw", sim, creds)
    oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
    maker = Oms(make_client(tmp_path, sim.trading_port, "MAKER", "KRAKEN-TRD", creds))
    try:
        oms.c.start()
        maker.c.start()
        cl = new_id("EV")
        result: list[events_pb2.Event] = []

        def subscribe_orders() -> None:
            result.extend(_collect(
                gw.grpc_port,
                K.SubscribeRequest(kinds=[K.EVENT_KIND_ORDER], from_sequence=1),
                time.monotonic() + 10,
                stop_when=lambda evs: any(e.order.ord_status == O.ORD_STATUS_FILLED for e in evs
                                          if e.order.cl_ord_id == cl)))

        t = threading.Thread(target=subscribe_orders)
        t.start()
        time.sleep(0.5)
        oms.send("D", order_fields(cl, "1", "0.01", "20000.0"))
        oms.report(cl, "0")
        mk = new_id("M")
        maker.send("D", order_fields(mk, "2", "0.01", "20000.0"))
        oms.report(cl, "F")
        t.join(15)
        mine = [e for e in result if e.order.cl_ord_id == cl]
        assert [e.order.type for e in mine][:1] == [O.ORDER_EVENT_TYPE_ACCEPTED]
        reports = [e.order for e in mine if e.order.type == O.ORDER_EVENT_TYPE_EXECUTION_REPORT]
        assert [r.exec_type for r in reports] == [O.EXEC_TYPE_NEW, O.EXEC_TYPE_TRADE]
        fill = reports[-1]
        assert (Decimal(fill.last_qty), Decimal(fill.last_px), Decimal(fill.cum_qty)) == (
            Decimal("0.01"), Decimal("20000"), Decimal("0.01"))
        seqs = [e.sequence for e in result]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

        # Session and market-data events were published too.
        everything = _collect(gw.grpc_port, K.SubscribeRequest(from_sequence=1),
                              time.monotonic() + 3)
        kinds = {e.kind for e in everything}
        assert {K.EVENT_KIND_SESSION_STATUS, K.EVENT_KIND_BOOK_SNAPSHOT, K.EVENT_KIND_BOOK_DELTA,
                K.EVENT_KIND_TRADE, K.EVENT_KIND_TOP_OF_BOOK, K.EVENT_KIND_ORDER} <= kinds
        last_seen = max(e.sequence for e in everything)

        # Restart: the sequence continues and a subscriber resumes from last_seen + 1.
        gw.stop()
        gw.start()
        cl2 = new_id("EV")
        oms.send("D", order_fields(cl2, "1", "0.01", "19000.0"))
        oms.report(cl2, "0", timeout=15)
        resumed = _collect(gw.grpc_port, K.SubscribeRequest(from_sequence=last_seen + 1),
                           time.monotonic() + 3)
        assert resumed and resumed[0].sequence == last_seen + 1
        assert any(e.order.cl_ord_id == cl2 for e in resumed)
        # The old events are still served after the restart (journal on disk).
        old = _collect(gw.grpc_port, K.SubscribeRequest(from_sequence=1,
                                                        kinds=[K.EVENT_KIND_ORDER]),
                       time.monotonic() + 2)
        assert any(e.order.cl_ord_id == cl for e in old)
    finally:
        oms.c.stop()
        maker.c.stop()
        gw.stop()
        sim.stop()
