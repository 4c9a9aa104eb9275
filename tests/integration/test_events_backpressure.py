"""Backpressure on a running gateway: a subscriber that stops reading is cut off once it falls
more than the server's lag limit behind, while a fast subscriber keeps up and the FIX order path
keeps answering.

Real processes (simulator + `fixgw run`), real gRPC. The simulator's synthetic flow on seeded
books makes the load: a few thousand events per second (market data of every requote and trade,
plus the orders sent here), so the default lag limit (50,000 events, not configurable in the
gateway's TOML) is passed in roughly 15-20 s.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from gateway._proto.fixgw.v1 import events_pb2, events_pb2_grpc
from gateway.venue_sim.instruments import PERP_SYMBOLS, SPOT_SYMBOLS
from tests.conftest import Oms, make_client, new_id, order_fields
from tests.procs import Credentials, GatewayProcess, SimProcess

# `[grpc] max_subscriber_lag_events`, below its default (50,000) so that the pump passes it in
# a few seconds: the mechanism is the same at any lag.
MAX_LAG_EVENTS = 10_000
FLOW_RATE_HZ = 1000
# The gateway subscribes market data for every book the simulator's flow moves, the perps
# included (the default is the three spot pairs): the simulator's CPU, not the flow rate, caps
# the load, and it spends it stepping all five books whichever are subscribed. With all five
# the lag limit is passed ~35 % sooner than with three.
VENUE_TOML = ("md_stale_after_s = 3600\nsymbols = ["
              + ", ".join(f'"{s}"' for s in (*SPOT_SYMBOLS, *PERP_SYMBOLS)) + "]")
PUMP_TIMEOUT_S = 150.0
# Small HTTP/2 windows: a client that stops reading backs up to the server quickly instead of
# buffering megabytes in its transport.
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16 * 1024)]


class FastReader(threading.Thread):
    """Reads everything from `first` on, in its own thread, until told to stop at a sequence."""

    def __init__(self, port: int, first: int) -> None:
        super().__init__(daemon=True)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = events_pb2_grpc.EventServiceStub(self.channel)
        self.call = stub.Subscribe(events_pb2.SubscribeRequest(from_sequence=first))
        self.seqs: list[int] = []
        self.error: grpc.RpcError | None = None
        self.stop_at: int | None = None

    def run(self) -> None:
        try:
            for batch in self.call:
                self.seqs.extend(e.sequence for e in batch.events)
                if self.stop_at is not None and self.seqs[-1] >= self.stop_at:
                    break
        except grpc.RpcError as exc:
            self.error = exc

    @property
    def last(self) -> int:
        return self.seqs[-1] if self.seqs else 0

    def close(self) -> None:
        self.call.cancel()
        self.join(10)
        self.channel.close()


def _ack_seconds(oms: Oms) -> float:
    """Send a resting limit buy (far below the market) and time it to its New report."""
    cl = new_id("BP")
    t0 = time.monotonic()
    oms.send("D", order_fields(cl, "1", "0.01", "1000.0"))
    oms.report(cl, "0", timeout=10)
    return time.monotonic() - t0


def test_slow_subscriber_cut_off_fast_one_keeps_up_orders_keep_latency(tmp_path: Path) -> None:
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, seed_books=True)
    gw: GatewayProcess | None = None
    oms: Oms | None = None
    fast: FastReader | None = None
    slow_channel: grpc.Channel | None = None
    try:
        gw = GatewayProcess(tmp_path / "gw", sim, creds, venue_toml=VENUE_TOML,
                            grpc_toml=f"max_subscriber_lag_events = {MAX_LAG_EVENTS}")
        oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
        oms.c.start()
        info_stub = events_pb2_grpc.EventServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{gw.grpc_port}"))

        def next_sequence() -> int:
            return int(info_stub.GetLogInfo(events_pb2.GetLogInfoRequest(),
                                            timeout=10).next_sequence)

        # Start both from the newest event already published, so each gets a batch at once.
        first = next_sequence() - 1
        assert first >= 1, "the gateway publishes session events at start"
        slow_channel = grpc.insecure_channel(f"127.0.0.1:{gw.grpc_port}", options=SMALL_WINDOW)
        slow = events_pb2_grpc.EventServiceStub(slow_channel).Subscribe(
            events_pb2.SubscribeRequest(from_sequence=first), timeout=PUMP_TIMEOUT_S + 60)
        slow_seen = [e.sequence for e in next(slow).events]  # live; now it stops reading
        fast = FastReader(gw.grpc_port, first)
        fast.start()

        # Pump: the simulator's flow plus an order every ~0.5 s, each timed to its ack.
        acks: list[float] = [_ack_seconds(oms)]
        sim.control(cmd="flow", rate_hz=FLOW_RATE_HZ)
        t0 = time.monotonic()
        try:
            while next_sequence() - slow_seen[-1] <= MAX_LAG_EVENTS + 2_000:
                assert time.monotonic() - t0 < PUMP_TIMEOUT_S, (
                    f"only {next_sequence() - first} events in {PUMP_TIMEOUT_S} s")
                assert fast.error is None, fast.error
                acks.append(_ack_seconds(oms))
                time.sleep(0.5)
        finally:
            sim.control(cmd="flow", rate_hz=0)
        pump_s = time.monotonic() - t0
        acks.append(_ack_seconds(oms))  # and after the burst, with the slow one still attached

        # The fast subscriber got every event, in order, without a gap or a duplicate.
        time.sleep(0.5)  # the last flow step's market data reaches the gateway
        newest = next_sequence() - 1
        fast.stop_at = newest
        deadline = time.monotonic() + 30
        while fast.last < newest and fast.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        fast.join(10)
        assert fast.error is None, fast.error
        assert fast.seqs[: newest - first + 1] == list(range(first, newest + 1)), (
            "fast subscriber must see every sequence in order")

        # The slow one drains what was in flight, then learns where to resume.
        with pytest.raises(grpc.RpcError) as info:
            for batch in slow:
                slow_seen.extend(e.sequence for e in batch.events)
        err = info.value
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
        trailing = {k: v for k, v in (err.trailing_metadata() or ())}
        resume = int(trailing["resume-sequence"])
        assert f"resume from sequence {resume}" in (err.details() or "")
        assert slow_seen == list(range(first, resume)), "no gap or duplicate before resuming"
        assert resume <= newest - MAX_LAG_EVENTS

        # Order round trips kept working with the slow subscriber attached.
        assert max(acks) < 1.0, f"order acks took up to {max(acks):.3f} s (pump {pump_s:.0f} s)"
        # And the cut-off subscriber can resume where it was told.
        again = events_pb2_grpc.EventServiceStub(slow_channel).Subscribe(
            events_pb2.SubscribeRequest(from_sequence=resume), timeout=10)
        assert next(again).events[0].sequence == resume
        again.cancel()
    finally:
        if fast is not None:
            fast.close()
        if slow_channel is not None:
            slow_channel.close()
        if oms is not None:
            oms.c.stop()
        if gw is not None:
            gw.stop()
        sim.stop()
