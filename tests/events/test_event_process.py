"""The event process (gateway.events.process) as a real child process: events written to its pipe
come out of its gRPC port in order with the producer's receive time; they survive the child's
stop and the gateway's death (stdin closed without a goodbye); a child that dies alone is
restarted and gets what was published meanwhile, and what died with it is counted (a subscriber
that resumes after the kill misses nothing, and no sequence it saw names another event); the
backlog is bounded; the gateway's own services are forwarded through its port with their status
codes; reflection and health list them."""

from __future__ import annotations

import marshal
import os
import signal
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway._proto.fixgw.v1 import events_pb2, events_pb2_grpc, signals_pb2, signals_pb2_grpc
from gateway.events import EventServer, EventServerConfig
from gateway.events import builders as b
from gateway.events.journal import MAGIC, RECORD_HEADER
from gateway.events.process import EventProcess, EventProcessSpec, PipePublisher
from gateway.events.publisher import Pending
from gateway.events.pump import HEADER
from gateway.listen import ListenError
from gateway.server.signal_runner import SignalRunner
from gateway.server.signal_services import (
    POSITIONING_SERVICE_NAME,
    SIGNAL_SERVICE_NAME,
    signal_service_registrations,
)
from tests.conftest import wait_until
from tests.events.test_events_service import collect, status_of

SRC = b.EventSource.fix("FIXGW->KRAKEN-TRD")


def trade(i: int) -> b.EventSpec:
    return ("trade", {"source": ("fix", SRC.session), "symbol": "XBT/USD", "price": "65000.5",
                      "qty": str(i), "aggressor_side": "buy"})


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


def test_a_spec_marshal_cannot_carry_is_dropped_alone(proc: EventProcess,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Specs carry plain values only; one holding a Decimal is logged by name and dropped, and
    the events queued with it in the same frame still arrive, in order."""
    bad: b.EventSpec = ("trade", {**trade(2)[1], "price": Decimal("65000.5")})
    for s in (trade(1), bad, trade(3)):
        proc.publisher.publish_later(s)
    with caplog.at_level("ERROR", logger="fixgw.events"):
        proc.publisher.flush()
    got = collect(stub(proc), 2, from_sequence=1)
    assert [e.trade.qty for e in got] == ["1", "3"]
    assert "event trade not published" in caplog.text


def test_a_spec_the_child_cannot_build_is_dropped_alone(proc: EventProcess) -> None:
    """A spec that marshals but does not build (a float price, an unknown builder) is dropped in
    the child; the rest of its frame is published."""
    for s in (trade(1), ("trade", {**trade(2)[1], "price": 65000.5}), ("no_such_builder", {}),
              trade(3)):
        proc.publisher.publish_later(s)  # type: ignore[arg-type]
    got = collect(stub(proc), 2, from_sequence=1)
    assert [e.trade.qty for e in got] == ["1", "3"]


def test_stats_report_subscribers(proc: EventProcess) -> None:
    s = stub(proc)
    # from_sequence=1: the call starts at the first next(), possibly after the event is out.
    stream = s.Subscribe(events_pb2.SubscribeRequest(from_sequence=1), timeout=10)
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
    second._stopping.set()  # a dead gateway has no watcher to start another child
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
    with pytest.raises(ListenError,
                       match=rf"event service cannot listen on 127\.0\.0\.1:{proc.port} "):
        other.start()




def test_a_killed_child_is_restarted_and_events_published_meanwhile_arrive(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ep = EventProcess(spec(tmp_path))
    ep.start()
    try:
        for i in range(1, 51):
            ep.publisher.publish_later(trade(i))
        ep.publisher.flush()
        wait_until(lambda: ep.stats().durable_next == 51, 5.0)  # journaled
        old_pid, port = ep.pid, ep.port
        assert old_pid is not None
        with caplog.at_level("WARNING", logger="fixgw.events"):
            os.kill(old_pid, signal.SIGKILL)
            # Logged once its pipe is closed (a zombie's other threads may still hold it open,
            # so its state in /proc does not tell), and half a second before the restart.
            wait_until(lambda: f"event process (pid {old_pid}) died (exit code -9, SIGKILL)"
                       in caplog.text, 5.0)
            for i in range(51, 101):  # while it is down: kept, not dropped
                ep.publisher.publish_later(trade(i))
            wait_until(lambda: ep.restarts == 1, 5.0)
        assert ep.pid != old_pid and ep.port == port
        for i in range(101, 121):
            ep.publisher.publish_later(trade(i))
        got = collect(stub(ep), 120, from_sequence=1)
        assert [e.sequence for e in got] == list(range(1, 121))
        assert [e.trade.qty for e in got] == [str(i) for i in range(1, 121)]
        assert ep.lost_events == 0 and ep.publisher.dropped == 0
    finally:
        ep.stop()
    assert ep.restarts == 1


class Follower:
    """A subscriber on its own thread, as a client would run one: what it received, in order,
    and how its stream ended."""

    def __init__(self, ep: EventProcess, from_sequence: int) -> None:
        self.events: list[events_pb2.Event] = []
        self.error: grpc.RpcError | None = None
        self._stream = stub(ep).Subscribe(
            events_pb2.SubscribeRequest(from_sequence=from_sequence), timeout=60)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for batch in self._stream:
                self.events.extend(batch.events)
        except grpc.RpcError as exc:
            self.error = exc

    @property
    def last(self) -> int:
        events = self.events
        return events[-1].sequence if events else 0

    @property
    def ended(self) -> bool:
        return not self._thread.is_alive()

    def stop(self) -> None:
        self._stream.cancel()
        self._thread.join(10)


class JournalTail:
    """The child's journal segment read from outside as it grows: what its writer has written
    (the journal holds one segment here, starting at sequence 1)."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - read on each poll, closed by close()
        self._data = b""
        self._offset = len(MAGIC)
        self.next_sequence = 1

    def poll(self) -> int:
        """The sequence after the last record written whole to the file."""
        self._data += self._file.read()
        data, hsize = self._data, RECORD_HEADER.size
        while self._offset + hsize <= len(data):
            plen, _base_len, _crc, seq = RECORD_HEADER.unpack_from(data, self._offset)
            if self._offset + hsize + plen > len(data):
                break
            self._offset += hsize + plen
            self.next_sequence = seq + 1
        return self.next_sequence

    def close(self) -> None:
        self._file.close()


@pytest.mark.parametrize("wake_interval_s", [0.005, None])
def test_a_subscriber_resuming_after_the_child_is_killed_misses_nothing(
        tmp_path: Path, wake_interval_s: float | None) -> None:
    """The stream's contract across a kill -9 of the event process: while events are published
    continuously, a subscriber streams; the child is killed; after the restart the subscriber
    resumes from last_seen + 1. Every sequence it saw before the kill still names the very event
    it got (re-read from the new child), its sequences have no gap and no duplicate, and the only
    events it never gets are the ones the gateway counts lost. Before the kill, the journal file
    is watched from outside: the subscriber is never sent a sequence the journal does not have
    (the old behaviour, which let the new child give such a sequence to another event)."""
    ep = EventProcess(spec(tmp_path, wake_interval_s=wake_interval_s))
    ep.start()
    stop_producing = threading.Event()
    published = 0

    def produce() -> None:
        nonlocal published
        while not stop_producing.is_set():
            ep.publisher.publish_later(trade(published + 1))
            published += 1  # this thread alone writes it
            time.sleep(0.0002)

    producer = threading.Thread(target=produce, daemon=True)
    followers: list[Follower] = []
    tail: JournalTail | None = None
    try:
        producer.start()
        first = Follower(ep, 1)
        followers.append(first)
        wait_until(lambda: len(first.events) >= 200, 10.0, "the subscriber to stream")
        tail = JournalTail(tmp_path / "events" / "00000000000000000001.evj")
        # A second of live streaming, watching for the subscriber getting ahead of the journal
        # (its last sequence read first: a journal read after it is at least as recent); the
        # kill comes at once if it does, so that any such sequence is one the journal lacks.
        ahead: tuple[int, int] | None = None
        deadline = time.monotonic() + 1.0
        while ahead is None and time.monotonic() < deadline:
            seen = first.last
            written = tail.poll()
            if seen >= written:
                ahead = (seen, written)
            time.sleep(0)
        pid = ep.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: first.ended, 10.0, "the subscriber's stream to end with the child")
        assert first.error is not None
        assert first.error.code() == grpc.StatusCode.UNAVAILABLE
        before = list(first.events)
        wait_until(lambda: ep.restarts == 1, 15.0, "the watcher to restart the child")

        # The client resumes from last_seen + 1 while events keep coming.
        resumed = Follower(ep, before[-1].sequence + 1)
        followers.append(resumed)
        time.sleep(0.3)
        stop_producing.set()
        producer.join(5)
        ep.publisher.flush()
        # Every event published reached the new child or is counted lost (none is rejected).
        wait_until(lambda: ep.stats().next_sequence - 1 + ep.lost_events == published, 10.0,
                   "the new child to publish the backlog")
        last = published - ep.lost_events
        wait_until(lambda: resumed.last >= last or resumed.ended, 10.0,
                   "the resumed subscriber to reach the newest event")
        after = list(resumed.events)

        journal = {e.sequence: e for e in collect(stub(ep), last, from_sequence=1)}
        assert sorted(journal) == list(range(1, last + 1))
        changed = [(e.sequence, e.trade.qty, journal[e.sequence].trade.qty) for e in before
                   if journal.get(e.sequence) != e]
        assert not changed, ("sequences the subscriber saw before the kill name other events "
                             f"after it (sequence, qty seen, qty now): {changed[:5]}")
        assert ahead is None, (f"the subscriber was sent sequence {ahead[0]} while the journal "
                               f"ended before {ahead[1]}")
        assert resumed.error is None, resumed.error
        assert [e.sequence for e in before + after] == list(range(1, last + 1))
        assert all(journal[e.sequence] == e for e in after)
        qtys = [int(e.trade.qty) for e in before + after]
        assert qtys == sorted(set(qtys)), "in publishing order, each event once"
        assert published - len(qtys) == ep.lost_events
    finally:
        stop_producing.set()
        for f in followers:
            f.stop()
        if tail is not None:
            tail.close()
        ep.stop()


def test_events_in_the_pipe_when_the_child_dies_are_counted_lost(tmp_path: Path) -> None:
    ep = EventProcess(spec(tmp_path))
    ep.start()
    try:
        for i in range(1, 11):
            ep.publisher.publish_later(trade(i))
        ep.publisher.flush()
        wait_until(lambda: ep.stats().durable_next == 11, 5.0)
        pid = ep.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # it reads no more: the next 20 stay in the pipe
        for i in range(11, 31):
            ep.publisher.publish_later(trade(i))
        ep.publisher.flush()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: ep.restarts == 1, 5.0)
        assert ep.lost_events == 20
        ep.publisher.publish_later(trade(31))
        got = collect(stub(ep), 11, from_sequence=1)
        assert [e.trade.qty for e in got] == [str(i) for i in [*range(1, 11), 31]]
    finally:
        ep.stop()


def test_a_failed_write_keeps_its_events_for_the_next_pipe() -> None:
    """The frame whose write failed (EPIPE: the child is gone) is not lost: it goes, in order
    and ahead of what was queued since, to the next child; the watcher is told."""
    r, w = os.pipe()
    os.close(r)
    broken: list[bool] = []
    pub = PipePublisher()
    for i in range(1, 4):
        pub.publish_later(trade(i))
    pub.attach(os.fdopen(w, "wb"), on_broken=lambda: broken.append(True))
    wait_until(lambda: bool(broken), 5.0)
    pub.publish_later(trade(4))
    assert pub.detach() == 0
    r, w = os.pipe()
    pub.attach(os.fdopen(w, "wb"))
    pub.close()
    with os.fdopen(r, "rb") as out:
        assert [p[2]["qty"] for p in frames(out.read())] == ["1", "2", "3", "4"]


def test_a_child_that_stops_reading_is_taken_as_broken_and_close_does_not_hang() -> None:
    """A live child that reads nothing (wedged on its disk, stopped) must not hold the drain
    thread in a write for ever: the watcher is told after the stall limit, the frame is kept
    for the next child, and a close returns."""
    r, w = os.pipe()  # nobody reads r
    broken = threading.Event()
    pub = PipePublisher(stall_s=0.5)
    pub.attach(os.fdopen(w, "wb"), on_broken=broken.set)
    try:
        for i in range(1, 30_001):  # several MB of frames: far more than the pipe holds
            pub.publish_later(trade(i))
        assert broken.wait(10), "a write to a child that reads nothing never gave up"
        assert len(pub._pending) > 0  # what did not go is kept for the next child
        t0 = time.monotonic()
        pub.close()
        assert time.monotonic() - t0 < 8
    finally:
        os.close(r)


def test_a_stopped_child_is_replaced_and_gets_what_it_did_not_read(tmp_path: Path) -> None:
    ep = EventProcess(spec(tmp_path))
    ep.publisher._stall_s = 1.0
    ep.start()
    try:
        pid = ep.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # alive, reading nothing
        n = 30_000
        for i in range(1, n + 1):
            ep.publisher.publish_later(trade(i))
        wait_until(lambda: ep.restarts == 1, 20.0)
        assert ep.pid != pid
        ep.publisher.publish_later(trade(n + 1))
        # Every event is journaled by the new child, or counted lost (it was in the old
        # child's pipe); none waits for ever behind the stopped one.
        wait_until(lambda: ep.stats().durable_next - 1 + ep.lost_events == n + 1, 30.0)
        last = ep.stats().durable_next - 1
        (event,) = collect(stub(ep), last, from_sequence=last)
        assert event.trade.qty == str(n + 1)
    finally:
        t0 = time.monotonic()
        ep.stop()
        assert time.monotonic() - t0 < 20


def frames(data: bytes) -> list[Pending]:
    out: list[Pending] = []
    while data:
        (size,), data = HEADER.unpack(data[:HEADER.size]), data[HEADER.size:]
        out += marshal.loads(data[:size])
        data = data[size:]
    return out


def test_stop_does_not_restart(proc: EventProcess) -> None:
    proc.publisher.publish_later(trade(1))
    assert collect(stub(proc), 1, from_sequence=1)[0].trade.qty == "1"
    pid = proc.pid
    proc.stop()
    assert proc._watcher is not None and not proc._watcher.is_alive()
    assert proc._proc is not None and proc._proc.returncode == 0
    assert proc.pid == pid and proc.restarts == 0 and proc.lost_events == 0


def test_backlog_is_bounded_and_drops_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """With nowhere to deliver (never attached: the child stalled or down), the newest events
    are dropped beyond max_pending and the drain reports it, rate-limited."""
    pub = PipePublisher(max_pending=10)
    for i in range(1, 16):
        pub.publish_later(trade(i))
    assert len(pub._pending) == 10 and pub.dropped == 5
    assert [p[2]["qty"] for p in pub._pending] == [str(i) for i in range(1, 11)]
    with caplog.at_level("ERROR", logger="fixgw.events"):
        pub.flush()
        pub.publish_later(trade(16))
        pub.flush()
    full = [r.getMessage() for r in caplog.records if "backlog full" in r.getMessage()]
    assert full == ["event backlog full (10 pending): 5 events dropped; is the event process "
                    "stalled?"]
    assert pub.dropped == 6
