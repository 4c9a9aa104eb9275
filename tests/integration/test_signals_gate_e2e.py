"""The worked example end to end: the simulator plays the ARB crowded-long scenario (futures REST
funding and basis), a positioning feed pushes the cohort's long/short split and OI history over
gRPC, the gateway computes the signal snapshot off the order path, and an OMS buy on the ARB
perp is blocked with a Text naming carry and gravity while a sell passes. `fixgw signals`
explains it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
from google.protobuf import timestamp_pb2

from gateway._proto.fixgw.v1 import signals_pb2, signals_pb2_grpc
from tests.conftest import Oms, make_client
from tests.procs import REPO, Credentials, GatewayProcess, SimProcess, stop_all

RULES = """
[risk]
[[risk.signal_rules]]
name = "carry_gravity_long"
kind = "crowded_long"
action = "block"
stale_policy = "block"
max_age_s = 3900   # hourly funding: the last settlement is up to an hour old
symbols = ["PF_ARBUSD"]
params = { min_funding_excess_bps = "1000", max_gravity = "-0.25" }
"""

VENUE = """md_stale_after_s = 3600
symbols = ["BTC/USD", "ETH/USD", "ARB/USD", "PF_ARBUSD"]"""


def _ts(epoch_s: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(epoch_s * 1e9))
    return t


def _push(stub: signals_pb2_grpc.PositioningServiceStub) -> None:
    """The §9 positioning record, and 24 hourly intervals of rising OI bought at ~0.1013:
    5x-10x longs from there liquidate near 0.09, below the 0.111 price."""
    now = time.time()
    req = signals_pb2.PushPositioningRequest(
        symbol="PF_ARBUSD", cohort="top_accounts", method="venue_push", long_usd="78.53e6",
        short_usd="8.71e6", as_of=_ts(now - 5))
    for i in range(24):
        req.oi_intervals.add(ts=_ts(now - 3600.0 * (24 - i)), oi_usd=str(40e6 + 2e6 * i),
                             vwap="0.1013", high="0.102", low="0.1005", close="0.1013",
                             taker_buy_share="1")
    assert stub.Push(req, timeout=5).accepted


def test_arb_perp_buy_blocked_by_carry_and_gravity_sell_passes(tmp_path: Path) -> None:
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, seed_books=True, scenario="arb-crowded-long")
    gw = GatewayProcess(tmp_path / "gw", sim, creds, venue_toml=VENUE, extra_toml=RULES,
                        futures_toml="poll_interval_s = 0.5")
    oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            _push(signals_pb2_grpc.PositioningServiceStub(ch))
            signals = signals_pb2_grpc.SignalServiceStub(ch)
            deadline = time.monotonic() + 20
            snap = None
            while time.monotonic() < deadline:
                try:
                    snap = signals.Get(signals_pb2.GetSignalRequest(symbol="PF_ARBUSD"),
                                       timeout=2)
                    if snap.positioning and snap.positioning[0].label.startswith("9.0x") and float(
                            snap.gravity.gravity) < -0.25:
                        break
                except grpc.RpcError:
                    pass
                time.sleep(0.3)
            assert snap is not None
            assert float(snap.carry.funding_ann_bps) == 1095.0
            assert abs(float(snap.carry.carry_ann_bps) - 1088.3) < 0.05
            assert snap.positioning[0].label == "9.0x by top_accounts"
            assert float(snap.gravity.gravity) < -0.25

        oms.c.start()
        buy = oms.buy("1000", "0.1110", symbol="PF_ARBUSD")
        try:
            r = oms.expect(lambda r: r.fields.get(11) == buy)
        except TimeoutError:
            raise AssertionError(gw.err.text()[-4000:]) from None
        assert r.fields[150] == "8", r.fields
        text = r.fields[58]
        assert text.startswith("blocked by carry_gravity_long: buying PF_ARBUSD"), text
        assert "carry +1088.3 bps/yr" in text and "gravity -" in text, text
        assert "9.0x long by top_accounts" in text, text
        sell = oms.sell("1000", "0.1200", symbol="PF_ARBUSD")
        assert oms.report(sell, "0").fields[39] == "0"

        cli = subprocess.run([sys.executable, "-m", "gateway.cli.main", "signals", "PF_ARBUSD",
                              "--addr", f"127.0.0.1:{gw.grpc_port}"],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert "9.0x by top_accounts" in cli.stdout and "carry" in cli.stdout.lower()
    finally:
        try:  # clients and gateway together: each waits out QuickFIX's 1 s ticks
            stop_all([oms.c.stop, gw.stop])
        finally:
            sim.stop()
