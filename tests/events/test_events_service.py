"""EventService over a real gRPC server on loopback (port 0): filters, resume, restart, retention,
backpressure, ordering, raw FIX, health and reflection; with a journal, only what it has written
is served."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway._proto.fixgw.v1 import common_pb2, events_pb2, events_pb2_grpc
from gateway.events import EventLog, EventLogConfig, EventServer, EventServerConfig
from gateway.events import builders as b
from gateway.listen import ListenError
from tests.conftest import wait_until

FIX_A = b.EventSource.fix("FIX.4.4:GW->KRAKEN")
FIX_B = b.EventSource.fix("FIX.4.4:OMS->GW")
RAW = b"8=FIX.4.4\x019=5\x0135=8\x0110=000\x01"

Stub = events_pb2_grpc.EventServiceStub


class Harness:
    """One log + server + channel; `restart()` simulates a gateway restart on the same journal."""

    def __init__(
        self,
        log_cfg: EventLogConfig,
        srv_cfg: EventServerConfig,
        channel_options: list[tuple[str, int]],
    ) -> None:
        self.log_cfg = log_cfg
        self.srv_cfg = srv_cfg
        self.channel_options = channel_options
        self._start()

    def _start(self) -> None:
        self.log = EventLog(self.log_cfg)
        self.server = EventServer(self.log, self.srv_cfg)
        port = self.server.start()
        self.target = f"127.0.0.1:{port}"
        self.channel = grpc.insecure_channel(self.target, options=self.channel_options)
        self.stub = Stub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(0.5)
        self.log.close()

    def restart(self) -> None:
        self.close()
        self._start()

    def new_stub(self, options: list[tuple[str, int]] | None = None) -> Stub:
        opts = self.channel_options if options is None else options
        ch = grpc.insecure_channel(self.target, options=opts)
        return Stub(ch)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(
        journal: bool = True,
        ring: int = 1 << 12,
        channel_options: list[tuple[str, int]] | None = None,
        **srv: object,
    ) -> Harness:
        log_cfg = EventLogConfig(
            journal_dir=tmp_path / "journal" if journal else None, ring_capacity=ring
        )
        srv_cfg = EventServerConfig(port=0, **srv)  # type: ignore[arg-type]
        h = Harness(log_cfg, srv_cfg, channel_options or [])
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def order(
    i: int,
    *,
    symbol: str = "XBT/USD",
    account: str = "ACC1",
    source: b.EventSource = FIX_A,
    raw: bytes = RAW,
) -> events_pb2.Event:
    return b.order_event(
        "execution_report",
        source=source,
        symbol=symbol,
        account=account,
        cl_ord_id=f"C{i}",
        exec_type="F",
        ord_status="1",
        side="1",
        price=Decimal("65000.10"),
        order_qty="2",
        cum_qty="1",
        leaves_qty="1",
        avg_px="65000.10",
        last_px="65000.10",
        last_qty="1",
        raw_fix=raw,
    )


def collect(
    stub: Stub, until_seq: int, timeout: float = 10.0, **request: object
) -> list[events_pb2.Event]:
    """Events from a fresh subscription up to (and including) sequence `until_seq`."""
    stream = stub.Subscribe(events_pb2.SubscribeRequest(**request), timeout=timeout)  # type: ignore[arg-type]
    out: list[events_pb2.Event] = []
    try:
        for batch in stream:
            out.extend(batch.events)
            if out and out[-1].sequence >= until_seq:
                break
    finally:
        stream.cancel()
    return [e for e in out if e.sequence <= until_seq]


def status_of(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_filters_kind_symbol_session_account(harness: Callable[..., Harness]) -> None:
    h = harness(journal=False)
    log = h.log
    published = [
        log.publish(order(1, symbol="XBT/USD", account="A1", source=FIX_A)),
        log.publish(order(2, symbol="ETH/USD", account="A2", source=FIX_B)),
        log.publish(b.session_event("logon", source=FIX_A, next_sender_seq_num=2)),
        log.publish(
            b.book_delta(source=b.EventSource.ws("md"), symbol="XBT/USD", bids=[("1", "0")])
        ),
        log.publish(
            b.trade(source=FIX_B, symbol="ETH/USD", price="3000.5", qty="0.1", aggressor_side="2")
        ),
        log.publish(order(3, symbol="XBT/USD", account="A2", source=FIX_B)),
        log.publish(b.gate_decision(rule="max_qty", action="warn", symbol="XBT/USD", account="A1")),
    ]

    def seqs(**req: object) -> list[int]:
        # Everything is already published and in memory, so the first batch holds every match.
        request = events_pb2.SubscribeRequest(from_sequence=1, **req)  # type: ignore[arg-type]
        stream = h.stub.Subscribe(request, timeout=5)
        try:
            return [e.sequence for e in next(stream).events]
        finally:
            stream.cancel()

    assert seqs() == published
    assert seqs(kinds=[events_pb2.EVENT_KIND_ORDER]) == [published[0], published[1], published[5]]
    assert seqs(kinds=[events_pb2.EVENT_KIND_TRADE, events_pb2.EVENT_KIND_SESSION_STATUS]) == [
        published[2],
        published[4],
    ]
    assert seqs(symbols=["XBT/USD"]) == [published[0], published[3], published[5], published[6]]
    assert seqs(sessions=["FIX.4.4:OMS->GW"]) == [published[1], published[4], published[5]]
    assert seqs(accounts=["A2"]) == [published[1], published[5]]
    # Fields AND together.
    assert seqs(symbols=["XBT/USD"], accounts=["A2"]) == [published[5]]
    assert seqs(kinds=[events_pb2.EVENT_KIND_ORDER], sessions=["FIX.4.4:GW->KRAKEN"]) == [
        published[0]
    ]
    assert seqs(source_kinds=[common_pb2.SOURCE_KIND_WS]) == [published[3]]
    assert seqs(source_kinds=[common_pb2.SOURCE_KIND_GATEWAY]) == [published[6]]
    # Kind is set by the log, payloads survive the trip intact.
    evs = collect(h.stub, published[0], from_sequence=1)
    assert evs[0].kind == events_pb2.EVENT_KIND_ORDER
    assert evs[0].order.price == "65000.10" and evs[0].order.cl_ord_id == "C1"


def test_resume_after_client_reconnect(harness: Callable[..., Harness]) -> None:
    h = harness(journal=False)
    for i in range(5):
        h.log.publish(order(i))
    # A live subscriber (from the next sequence) sees 6..8 as they are published, disconnects.
    stream = h.stub.Subscribe(events_pb2.SubscribeRequest(from_sequence=6), timeout=10)
    seen: list[int] = []

    def publish_three() -> None:
        for i in range(3):
            time.sleep(0.02)
            h.log.publish(order(100 + i))

    threading.Thread(target=publish_three, daemon=True).start()
    for batch in stream:
        seen.extend(e.sequence for e in batch.events)
        if seen[-1] >= 8:
            break
    stream.cancel()
    assert seen == [6, 7, 8]
    # Missed while away.
    for i in range(40):
        h.log.publish(order(200 + i))
    evs = collect(h.stub, 48, from_sequence=seen[-1] + 1)
    assert [e.sequence for e in evs] == list(range(9, 49))
    assert [e.order.cl_ord_id for e in evs[:2]] == ["C200", "C201"]


def test_resume_after_gateway_restart(harness: Callable[..., Harness]) -> None:
    h = harness(journal=True)
    for i in range(1, 301):
        assert h.log.publish(order(i)) == i
    h.restart()
    assert h.log.next_sequence == 301
    assert h.log.oldest_sequence() == 1
    for i in range(301, 311):
        assert h.log.publish(order(i)) == i
    evs = collect(h.stub, 310, from_sequence=1, include_raw=True)
    assert [e.sequence for e in evs] == list(range(1, 311))
    assert [e.order.cl_ord_id for e in evs] == [f"C{i}" for i in range(1, 311)]
    assert all(e.raw_fix == RAW for e in evs)
    # Resume in the middle of the pre-restart history, filtered, without raw.
    evs = collect(h.stub, 305, from_sequence=295, symbols=["XBT/USD"])
    assert [e.sequence for e in evs] == list(range(295, 306))
    assert all(e.raw_fix == b"" for e in evs)
    info = h.stub.GetLogInfo(events_pb2.GetLogInfoRequest())
    assert (info.oldest_sequence, info.next_sequence, info.persistent) == (1, 311, True)


def test_out_of_range_reports_oldest_sequence(
    harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Memory only: a 64-event ring keeps 137..200 of 200.
    h = harness(journal=False, ring=64)
    for i in range(200):
        h.log.publish(order(i))
    err = status_of(lambda: collect(h.stub, 200, from_sequence=1))
    assert err.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "oldest available is 137" in (err.details() or "")
    md = dict(err.trailing_metadata() or ())
    assert md["oldest-sequence"] == "137"
    assert [e.sequence for e in collect(h.stub, 200, from_sequence=137)] == list(range(137, 201))
    # Beyond the newest is out of range too.
    err = status_of(lambda: collect(h.stub, 500, from_sequence=500))
    assert err.code() == grpc.StatusCode.OUT_OF_RANGE
    assert dict(err.trailing_metadata() or ())["next-sequence"] == "201"


def test_out_of_range_after_journal_retention(tmp_path: Path) -> None:
    log = EventLog(
        EventLogConfig(
            journal_dir=tmp_path / "j",
            ring_capacity=64,
            segment_max_bytes=4096,
            retention_max_bytes=16 * 1024,
        )
    )
    server = EventServer(log, EventServerConfig(port=0))
    port = server.start()
    try:
        for i in range(2000):
            log.publish(order(i))
        assert log.flush()
        oldest = log.oldest_sequence()
        assert 1 < oldest < 2000 - 64
        stub = Stub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        err = status_of(lambda: collect(stub, 2000, from_sequence=1))
        assert err.code() == grpc.StatusCode.OUT_OF_RANGE
        assert dict(err.trailing_metadata() or ())["oldest-sequence"] == str(oldest)
        assert f"oldest available is {oldest}" in (err.details() or "")
        evs = collect(stub, 2000, from_sequence=oldest)  # from disk, then from memory
        assert [e.sequence for e in evs] == list(range(oldest, 2001))
    finally:
        server.stop(0)
        log.close()


def test_slow_subscriber_cut_off_fast_one_gets_everything(harness: Callable[..., Harness]) -> None:
    # Small HTTP/2 windows so that "stops reading" backs up to the server quickly.
    small_window = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16 * 1024)]
    h = harness(journal=False, ring=1 << 15, max_lag_events=2000, channel_options=small_window)
    total = 20_000
    raw = b"X" * 400

    h.log.publish(order(0, raw=raw))
    slow = h.new_stub(small_window).Subscribe(
        events_pb2.SubscribeRequest(from_sequence=1, include_raw=True), timeout=30
    )
    fast_seqs: list[int] = []
    fast_errors: list[grpc.RpcError] = []

    def fast_reader() -> None:
        stream = h.new_stub([]).Subscribe(events_pb2.SubscribeRequest(from_sequence=1), timeout=30)
        try:
            for batch in stream:
                fast_seqs.extend(e.sequence for e in batch.events)
                if fast_seqs[-1] >= total + 1:
                    break
        except grpc.RpcError as exc:
            fast_errors.append(exc)
        stream.cancel()

    first = next(slow)  # the slow subscriber is live and has read exactly one batch
    slow_seen = [e.sequence for e in first.events]
    t = threading.Thread(target=fast_reader, daemon=True)
    t.start()

    # The slow subscriber reads nothing while all of this is published: publish() has nothing
    # to wait on (a blocking publish would hang here, with the slow reader parked).
    t0 = time.monotonic()
    for i in range(1, total + 1):
        h.log.publish(order(i, raw=raw))
        if i % 500 == 0:
            # The fast subscriber shares this process's GIL: let it catch up between bursts so
            # that it is never near the lag limit, whatever the machine's load.
            deadline = time.monotonic() + 10
            while (not fast_seqs or fast_seqs[-1] < i + 1) and time.monotonic() < deadline:
                time.sleep(0.001)
    publish_wall = time.monotonic() - t0
    t.join(30)
    assert not fast_errors
    assert fast_seqs == list(range(1, total + 2)), "fast subscriber must get everything in order"
    assert publish_wall < 10, f"publishing took {publish_wall:.1f}s"

    # The slow one drains what was in flight, then learns where to resume.
    with pytest.raises(grpc.RpcError) as info:
        for batch in slow:
            slow_seen.extend(e.sequence for e in batch.events)
    err = info.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    resume = int(dict(err.trailing_metadata() or ())["resume-sequence"])
    assert f"resume from sequence {resume}" in (err.details() or "")
    assert slow_seen == list(range(1, resume)), "no gap and no duplicate before the resume point"
    assert resume < total
    # And resuming from there works.
    evs = collect(h.stub, total + 1, from_sequence=resume)
    assert [e.sequence for e in evs] == list(range(resume, total + 2))


def test_ordering_with_concurrent_publishers(harness: Callable[..., Harness]) -> None:
    h = harness(journal=True, ring=1 << 15)
    n_threads, per_thread = 4, 2500
    total = n_threads * per_thread
    stream = h.stub.Subscribe(events_pb2.SubscribeRequest(from_sequence=1), timeout=30)

    def producer(tid: int) -> None:
        for i in range(per_thread):
            h.log.publish(order(i, account=f"T{tid}"))

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(n_threads)]
    got: list[events_pb2.Event] = []
    # Subscribe first (from_sequence=1 on an empty log waits for event 1).
    for th in threads:
        th.start()
    for batch in stream:
        got.extend(batch.events)
        if got[-1].sequence >= total:
            break
    stream.cancel()
    for th in threads:
        th.join()
    assert [e.sequence for e in got] == list(range(1, total + 1))
    for k in range(n_threads):
        mine = [e.order.cl_ord_id for e in got if e.account == f"T{k}"]
        assert mine == [f"C{i}" for i in range(per_thread)], "per-producer order preserved"
    times = [e.gateway_receive_time.ToNanoseconds() for e in got]
    assert all(t > 0 for t in times)


def test_include_raw_on_and_off(harness: Callable[..., Harness]) -> None:
    h = harness(journal=False)
    h.log.publish(order(1, raw=RAW))
    h.log.publish(b.session_event("logout", source=FIX_A, direction="inbound", text="bye"))
    with_raw = collect(h.stub, 2, from_sequence=1, include_raw=True)
    without = collect(h.stub, 2, from_sequence=1)
    assert [e.raw_fix for e in with_raw] == [RAW, b""]
    assert [e.raw_fix for e in without] == [b"", b""]
    # Apart from raw_fix the events are identical.
    with_raw[0].ClearField("raw_fix")
    assert with_raw == without


def test_single_event_batches_and_batching(harness: Callable[..., Harness]) -> None:
    h = harness(journal=False)
    for i in range(50):
        h.log.publish(order(i))
    stream = h.stub.Subscribe(events_pb2.SubscribeRequest(from_sequence=1, max_batch_events=1))
    sizes = [len(next(stream).events) for _ in range(10)]
    stream.cancel()
    assert sizes == [1] * 10
    stream = h.stub.Subscribe(events_pb2.SubscribeRequest(from_sequence=1, max_batch_events=20))
    first = next(stream)
    stream.cancel()
    assert len(first.events) == 20, "a subscriber that is behind gets full batches"


def test_health_and_reflection(harness: Callable[..., Harness]) -> None:
    h = harness(journal=False)
    health = health_pb2_grpc.HealthStub(h.channel)
    for service in ("", "fixgw.v1.EventService"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(h.channel)
    req = reflection_pb2.ServerReflectionRequest(list_services="")
    names = {
        s.name
        for resp in refl.ServerReflectionInfo(iter([req]), timeout=5)
        for s in resp.list_services_response.service
    }
    assert "fixgw.v1.EventService" in names
    assert "grpc.health.v1.Health" in names
    req = reflection_pb2.ServerReflectionRequest(file_containing_symbol="fixgw.v1.EventService")
    resp = next(iter(refl.ServerReflectionInfo(iter([req]), timeout=5)))
    assert resp.file_descriptor_response.file_descriptor_proto


def test_stop_ends_streams_with_unavailable_and_resume_point(
    harness: Callable[..., Harness],
) -> None:
    h = harness(journal=False)
    for i in range(3):
        h.log.publish(order(i))
    stream = h.stub.Subscribe(events_pb2.SubscribeRequest(from_sequence=1), timeout=10)
    assert [e.sequence for e in next(stream).events] == [1, 2, 3]
    h.server.stop(1.0)
    err = status_of(lambda: next(stream))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert dict(err.trailing_metadata() or ())["resume-sequence"] == "4"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI needed to make a cert")
def test_tls(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    log = EventLog()
    server = EventServer(log, EventServerConfig(port=0, tls_cert_file=cert, tls_key_file=key))
    port = server.start()
    try:
        log.publish(order(1))
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{port}", creds) as ch:
            evs = collect(Stub(ch), 1, from_sequence=1)
        assert [e.sequence for e in evs] == [1]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            err = status_of(lambda: collect(Stub(ch), 1, timeout=2, from_sequence=1))
            assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        server.stop(0)
        log.close()


@pytest.mark.parametrize("wake_interval_s", [None, 0.005])
def test_parked_subscriber_is_woken(
    harness: Callable[..., Harness], wake_interval_s: float | None
) -> None:
    h = harness(journal=False, wake_interval_s=wake_interval_s)
    stream = h.stub.Subscribe(events_pb2.SubscribeRequest(from_sequence=1), timeout=10)
    got: list[int] = []
    for i in range(5):
        deadline = time.monotonic() + 5
        while h.server.subscriber_count == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # the subscriber is parked again by now
        h.log.publish(order(i))
        got.extend(e.sequence for e in next(stream).events)
    stream.cancel()
    assert got == [1, 2, 3, 4, 5]


def test_port_in_use_fails_start() -> None:
    log = EventLog()
    first = EventServer(log, EventServerConfig(port=0))
    port = first.start()
    try:
        with pytest.raises(ListenError,
                           match=rf"event service cannot listen on 127\.0\.0\.1:{port} "):
            EventServer(log, EventServerConfig(port=port)).start()
    finally:
        first.stop(0)
        log.close()


def test_replaying_subscriber_is_not_bounded_by_lag_limit(harness: Callable[..., Harness]) -> None:
    # 5,000 events behind with a lag limit of 100: replaying history is not "falling behind".
    h = harness(journal=True, ring=1 << 13, max_lag_events=100, default_batch_events=50)
    for i in range(5000):
        h.log.publish(order(i))
    # History is what the journal has: until it is written an event is not visible, and a
    # subscriber at the visible head is live (the writer's next batch would then be its lag).
    assert h.log.flush()
    evs = collect(h.stub, 5000, from_sequence=1)
    assert [e.sequence for e in evs] == list(range(1, 5001))


class Reader:
    """Reads a stream on its own thread, so a test can check what has (not) arrived meanwhile."""

    def __init__(self, stub: Stub, from_sequence: int) -> None:
        self.seqs: list[int] = []
        self.stream = stub.Subscribe(
            events_pb2.SubscribeRequest(from_sequence=from_sequence), timeout=30)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(grpc.RpcError):
            for batch in self.stream:
                self.seqs.extend(e.sequence for e in batch.events)

    def stop(self) -> None:
        self.stream.cancel()
        self._thread.join(5)


@pytest.mark.parametrize("wake_interval_s", [None, 0.005])
def test_only_what_the_journal_has_written_is_served(
    harness: Callable[..., Harness],
    monkeypatch: pytest.MonkeyPatch,
    wake_interval_s: float | None,
) -> None:
    """A sequence a subscriber was sent must name the same event after a crash of the process,
    when the log continues from the journal: nothing is served, or even announced (GetLogInfo,
    a subscription "from now"), before the journal has it; then the writer wakes the parked
    subscribers, in either wake mode."""
    h = harness(journal=True, wake_interval_s=wake_interval_s)
    journal = h.log._journal
    assert journal is not None
    gate = threading.Event()
    append = journal.append

    def held(records: Iterable[tuple[int, bytes, bytes]]) -> None:
        gate.wait(10)
        append(records)

    monkeypatch.setattr(journal, "append", held)
    readers: list[Reader] = []
    try:
        readers.append(Reader(h.stub, 1))
        wait_until(lambda: h.server.subscriber_count == 1, 5.0, "the subscription")
        for i in range(1, 4):
            assert h.log.publish(order(i)) == i
        readers.append(Reader(h.stub, 0))  # "from now": the first event not yet visible
        wait_until(lambda: h.server.subscriber_count == 2, 5.0, "the second subscription")
        time.sleep(0.2)
        assert [r.seqs for r in readers] == [[], []]
        info = h.stub.GetLogInfo(events_pb2.GetLogInfoRequest(), timeout=5)
        assert info.next_sequence == 1 and h.log.next_sequence == 4
        gate.set()
        wait_until(lambda: all(r.seqs == [1, 2, 3] for r in readers), 5.0, "delivery")
        assert h.stub.GetLogInfo(events_pb2.GetLogInfoRequest(), timeout=5).next_sequence == 4
    finally:
        gate.set()
        for r in readers:
            r.stop()


@pytest.mark.parametrize("resume_from", [2, 10])
def test_a_corrupt_record_is_data_loss_wherever_the_resume_point_is(
        tmp_path: Path, resume_from: int) -> None:
    """Record 3 of the first segment damaged (bit rot, a crash without fsync): resuming at or
    after it is DATA_LOSS with the sequence to resume from, never OUT_OF_RANGE sending the
    client back to the oldest sequence to read again what it had."""
    from gateway.events.journal import MAGIC, RECORD_HEADER

    cfg = EventLogConfig(journal_dir=tmp_path / "j", ring_capacity=64,
                         segment_max_bytes=16 * 1024)
    log = EventLog(cfg)
    for i in range(300):
        log.publish(order(i))
    assert log.flush()
    log.close()
    first = sorted((tmp_path / "j").glob("*.evj"))[0]
    data = bytearray(first.read_bytes())
    off = len(MAGIC)
    for _ in range(2):
        off += RECORD_HEADER.size + RECORD_HEADER.unpack_from(data, off)[0]
    plen, blen, crc, _seq = RECORD_HEADER.unpack_from(data, off)
    RECORD_HEADER.pack_into(data, off, plen, blen, crc, 999_999)
    first.write_bytes(bytes(data))
    log = EventLog(cfg)
    server = EventServer(log, EventServerConfig(port=0))
    port = server.start()
    try:
        stub = events_pb2_grpc.EventServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        err = status_of(lambda: collect(stub, resume_from, from_sequence=resume_from))
        assert err.code() == grpc.StatusCode.DATA_LOSS, (err.code(), err.details())
        assert "resume-sequence" in dict(err.trailing_metadata() or ())
    finally:
        server.stop(0)
        log.close()
