"""The event process (gateway.events.process) as a real child process: events written to its pipe
come out of its gRPC port in order with the producer's receive time; they survive the child's
stop and the gateway's death (stdin closed without a goodbye); the gateway's own services are
forwarded through its port with their status codes; reflection and health list them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway._proto.fixgw.v1 import events_pb2, events_pb2_grpc, signals_pb2, signals_pb2_grpc
from gateway.events import EventServer, EventServerConfig
from gateway.events import builders as b
from gateway.events.process import EventProcess, EventProcessSpec
from gateway.server.signal_runner import SignalRunner
from gateway.server.signal_services import (
    POSITIONING_SERVICE_NAME,
    SIGNAL_SERVICE_NAME,
    signal_service_registrations,
)
from tests.events.test_events_service import collect, status_of

SRC = b.EventSource.fix("FIXGW->KRAKEN-TRD")


def trade(i: int) -> partial[events_pb2.Event]:
    return partial(b.trade, source=SRC, symbol="XBT/USD", price=Decimal("65000.5"),
                   qty=Decimal(i), aggressor_side="buy")


def spec(tmp: Path, **kw: object) -> EventProcessSpec:
    return EventProcessSpec(journal_dir=str(tmp / "events"), port=0, nice=0,
                            stats_interval_s=0.2, **kw)  # type: ignore[arg-type]


@pytest.fixture
def proc(tmp_path: Path) -> Iterator[EventProcess]:
    ep = EventProcess(spec(tmp_path))
    ep.start()
    yield ep
    ep.stop()


def stub(ep: EventProcess) -> events_pb2_grpc.EventServiceStub:
    return events_pb2_grpc.EventServiceStub(grpc.insecure_channel(f"127.0.0.1:{ep.port}"))


def test_events_arrive_in_order_with_producer_time(proc: EventProcess) -> None:
    before = time.time_ns()
    for i in range(1, 201):
        proc.publisher.publish_later(trade(i))
    direct = b.order_event("rejected", source=SRC, symbol="XBT/USD", cl_ord_id="X1",
                           text="unknown symbol")
    proc.publisher.publish(direct)
    queued_by = time.time_ns()
    got = collect(stub(proc), 201, from_sequence=1)
    assert [e.sequence for e in got] == list(range(1, 202))
    assert [e.trade.qty for e in got[:200]] == [str(i) for i in range(1, 201)]
    assert got[200].order.cl_ord_id == "X1" and got[200].order.text == "unknown symbol"
    # The gateway receive time is when the producer queued the event, not when the child built
    # it (which is at least one drain poll later).
    for e in got[:200]:
        assert before <= e.gateway_receive_time.ToNanoseconds() <= queued_by


def test_stats_report_subscribers(proc: EventProcess) -> None:
    s = stub(proc)
    stream = s.Subscribe(events_pb2.SubscribeRequest(), timeout=10)
    proc.publisher.publish_later(trade(1))
    next(iter(stream))
    deadline = time.monotonic() + 5
    while proc.stats().subscribers != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.stats().subscribers == 1
    assert proc.stats().next_sequence == 2
    stream.cancel()


def test_journal_survives_stop_and_parent_death(tmp_path: Path) -> None:
    first = EventProcess(spec(tmp_path))
    first.start()
    for i in range(1, 51):
        first.publisher.publish_later(trade(i))
    first.stop()

    second = EventProcess(spec(tmp_path))
    second.start()
    for i in range(51, 101):
        second.publisher.publish_later(trade(i))
    second.publisher.flush()
    # The gateway dies: the pipe closes without stop(). The child must still publish and
    # journal what it was sent, and a restarted gateway's child must wait for it to finish.
    assert second._proc is not None and second._proc.stdin is not None
    second._proc.stdin.close()

    third = EventProcess(spec(tmp_path))
    third.start()
    try:
        third.publisher.publish_later(trade(101))
        got = collect(stub(third), 101, from_sequence=1)
        assert [e.sequence for e in got] == list(range(1, 102))
        assert [e.trade.qty for e in got] == [str(i) for i in range(1, 102)]
    finally:
        third.stop()
    assert second._proc.wait(10) == 0


def test_gateway_services_forwarded_with_status(tmp_path: Path) -> None:
    runner = SignalRunner({}, {"PF_XBTUSD": "BTC/USD"})
    inner = EventServer(None, EventServerConfig(port=0),
                        extra_services=signal_service_registrations(runner))
    inner_port = inner.start()
    ep = EventProcess(spec(tmp_path, proxy_services=[SIGNAL_SERVICE_NAME,
                                                      POSITIONING_SERVICE_NAME]))
    ep.start(proxy_target=f"127.0.0.1:{inner_port}")
    try:
        ch = grpc.insecure_channel(f"127.0.0.1:{ep.port}")
        sig = signals_pb2_grpc.SignalServiceStub(ch)
        err = status_of(lambda: sig.Get(signals_pb2.GetSignalRequest(symbol="PF_XBTUSD"),
                                        timeout=5))
        assert err.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        assert "PF_XBTUSD" in (err.details() or "")  # type: ignore[attr-defined]
        pos = signals_pb2_grpc.PositioningServiceStub(ch)
        err = status_of(lambda: pos.Push(signals_pb2.PushPositioningRequest(), timeout=5))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        # A server stream: its status passes through, and so does a client's cancel.
        stream = sig.Subscribe(signals_pb2.SubscribeSignalsRequest(symbols=["PF_NOPE"]),
                               timeout=5)
        err = status_of(lambda: list(stream))
        assert err.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        assert "unknown symbols PF_NOPE" in (err.details() or "")  # type: ignore[attr-defined]
        live = sig.Subscribe(signals_pb2.SubscribeSignalsRequest(symbols=["PF_XBTUSD"]),
                             timeout=30)
        time.sleep(0.3)
        live.cancel()
        assert status_of(lambda: list(live)).code() == grpc.StatusCode.CANCELLED  # type: ignore[attr-defined]
        health = health_pb2_grpc.HealthStub(ch)
        for name in ("fixgw.v1.EventService", SIGNAL_SERVICE_NAME, POSITIONING_SERVICE_NAME):
            resp = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        ep.stop()
        inner.stop()


def test_start_fails_clearly_when_port_taken(proc: EventProcess, tmp_path: Path) -> None:
    other = EventProcess(EventProcessSpec(journal_dir=None, port=proc.port, nice=0))
    with pytest.raises(RuntimeError, match="exited with code 1 before serving"):
        other.start()
