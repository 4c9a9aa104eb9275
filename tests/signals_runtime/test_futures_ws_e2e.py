"""The Kraken Futures WS ticker feed end to end: the simulator as a process, `fixgw run` as a
process with the REST poll interval set to an hour, so only the WS feed can move the perp
inputs. A scenario switch on the simulator's control port shows up in SignalService.Get within
a couple of seconds, the snapshot's mark age stays at the feed's ~1 s rhythm, and when the feed
goes silent the REST poller takes over at once (woken by the feed's reconnect) rather than an
hour later."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from gateway._proto.fixgw.v1 import signals_pb2, signals_pb2_grpc
from tests.procs import Credentials, GatewayProcess, SimProcess

ARB = "PF_ARBUSD"
POLL_S = 3600  # REST tickers once an hour: anything faster came over the WS feed


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[SimProcess, GatewayProcess]]:
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, scenario="default")
    gw = None
    try:
        gw = GatewayProcess(tmp_path / "gw", sim, creds, futures_toml=f"""
poll_interval_s = {POLL_S}
ws_url = "ws://127.0.0.1:{sim.futures_ws_port}/ws/v1"
ws_stale_after_s = 2
""")
        yield sim, gw
    finally:
        if gw is not None:
            gw.stop()
        sim.stop()


def _until(get: Callable[[], signals_pb2.SignalSnapshot | None],
           ok: Callable[[signals_pb2.SignalSnapshot], bool],
           timeout: float) -> tuple[signals_pb2.SignalSnapshot, float]:
    """The first snapshot ``ok`` accepts, and how long it took."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        snap = get()
        if snap is not None:
            last = snap
            if ok(snap):
                return snap, time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"no matching snapshot within {timeout}s; last: {last}")


def test_ws_feed_drives_the_snapshot_and_rest_takes_over_when_it_dies(
        pair: tuple[SimProcess, GatewayProcess]) -> None:
    sim, gw = pair
    with grpc.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
        stub = signals_pb2_grpc.SignalServiceStub(ch)

        def get() -> signals_pb2.SignalSnapshot | None:
            try:
                snap: signals_pb2.SignalSnapshot = stub.Get(
                    signals_pb2.GetSignalRequest(symbol=ARB), timeout=2)
            except grpc.RpcError:
                return None
            return snap

        def bps(snap: signals_pb2.SignalSnapshot) -> float:
            return float(snap.carry.funding_ann_bps)

        # The "default" scenario: ARB funding 0.000001 per hour = 87.6 bps/yr.
        snap, _ = _until(get, lambda s: abs(bps(s) - 87.6) < 1e-6, 30)

        # Freshness: with REST polled hourly, new snapshots keep coming and their mark is at
        # most about a feed interval old, because the WS ticker arrives every second.
        time.sleep(3.0)
        for _ in range(3):
            snap, _ = _until(get, lambda s: True, 5)
            assert time.time() - snap.computed_at.ToMilliseconds() / 1000 < 2.0
            assert float(snap.ages.mark_s) < 1.5
            assert float(snap.ages.open_interest_s) < 1.5  # the feed's OI, not the hourly poll
            time.sleep(0.7)

        # The worked example's figures through the control port reach Get within seconds.
        sim.control(cmd="scenario", name="arb-crowded-long")
        snap, took = _until(get, lambda s: abs(bps(s) - 1095.0) < 1e-6, 10)
        assert took < 3.0, f"the scenario change took {took:.2f}s to reach the snapshot"
        assert float(snap.reference_price) == pytest.approx(0.11092563, rel=1e-12)
        assert float(snap.carry.basis_bps) == pytest.approx(-6.7, abs=1e-9)
        assert float(snap.carry.carry_ann_bps) == pytest.approx(1088.3, abs=0.05)
        assert float(snap.open_interest.open_interest_usd) == pytest.approx(
            800_000_000 * 0.11092563, rel=1e-12)
        assert float(snap.ages.mark_s) < 1.5

        # The feed goes silent (no tickers, no heartbeats) and the scenario changes back: the
        # client gives up after ws_stale_after_s, the poller is woken and REST delivers.
        sim.control(cmd="futures_ws", fault="stall", seconds=30)
        sim.control(cmd="scenario", name="default")
        snap, took = _until(get, lambda s: abs(bps(s) - 87.6) < 1e-6, 15)
        assert took < 8.0, f"the REST fallback took {took:.2f}s"
        assert float(snap.reference_price) == pytest.approx(0.11100999, rel=1e-12)
        gw.err.wait_for(r"futures WS .*: nothing for 2\.0s, reconnecting", timeout=5)
