"""The event stream of a running gateway, over real gRPC: orders, reports, sessions and market
data normalized into events, and a subscriber resuming across a gateway restart."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from gateway._proto.fixgw.v1 import common_pb2 as C
from gateway._proto.fixgw.v1 import events_pb2, events_pb2_grpc, signals_pb2, signals_pb2_grpc
from gateway._proto.fixgw.v1 import orders_pb2 as O
from tests.conftest import Oms, make_client, new_id, order_fields
from tests.procs import Credentials, GatewayProcess, SimProcess, stop_all
from tests.tls.certs import make_pki, openssl_available

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


def _newest(port: int) -> int:
    """The sequence of the newest event in the gateway's log now."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        info = events_pb2_grpc.EventServiceStub(ch).GetLogInfo(K.GetLogInfoRequest(), timeout=10)
    return int(info.next_sequence) - 1


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

        # Session and market-data events were published too. Read up to the newest event and
        # until every kind is in (within the same 3 s as ever), not for a fixed 3 s.
        wanted = {K.EVENT_KIND_SESSION_STATUS, K.EVENT_KIND_BOOK_SNAPSHOT,
                  K.EVENT_KIND_BOOK_DELTA, K.EVENT_KIND_TRADE, K.EVENT_KIND_TOP_OF_BOOK,
                  K.EVENT_KIND_ORDER}
        newest = _newest(gw.grpc_port)
        everything = _collect(gw.grpc_port, K.SubscribeRequest(from_sequence=1),
                              time.monotonic() + 3,
                              stop_when=lambda evs: bool(evs) and evs[-1].sequence >= newest
                              and wanted <= {e.kind for e in evs})
        kinds = {e.kind for e in everything}
        assert wanted <= kinds
        last_seen = max(e.sequence for e in everything)
        assert last_seen >= newest

        # Restart: the sequence continues and a subscriber resumes from last_seen + 1.
        gw.stop()
        gw.start()
        cl2 = new_id("EV")
        oms.send("D", order_fields(cl2, "1", "0.01", "19000.0"))
        oms.report(cl2, "0", timeout=15)
        resumed = _collect(gw.grpc_port, K.SubscribeRequest(from_sequence=last_seen + 1),
                           time.monotonic() + 3,
                           stop_when=lambda evs: any(e.order.cl_ord_id == cl2 for e in evs))
        assert resumed and resumed[0].sequence == last_seen + 1
        assert any(e.order.cl_ord_id == cl2 for e in resumed)
        # The old events are still served after the restart (journal on disk).
        old = _collect(gw.grpc_port, K.SubscribeRequest(from_sequence=1,
                                                        kinds=[K.EVENT_KIND_ORDER]),
                       time.monotonic() + 2,
                       stop_when=lambda evs: any(e.order.cl_ord_id == cl for e in evs))
        assert any(e.order.cl_ord_id == cl for e in old)
    finally:
        try:  # clients and gateway together: each waits out QuickFIX's 1 s ticks
            stop_all([oms.c.stop, maker.c.stop, gw.stop])
        finally:
            sim.stop()


def test_gateway_rejects_and_cancel_rejects_carry_the_order(tmp_path: Path) -> None:
    """The gateway's own refusals on the stream carry what a consumer needs to place them: a
    rejected order its account (so an `accounts` filter finds it), side, quantity, price and
    OrdStatus; a refused cancel/replace the order's OrderID, status, symbol, account, side and
    what was refused (CxlRejResponseTo, CxlRejReason)."""
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds)
    gw = GatewayProcess(tmp_path / "gw", sim, creds)
    oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
    acct = "DESK-7"
    try:
        oms.c.start()
        # An order for a symbol the venue does not list: refused by validation.
        rej = new_id("RJ")
        oms.send("D", [*order_fields(rej, "2", "0.5", "123.450", symbol="NOPE/USD"), (1, acct)])
        er = oms.report(rej, "8")
        assert er.fields[103] == "1"
        # A resting order, then a replace the gateway refuses (Kraken cannot change the TIF).
        cl = new_id("EV")
        oms.send("D", [*order_fields(cl, "1", "0.01", "21000.0"), (1, acct)])
        order_id = oms.report(cl, "0").fields[37]
        rcl = new_id("R")
        oms.send("G", [(11, rcl), (41, cl), (55, "BTC/USD"), (54, "1"), (38, "0.02"), (40, "2"),
                       (44, "21000.0"), (59, "3"), (1, acct), (60, "20260101-00:00:00")])
        oms.expect(lambda r: r.msg_type == "9" and r.fields.get(11) == rcl)
        # A cancel of an order that never was.
        xcl = new_id("X")
        oms.send("F", [(11, xcl), (41, "NEVER-SENT"), (55, "BTC/USD"), (54, "1"), (38, "1"),
                       (60, "20260101-00:00:00")])
        oms.expect(lambda r: r.msg_type == "9" and r.fields.get(11) == xcl)

        desk = _collect(gw.grpc_port, K.SubscribeRequest(
            from_sequence=1, accounts=[acct],
            kinds=[K.EVENT_KIND_ORDER, K.EVENT_KIND_CANCEL_REJECT]), time.monotonic() + 10,
            stop_when=lambda evs: {rej, rcl} <= {e.order.cl_ord_id or e.cancel_reject.cl_ord_id
                                                  for e in evs})
        (r,) = [e for e in desk if e.order.cl_ord_id == rej]
        assert (r.symbol, r.account, r.source.session) == ("NOPE/USD", acct, "FIXGW->OMS")
        o = r.order
        assert o.type == O.ORDER_EVENT_TYPE_REJECTED and o.ord_status == O.ORD_STATUS_REJECTED
        assert (o.side, o.order_qty, o.price) == (C.SIDE_SELL, "0.5", "123.450")
        assert (o.ord_type, o.time_in_force) == (O.ORD_TYPE_LIMIT,
                                                 O.TIME_IN_FORCE_GOOD_TILL_CANCEL)
        assert o.ord_rej_reason == 1 and o.reject_reason == "unknown_symbol"
        assert o.text == er.fields[58]

        (c,) = [e for e in desk if e.cancel_reject.cl_ord_id == rcl]
        assert (c.symbol, c.account, c.source.session) == ("BTC/USD", acct, "FIXGW->OMS")
        cr = c.cancel_reject
        assert (cr.orig_cl_ord_id, cr.order_id, cr.side) == (cl, order_id, C.SIDE_BUY)
        assert cr.ord_status == O.ORD_STATUS_NEW
        assert cr.response_to == O.CXL_REJ_RESPONSE_TO_ORDER_CANCEL_REPLACE_REQUEST
        assert cr.cxl_rej_reason == 2 and "TimeInForce" in cr.text
        assert cr.venue_orig_cl_ord_id  # the order's ClOrdID at the venue

        # No order behind the cancel: no symbol or account, status Rejected, OrderID NONE.
        unknown = _collect(gw.grpc_port, K.SubscribeRequest(
            from_sequence=1, kinds=[K.EVENT_KIND_CANCEL_REJECT]), time.monotonic() + 10,
            stop_when=lambda evs: any(e.cancel_reject.cl_ord_id == xcl for e in evs))
        (u,) = [e for e in unknown if e.cancel_reject.cl_ord_id == xcl]
        assert (u.symbol, u.account) == ("", "")
        x = u.cancel_reject
        assert (x.orig_cl_ord_id, x.order_id, x.side) == ("NEVER-SENT", "NONE",
                                                          C.SIDE_UNSPECIFIED)
        assert x.ord_status == O.ORD_STATUS_REJECTED and x.cxl_rej_reason == 1
        assert x.response_to == O.CXL_REJ_RESPONSE_TO_ORDER_CANCEL_REQUEST
    finally:
        try:
            stop_all([oms.c.stop, gw.stop])
        finally:
            sim.stop()


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_gateway_killed_event_process_flushes_and_exits_then_resume(tmp_path: Path) -> None:
    """kill -9 of the gateway: its event process still journals what it was sent, exits (no
    orphan holding the port), and the restarted gateway serves the whole history again."""
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds)
    gw = GatewayProcess(tmp_path / "gw", sim, creds)
    oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
    try:
        oms.c.start()
        cls = [new_id("K") for _ in range(5)]
        for cl in cls:
            oms.send("D", order_fields(cl, "1", "0.01", "1000.0"))
            oms.report(cl, "0")
        child = gw.event_process_pid()
        assert child is not None
        before = _collect(gw.grpc_port, K.SubscribeRequest(kinds=[K.EVENT_KIND_ORDER],
                                                           from_sequence=1),
                          time.monotonic() + 10,
                          stop_when=lambda evs: sum(e.order.exec_type == O.EXEC_TYPE_NEW
                                                    for e in evs) >= 5)
        oms.c.stop()
        gw.kill()
        deadline = time.monotonic() + 10
        while _pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _pid_alive(child), "the event process outlived its killed gateway"
        gw.start()
        after = _collect(gw.grpc_port, K.SubscribeRequest(from_sequence=1),
                         time.monotonic() + 5,
                         stop_when=lambda evs: bool(evs) and evs[-1].sequence
                         >= before[-1].sequence)
        seqs = [e.sequence for e in after]
        assert seqs[: before[-1].sequence] == list(range(1, before[-1].sequence + 1))
        old = {e.sequence: e for e in after}
        assert all(old[e.sequence] == e for e in before)
    finally:
        oms.c.stop()
        gw.stop()
        sim.stop()


def _wait_for_events(stub: events_pb2_grpc.EventServiceStub) -> list[events_pb2.Event]:
    """The first batch from sequence 1 (the logons' session events; they reach the event
    process a drain poll after they happen)."""
    call = stub.Subscribe(K.SubscribeRequest(from_sequence=1), timeout=10)
    try:
        return list(next(iter(call)).events)
    finally:
        call.cancel()


def test_event_port_with_tls_serves_events_and_the_gateway_signal_service(tmp_path: Path) -> None:
    if not openssl_available():
        pytest.skip("openssl is needed to make test certificates")
    pki = make_pki(tmp_path / "pki")
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds)
    gw = GatewayProcess(tmp_path / "gw", sim, creds, grpc_toml=(
        f'tls_cert_file = "{pki.server_cert}"\ntls_key_file = "{pki.server_key}"'))
    try:
        tls = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{gw.grpc_port}", tls) as ch:
            stub = events_pb2_grpc.EventServiceStub(ch)
            got = _wait_for_events(stub)
            assert got[0].sequence == 1 and got[0].HasField("session_status")
            # SignalService lives in the gateway; the event process forwards it.
            sig = signals_pb2_grpc.SignalServiceStub(ch)
            deadline = time.monotonic() + 20
            while True:
                try:
                    snap = sig.Get(signals_pb2.GetSignalRequest(symbol="PF_XBTUSD"), timeout=5)
                    break
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
                    assert time.monotonic() < deadline, "no PF_XBTUSD snapshot in 20 s"
                    time.sleep(0.3)
            assert snap.symbol == "PF_XBTUSD"
        # fixgwctl tails the TLS event port with the CA, and says what to pass without it.
        ctl = [sys.executable, "-m", "gateway.cli.ctl", "events", "--events-addr",
               f"127.0.0.1:{gw.grpc_port}", "--kind", "SESSION_STATUS", "--json"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIXGW_")}
        ok = subprocess.run([*ctl, "--events-ca-file", str(pki.ca)], capture_output=True,
                            text=True, timeout=60, env=env)
        assert ok.returncode == 0, ok.stderr
        assert '"session_status"' in ok.stdout
        refused = subprocess.run([*ctl, "--timeout", "3"], capture_output=True, text=True,
                                 timeout=60, env=env)
        assert refused.returncode == 3 and "--events-ca-file" in refused.stderr
        with grpc.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as plain:
            with pytest.raises(grpc.RpcError) as err:
                events_pb2_grpc.EventServiceStub(plain).GetLogInfo(K.GetLogInfoRequest(),
                                                                   timeout=3)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        gw.stop()
        sim.stop()
