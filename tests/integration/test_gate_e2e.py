"""The pre-trade gate on the live order path: a block reaches the OMS as an ExecutionReport
reject naming the rule and figures, a reduce sends the reduced quantity, and every decision is
an event on the gRPC stream."""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from gateway._proto.fixgw.v1 import events_pb2, events_pb2_grpc
from tests.conftest import Oms, make_client, new_id
from tests.procs import Credentials, GatewayProcess, SimProcess, stop_all

RISK = """
[risk]
max_order_qty = { "BTC/USD" = "1", "*" = "1000" }
max_order_qty_action = "reduce"
max_notional_usd = "100000"
price_collar_bps = 1000
stale_book_s = 3600
"""


def test_gate_blocks_and_reduces_with_reasons_and_events(tmp_path: Path) -> None:
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, seed_books=True)   # books around 45,000
    gw = GatewayProcess(tmp_path / "gw", sim, creds, extra_toml=RISK)
    oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
    try:
        gw.err.wait_for(r"instrument list", 10)
        time.sleep(0.5)  # the first book snapshots are in
        oms.c.start()
        # 33 % under mid: outside the 10 % collar.
        far = oms.buy("0.01", "30000.0")
        r = oms.report(far, "8")
        assert r.fields[103] == "3"
        assert r.fields[58].startswith("blocked by price_collar: limit 30000.0 is "), r.fields[58]
        # 3 BTC is over the 1 BTC limit, whose action is reduce: 1 BTC goes to the venue (and
        # 44,000 USD is then within the 100,000 notional limit).
        ok = oms.buy("3", "44000.0")
        ack = oms.report(ok, "0")
        assert ack.fields[38] == "1.00000000"
        # 50 ETH at the mid is 125,000 USD: over the notional limit.
        big = oms.buy("50", "2500.00", symbol="ETH/USD")  # 125,000 USD > 100,000
        r = oms.report(big, "8")
        assert r.fields[58].startswith("blocked by max_notional:"), r.fields[58]
        # A market buy is valued at the asks it would take, read from the gateway's own book
        # of the venue's market data (not at mid).
        market = oms.buy("50", None, symbol="ETH/USD")
        r = oms.report(market, "8")
        assert r.fields[58].startswith("blocked by max_notional:"), r.fields[58]
        assert " x best ask " in r.fields[58] or " ask levels for 50" in r.fields[58], \
            r.fields[58]

        # Every gate decision in the log: read (within the same 3 s as ever) until four are
        # in and nothing newer is in the log, rather than for a fixed 3 s.
        with grpc.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            stub = events_pb2_grpc.EventServiceStub(ch)

            def newest() -> int:
                info = stub.GetLogInfo(events_pb2.GetLogInfoRequest(), timeout=3)
                return int(info.next_sequence) - 1

            call = stub.Subscribe(events_pb2.SubscribeRequest(from_sequence=1), timeout=3)
            decisions = []
            try:
                for batch in call:
                    decisions.extend(e.gate_decision for e in batch.events
                                     if e.kind == events_pb2.EVENT_KIND_GATE_DECISION)
                    if (len(decisions) >= 4 and batch.events
                            and batch.events[-1].sequence >= newest()):
                        call.cancel()
                        break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert len(decisions) == 4
        assert {d.rule for d in decisions} == {"price_collar", "max_order_qty", "max_notional"}
        reduced = [d for d in decisions if d.rule == "max_order_qty"]
        assert reduced[0].reduced_qty.rstrip("0").rstrip(".") == "1"
    finally:
        try:  # the client and the gateway together: both wait out QuickFIX's 1 s ticks
            stop_all([oms.c.stop, gw.stop])
        finally:
            sim.stop()


def test_a_replace_that_adds_risk_passes_the_gate_and_one_that_lowers_it_always_goes(
        tmp_path: Path) -> None:
    """A replace is the order's new version: more quantity or another price is checked like a
    new order (an OrderCancelReject naming the rule when blocked); less quantity at the same
    price only lowers risk and goes straight to the venue."""
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, seed_books=True)   # books around 45,000
    gw = GatewayProcess(tmp_path / "gw", sim, creds, extra_toml="""
[risk]
max_order_qty = { "BTC/USD" = "1" }
price_collar_bps = 1000
stale_book_s = 3600
""")
    oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
    try:
        gw.err.wait_for(r"instrument list", 10)
        time.sleep(0.5)  # the first book snapshots are in
        oms.c.start()
        cl = oms.buy("0.5", "44000.0")
        oms.report(cl, "0")

        def replace(qty: str, price: str) -> str:
            rcl = new_id("R")
            oms.send("G", [(11, rcl), (41, cl), (55, "BTC/USD"), (54, "1"), (38, qty),
                           (40, "2"), (44, price), (60, "20260101-00:00:00")])
            return rcl

        too_big = replace("2", "44000.0")
        rej = oms.expect(lambda r: r.msg_type == "9" and r.fields.get(11) == too_big)
        assert rej.fields[434] == "2" and rej.fields[58].startswith("blocked by max_order_qty")
        too_far = replace("0.5", "30000.0")
        rej = oms.expect(lambda r: r.msg_type == "9" and r.fields.get(11) == too_far)
        assert rej.fields[58].startswith("blocked by price_collar"), rej.fields[58]
        up = replace("0.8", "44100.0")
        assert oms.report(up, "5").fields[38] == "0.80000000"
        cl = up
        down = replace("0.3", "44100.0")
        assert oms.report(down, "5").fields[38] == "0.30000000"
    finally:
        try:
            stop_all([oms.c.stop, gw.stop])
        finally:
            sim.stop()


def test_a_reduction_the_venue_would_refuse_is_a_block_that_says_why(tmp_path: Path) -> None:
    """The gate reduces 10 ARB to its 3 ARB limit, but the venue's minimum is 5 ARB: sending
    3 would only earn a venue reject (and cost a rate-limit point), so the order is refused
    here, naming both the reduction and the minimum."""
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, seed_books=True)
    gw = GatewayProcess(tmp_path / "gw", sim, creds, extra_toml="""
[risk]
max_order_qty = { "ARB/USD" = "3" }
max_order_qty_action = "reduce"
""")
    oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
    try:
        gw.err.wait_for(r"instrument list", 10)
        oms.c.start()
        cl = oms.buy("10", "0.5000", symbol="ARB/USD")
        r = oms.report(cl, "8")
        assert r.fields[103] == "3", r.fields
        assert "sending 3.00000000 of 10" in r.fields[58], r.fields[58]
        assert "under the minimum 5 for ARB/USD: not sent" in r.fields[58]
        assert sim.control(cmd="submission_counts")["counts"] == {}
    finally:
        try:
            stop_all([oms.c.stop, gw.stop])
        finally:
            sim.stop()
