"""SignalRunner end to end, no mocks: a real PerpPoller polls the futures simulator over HTTP
("arb-crowded-long", signals.md §9), a spot ARB/USD book sits around 0.111, positioning and OI
intervals are pushed over real gRPC (PositioningService on the EventServer's port), and the
snapshot is read back with SignalService.Get/Subscribe and the `fixgw signals` CLI."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway._proto.fixgw.v1 import signals_pb2, signals_pb2_grpc
from gateway.cli.signals_cmd import add_signals_parser, run_signals
from gateway.events import EventLog, EventLogConfig, EventServer, EventServerConfig
from gateway.marketdata.book import Book
from gateway.server.signal_runner import SignalRunner
from gateway.server.signal_services import (
    POSITIONING_SERVICE_NAME,
    SIGNAL_SERVICE_NAME,
    signal_service_registrations,
)
from gateway.signals import SignalSnapshot
from gateway.transports.kraken_futures_rest import KrakenFuturesRest
from gateway.transports.perp_poller import PerpPoller
from gateway.venue_sim.futures_rest import FuturesRestServer
from tests.conftest import wait_until

ARB = "PF_ARBUSD"
PERPS = {ARB: "ARB/USD", "PF_XBTUSD": "BTC/USD", "PF_ETHUSD": "ETH/USD"}  # ETH: never polled


@dataclass
class Env:
    runner: SignalRunner
    addr: str
    signals: signals_pb2_grpc.SignalServiceStub
    positioning: signals_pb2_grpc.PositioningServiceStub
    channel: grpc.Channel
    published: list[SignalSnapshot]


def _spot_book() -> Book:
    """ARB/USD around 0.111: 0.1 % steps, 200k ARB a level, 400 levels a side."""
    book = Book("ARB/USD")
    p = Decimal("0.111")
    step = Decimal("0.001")
    book.apply_snapshot([(p * (1 - step * k), Decimal(200_000)) for k in range(1, 401)],
                        [(p * (1 + step * k), Decimal(200_000)) for k in range(1, 401)])
    return book




@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    sim = FuturesRestServer("arb-crowded-long", port=0)
    sim.start()
    published: list[SignalSnapshot] = []
    runner = SignalRunner({"ARB/USD": _spot_book()}, PERPS, min_interval_s=0.05,
                          on_snapshot=published.append)
    runner.start()
    poller = PerpPoller(KrakenFuturesRest(sim.base_url), [ARB, "PF_XBTUSD"], 0.2,
                        runner.on_perp_update)
    poller.start()
    log = EventLog(EventLogConfig())
    server = EventServer(log, EventServerConfig(port=0),
                         extra_services=signal_service_registrations(runner))
    port = server.start()
    addr = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(addr)
    try:
        wait_until(lambda: runner.latest(ARB) is not None)
        yield Env(runner, addr, signals_pb2_grpc.SignalServiceStub(channel),
                  signals_pb2_grpc.PositioningServiceStub(channel), channel, published)
    finally:
        channel.close()
        server.stop(0.5)
        log.close()
        poller.stop()
        runner.stop()
        sim.stop()


def _ts(epoch_s: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(epoch_s * 1e9))
    return t


def arb_push(long_usd: str = "78.53e6", short_usd: str = "8.71e6", cohort: str = "top_accounts",
             age_s: float = 5.0, intervals: bool = True) -> signals_pb2.PushPositioningRequest:
    """The §9 record, with 24 hourly intervals of rising OI that takers bought at ~0.1013:
    5x longs from there liquidate near 0.09, so gravity pulls down from 0.111."""
    now = time.time()
    req = signals_pb2.PushPositioningRequest(
        symbol=ARB, cohort=cohort, method="venue_push", long_usd=long_usd, short_usd=short_usd,
        as_of=_ts(now - age_s))
    if intervals:
        for i in range(24):
            req.oi_intervals.add(ts=_ts(now - 3600.0 * (24 - i)), oi_usd=str(40e6 + 2e6 * i),
                                 vwap="0.1013", high="0.102", low="0.1005", close="0.1013",
                                 taker_buy_share="1")
    return req


def _fresh_after(env: Env, t: float, label: str) -> SignalSnapshot:
    def ok() -> bool:
        s = env.runner.latest(ARB)
        return s is not None and s.as_of > t and s.oi_asymmetry_label == label
    wait_until(ok)
    snap = env.runner.latest(ARB)
    assert snap is not None
    return snap


def test_poller_alone_gives_the_worked_example_carry(env: Env) -> None:
    snap = env.signals.Get(signals_pb2.GetSignalRequest(symbol=ARB), timeout=5)
    assert snap.symbol == ARB
    assert float(snap.carry.funding_ann_bps) == pytest.approx(1095.0, abs=1e-6)
    assert float(snap.carry.carry_ann_bps) == pytest.approx(1088.3, abs=0.05)
    assert float(snap.carry.basis_bps) == pytest.approx(-6.7, abs=0.01)
    assert float(snap.carry.funding_interval_h) == 1.0
    assert snap.carry.carry_horizon_days == "365.0"
    assert snap.carry.vote == signals_pb2.SIGNAL_DIRECTION_SHORT
    assert snap.ages.mark_s and snap.ages.book_s and snap.ages.funding_s
    # the spot symbol resolves to its perp; BTC has no spot book but still gets carry
    assert env.signals.Get(signals_pb2.GetSignalRequest(symbol="ARB/USD")).symbol == ARB
    wait_until(lambda: env.runner.latest("PF_XBTUSD") is not None)
    assert env.published and all(s.symbol in PERPS for s in env.published)


def test_push_over_grpc_then_get(env: Env) -> None:
    t0 = time.time()
    resp = env.positioning.Push(arb_push(), timeout=5)
    assert resp.accepted and "24 OI interval" in resp.message
    _fresh_after(env, t0, "9.0x by top_accounts")
    snap = env.signals.Get(signals_pb2.GetSignalRequest(symbol=ARB), timeout=5)
    assert float(snap.carry.carry_ann_bps) == pytest.approx(1088.3, abs=0.05)
    assert float(snap.carry.funding_ann_bps) == pytest.approx(1095.0, abs=1e-6)
    (pos,) = snap.positioning
    assert pos.cohort == "top_accounts" and pos.label == "9.0x by top_accounts"
    assert float(pos.oi_asymmetry) == pytest.approx(9.016, abs=1e-3)
    assert float(snap.gravity.gravity) < 0
    assert snap.gravity.vote == signals_pb2.SIGNAL_DIRECTION_SHORT
    sup = snap.gravity.supports
    assert sup and any(abs(float(k.price) - 0.09) < 0.002 for k in sup)
    assert all(k.side == signals_pb2.POSITION_SIDE_LONG for k in sup)
    assert len(snap.cascades) == 6 and len(snap.risk) == 2 and len(snap.votes) == 5
    assert snap.ages.positioning_s and snap.ages.open_interest_s and snap.ages.liquidation_map_s
    assert float(snap.open_interest.map_gross_long_usd) > 0


def test_subscribe_streams_a_new_snapshot_after_a_push(env: Env) -> None:
    call = env.signals.Subscribe(signals_pb2.SubscribeSignalsRequest(symbols=[ARB]), timeout=15)
    got: list[signals_pb2.SignalSnapshot] = []
    first = threading.Event()
    done = threading.Event()

    def read() -> None:
        try:
            for s in call:
                got.append(s)
                first.set()
                if s.positioning and s.positioning[0].label == "10.0x by top_accounts":
                    done.set()
                    return
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first.wait(5), "the stream starts with the current snapshot"
        assert got[0].symbol == ARB
        env.positioning.Push(arb_push("80e6", "8e6", intervals=False), timeout=5)
        assert done.wait(10), [s.positioning[0].label for s in got]
    finally:
        call.cancel()
        reader.join(5)
    assert all(s.symbol == ARB for s in got)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda r: r.ClearField("cohort"), "cohort: required"),
        (lambda r: setattr(r, "long_usd", "-1"), "long_usd: must be >= 0"),
        (lambda r: setattr(r, "short_usd", "lots"), "short_usd: 'lots' is not a decimal"),
        (lambda r: setattr(r, "long_usd", "1e400"), "long_usd: out of range, got '1e400'"),
        (lambda r: r.as_of.CopyFrom(_ts(time.time() - 7200)), "as_of: record is stale"),
        (lambda r: r.as_of.CopyFrom(_ts(time.time() + 60)), "as_of: "),
        (lambda r: r.ClearField("as_of"), "as_of: required"),
        (lambda r: setattr(r, "symbol", "PF_NOPE"), "symbol: unknown perp"),
        (lambda r: setattr(r.oi_intervals[3], "high", ""), "oi_intervals[3].high: required"),
        (lambda r: setattr(r.oi_intervals[1], "taker_buy_share", "1.5"),
         "oi_intervals[1].taker_buy_share: must be <= 1"),
        (lambda r: r.oi_intervals[2].ts.CopyFrom(r.oi_intervals[1].ts),
         "oi_intervals[2].ts: must be after"),
    ],
)
def test_invalid_pushes_are_rejected_naming_the_field(env: Env, edit: object, field: str) -> None:
    req = arb_push()
    edit(req)  # type: ignore[operator]
    with pytest.raises(grpc.RpcError) as info:
        env.positioning.Push(req, timeout=5)
    err: grpc.RpcError = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (err.details() or "")


def test_get_errors_and_health(env: Env) -> None:
    with pytest.raises(grpc.RpcError) as info:
        env.signals.Get(signals_pb2.GetSignalRequest(symbol="PF_ETHUSD"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no signal yet for PF_ETHUSD" in (info.value.details() or "")
    health = health_pb2_grpc.HealthStub(env.channel)
    for name in (SIGNAL_SERVICE_NAME, POSITIONING_SERVICE_NAME):
        r = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert r.status == health_pb2.HealthCheckResponse.SERVING


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fixgw")
    add_signals_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["signals", *argv])


def test_cli_readout(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.time()
    env.positioning.Push(arb_push(), timeout=5)
    _fresh_after(env, t0, "9.0x by top_accounts")
    assert run_signals(_cli(ARB, "--addr", env.addr)) == 0
    out = capsys.readouterr().out
    assert "9.0x by top_accounts" in out
    assert "carry" in out.lower() and "+1088.3 bps/yr over 365 d" in out
    assert "+1095.0 bps/yr" in out and "per 1 h" in out
    assert "pulls price DOWN" in out and "Supports" in out and "Cascade risk (longs" in out
    assert "Bias: SHORT" in out and "Input ages: mark" in out

    assert run_signals(_cli(ARB, "--addr", env.addr, "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["symbol"] == ARB and doc["positioning"][0]["label"] == "9.0x by top_accounts"


def test_cli_errors(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_signals(_cli("PF_ETHUSD", "--addr", env.addr)) == 1
    assert "no signal yet for PF_ETHUSD" in capsys.readouterr().err
    assert run_signals(_cli(ARB, "--addr", "127.0.0.1:1", "--timeout", "0.5")) == 2
    assert "gateway not reachable at 127.0.0.1:1" in capsys.readouterr().err


def test_incremental_map_equals_a_cold_replay(env: Env) -> None:
    """The runner applies only new rows to its map; that must equal replaying the history."""
    from gateway.signals import SignalInputs, build_map, flow_estimate

    t0 = time.time()
    env.positioning.Push(arb_push(), timeout=5)
    _fresh_after(env, t0, "9.0x by top_accounts")
    time.sleep(0.5)  # a few more poll rows applied incrementally
    runner = env.runner
    hist = runner.oi_history(ARB)
    kept = runner.liquidation_map(ARB)
    assert hist is not None and kept is not None
    if kept.as_of < float(hist.ts[-1]):  # a poll row landed between the two reads
        pytest.skip("raced with a poll")
    hist_n = hist.ts.size
    cold = build_map(
        SignalInputs(ARB, float(hist.ts[-1]), 0.11092563, 0.111, t0, oi_history=hist,
                     config=runner.config),
        flow_estimate(hist.oi_usd, hist.taker_buy_share, as_of=float(hist.ts[-1])),
        kept.grid.center,
    )
    assert hist_n >= 25
    for side in ("long", "short"):
        assert kept.total_usd(side) == pytest.approx(cold.total_usd(side), rel=1e-9, abs=1e-6)


def test_md_hooks_only_mark_dirty_and_compute_on_the_worker(env: Env) -> None:
    threads: list[str] = []
    remove = env.runner.add_listener(lambda s: threads.append(threading.current_thread().name))
    try:
        book = Book("ARB/USD")
        t = time.perf_counter()
        for _ in range(1000):
            env.runner.on_update("ARB/USD", book, ())
        per_call_us = (time.perf_counter() - t) * 1e3
        assert per_call_us < 50, "the MD hook must stay cheap (flag + wake only)"
        wait_until(lambda: bool(threads))
        time.sleep(0.3)
        # 1000 marks in a burst collapse into a few snapshots (min_interval_s = 0.05)
        assert set(threads) == {"fixgw-signals"}
        assert len(threads) < 50
    finally:
        remove()
