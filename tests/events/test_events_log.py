"""EventLog and journal without gRPC: sequencing, stamping, restart recovery, retention, and
what subscribers may see (visible_next: with a journal, only what it has written) and who wakes
them."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from gateway._proto.fixgw.v1 import events_pb2
from gateway.events import EventLog, EventLogClosed, EventLogConfig, SequenceOutOfRange
from gateway.events import builders as b
from gateway.events.journal import SEGMENT_SUFFIX, Journal
from tests.conftest import wait_until

SRC = b.EventSource.fix("S1")


def ev(i: int, raw: bytes = b"") -> events_pb2.Event:
    return b.order_event(
        "accepted", source=SRC, symbol="XBT/USD", cl_ord_id=f"C{i}", order_qty="1", raw_fix=raw
    )


def test_publish_assigns_sequence_kind_and_receive_time() -> None:
    with EventLog() as log:
        before = time.time_ns()
        assert log.publish(ev(1)) == 1
        assert log.publish(b.session_event("logon", source=SRC)) == 2
        stamped = b.trade(
            source=SRC, symbol="X", price="1", qty="1", gateway_receive_time_ns=1_700_000_000_5
        )
        assert log.publish(stamped) == 3
        got = log.read(1)
    assert [e.sequence for e in got] == [1, 2, 3]
    assert [e.kind for e in got] == [
        events_pb2.EVENT_KIND_ORDER,
        events_pb2.EVENT_KIND_SESSION_STATUS,
        events_pb2.EVENT_KIND_TRADE,
    ]
    assert got[0].gateway_receive_time.ToNanoseconds() >= before
    assert got[2].gateway_receive_time.ToNanoseconds() == 1_700_000_000_5  # producer's stamp kept


def test_publish_rejects_payloadless_event_without_consuming_a_sequence() -> None:
    with EventLog() as log:
        with pytest.raises(ValueError):
            log.publish(events_pb2.Event(symbol="X"))
        assert log.publish(ev(1)) == 1


def test_publish_after_close_raises() -> None:
    log = EventLog()
    log.close()
    with pytest.raises(EventLogClosed):
        log.publish(ev(1))


def test_read_spans_journal_and_ring_and_keeps_raw(tmp_path: Path) -> None:
    cfg = EventLogConfig(journal_dir=tmp_path, ring_capacity=16)
    with EventLog(cfg) as log:
        for i in range(1, 101):
            log.publish(ev(i, raw=b"8=FIX.4.4\x01" if i % 2 else b""))
        assert log.ring_oldest == 85
        got = log.read(10, max_events=91)
    assert [e.sequence for e in got] == list(range(10, 101))
    assert [e.order.cl_ord_id for e in got] == [f"C{i}" for i in range(10, 101)]
    assert [bool(e.raw_fix) for e in got] == [i % 2 == 1 for i in range(10, 101)]


def test_reopen_continues_sequence_and_truncates_torn_tail(tmp_path: Path) -> None:
    with EventLog(EventLogConfig(journal_dir=tmp_path)) as log:
        for i in range(1, 11):
            log.publish(ev(i))
    (segment,) = sorted(tmp_path.glob("*" + SEGMENT_SUFFIX))
    good_size = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(b"\x30\x00\x00\x00\x10")  # half a record header: a crash mid-write
    with EventLog(EventLogConfig(journal_dir=tmp_path)) as log:
        assert segment.stat().st_size == good_size
        assert log.next_sequence == 11
        assert log.publish(ev(11)) == 11
        assert [e.order.cl_ord_id for e in log.read(1, 100)] == [f"C{i}" for i in range(1, 12)]


def test_reopen_drops_record_with_bad_crc(tmp_path: Path) -> None:
    with EventLog(EventLogConfig(journal_dir=tmp_path)) as log:
        for i in range(1, 6):
            log.publish(ev(i))
    (segment,) = sorted(tmp_path.glob("*" + SEGMENT_SUFFIX))
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF  # corrupt the last record's payload
    segment.write_bytes(bytes(data))
    with EventLog(EventLogConfig(journal_dir=tmp_path)) as log:
        assert log.next_sequence == 5
        assert [e.sequence for e in log.read(1)] == [1, 2, 3, 4]


def test_segments_roll_and_retention_moves_oldest(tmp_path: Path) -> None:
    cfg = EventLogConfig(
        journal_dir=tmp_path, ring_capacity=16, segment_max_bytes=2048, retention_max_bytes=8192
    )
    with EventLog(cfg) as log:
        for i in range(1, 1001):
            log.publish(ev(i))
        assert log.flush()
        segments = sorted(tmp_path.glob("*" + SEGMENT_SUFFIX))
        assert 2 <= len(segments) <= 6
        assert sum(p.stat().st_size for p in segments) <= 8192 + 2048
        oldest = log.oldest_sequence()
        assert oldest == int(segments[0].name.removesuffix(SEGMENT_SUFFIX))
        with pytest.raises(SequenceOutOfRange) as info:
            log.read(oldest - 1)
        assert info.value.oldest == oldest
        assert [e.sequence for e in log.read(oldest, 2000)] == list(range(oldest, 1001))
    # After a restart the retained range is the same.
    with EventLog(cfg) as log:
        assert log.oldest_sequence() == oldest
        assert log.next_sequence == 1001


def test_publish_is_cheap_on_the_caller_thread(tmp_path: Path) -> None:
    """A loose guard (CI machines vary); tools/bench_events.py measures it properly."""
    with EventLog(EventLogConfig(journal_dir=tmp_path)) as log:
        events = [ev(i, raw=b"8=FIX.4.4\x01" * 20) for i in range(5000)]
        costs = []
        for e in events:
            t0 = time.perf_counter_ns()
            log.publish(e)
            costs.append(time.perf_counter_ns() - t0)
    assert statistics.median(costs) < 50_000


# ---- visibility: what subscribers may be sent, and who tells them --------------------------------

WRITER = "fixgw-events-journal"
Records = Iterable[tuple[int, bytes, bytes]]


def journal_of(log: EventLog) -> Journal:
    journal = log._journal
    assert journal is not None
    return journal


def hold_writes(log: EventLog, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """The journal's writes wait until the returned event is set: the state between a publish
    and its write, which normally lasts a couple of milliseconds, held still."""
    gate = threading.Event()
    journal = journal_of(log)
    append = journal.append

    def held(records: Records) -> None:
        gate.wait(10)
        append(records)

    monkeypatch.setattr(journal, "append", held)
    return gate


def thread_names(into: list[str]) -> Callable[[], None]:
    """A waker that records which thread ran it."""

    def wake() -> None:
        into.append(threading.current_thread().name)

    return wake


def test_with_a_journal_events_become_visible_once_written_and_the_writer_wakes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = EventLog(EventLogConfig(journal_dir=tmp_path))
    gate = hold_writes(log, monkeypatch)
    woken: list[str] = []
    log.add_waker(thread_names(woken))
    try:
        assert log.publish(ev(1)) == 1 and log.publish(ev(2)) == 2
        time.sleep(0.02)  # the writer (woken by the first publish) has them, held writing them
        assert (log.next_sequence, log.durable_next, log.visible_next) == (3, 1, 1)
        assert woken == [], "a publish makes nothing visible, so it wakes nobody"
        gate.set()
        wait_until(lambda: log.visible_next == 3, 5.0, "the write")
        assert woken and set(woken) == {WRITER}
    finally:
        gate.set()
        log.close()


def test_the_writer_is_woken_by_a_publish_not_by_its_interval(tmp_path: Path) -> None:
    """An idle writer sleeps until a publish finds its queue empty: with an hour-long interval
    every event still becomes visible at once, batch after batch."""
    log = EventLog(EventLogConfig(journal_dir=tmp_path, writer_interval_s=3600.0))
    try:
        for batch in range(20):
            time.sleep(0.01)  # the writer is idle again, asleep on its kick
            t0 = time.monotonic()
            for i in range(batch % 3 + 1):
                log.publish(ev(i))
            wait_until(lambda: log.visible_next == log.next_sequence, 2.0, "the write")
            assert time.monotonic() - t0 < 1.0
    finally:
        log.close()
    assert log._writer is not None and not log._writer.is_alive(), "close stops the writer"


def test_without_a_writer_thread_the_owner_journals_and_wakes_on_its_own_thread(
        tmp_path: Path) -> None:
    """The event process publishes and journals on one thread (`writer_thread=False`): nothing is
    visible until it calls write_pending, which wakes subscribers from that thread; close and
    flush write what is left. The journal reopens with every event."""
    log = EventLog(EventLogConfig(journal_dir=tmp_path, writer_thread=False))
    woken: list[str] = []
    log.add_waker(thread_names(woken))
    me = threading.current_thread().name
    assert not any(t.name == WRITER for t in threading.enumerate()), "no writer thread"
    try:
        assert [log.publish(ev(i)) for i in range(3)] == [1, 2, 3]
        assert (log.next_sequence, log.durable_next, log.visible_next) == (4, 1, 1)
        assert woken == []
        log.write_pending()
        assert (log.durable_next, log.visible_next) == (4, 4)
        assert woken == [me]
        log.publish(ev(3))
        assert log.flush() and log.visible_next == 5
        log.publish(ev(4))
    finally:
        log.close()
    with EventLog(EventLogConfig(journal_dir=tmp_path, writer_thread=False)) as again:
        assert again.next_sequence == 6, "close wrote the last publish"
        assert [e.order.cl_ord_id for e in again.read(1)] == [f"C{i}" for i in range(5)]


def test_without_a_journal_a_publish_makes_its_event_visible_and_wakes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with EventLog() as log:
        woken: list[str] = []
        writer_only: list[str] = []
        log.add_waker(thread_names(woken))
        log.add_waker(thread_names(writer_only), from_publish=False)
        assert log.publish(ev(1)) == 1
        assert log.visible_next == log.next_sequence == log.durable_next == 2
        assert woken == [threading.current_thread().name]
        assert writer_only == [], "from_publish=False: never run by a publisher"


def test_a_failed_journal_serves_from_memory_and_publishers_wake(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Availability over a guarantee a broken journal cannot give: once a write fails, what was
    waiting for it becomes visible at once (the writer wakes everyone), and from then on each
    publish does, as without a journal; a waker kept off publishers stays off."""
    log = EventLog(EventLogConfig(journal_dir=tmp_path))

    def broken(records: Records) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal_of(log), "append", broken)
    woken: list[str] = []
    writer_only: list[str] = []
    log.add_waker(thread_names(woken))
    log.add_waker(thread_names(writer_only), from_publish=False)
    try:
        with caplog.at_level("ERROR"):
            log.publish(ev(1))
            wait_until(lambda: log.journal_error is not None, 5.0, "the failed write")
        assert "event journal write failed" in caplog.text
        assert (log.durable_next, log.visible_next) == (1, 2)
        assert woken == [WRITER] and writer_only == [WRITER]
        log.publish(ev(2))
        assert log.visible_next == 3
        assert woken == [WRITER, threading.current_thread().name]
        assert writer_only == [WRITER]
    finally:
        log.close()


def test_fsync_follows_the_write_and_does_not_hold_back_delivery(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = EventLog(EventLogConfig(journal_dir=tmp_path, fsync=True))
    journal = journal_of(log)
    gate = threading.Event()
    synced: list[int] = []
    sync = journal.sync

    def held_sync() -> None:
        gate.wait(10)
        sync()
        synced.append(log.durable_next)

    monkeypatch.setattr(journal, "sync", held_sync)
    try:
        log.publish(ev(1))
        wait_until(lambda: log.visible_next == 2, 5.0, "the write")
        assert synced == [], "visible while its fsync is still to come"
        gate.set()
        wait_until(lambda: bool(synced), 5.0, "the fsync")
        assert synced == [2]
    finally:
        gate.set()
        log.close()


def test_a_ring_batch_keeps_under_its_byte_cap() -> None:
    """API-GUIDE: a batch is capped at max_batch_bytes; an event larger than that goes alone.
    The event that would cross the cap starts the next batch (it is not consumed)."""
    from gateway.events.log import EventFilter

    with EventLog() as log:
        for i in range(1, 4):
            log.publish(ev(i))
        one, _ = log.read_ring(1, 2, EventFilter(), False, 100, 1 << 20)
        cap = len(one[0]) * 3 // 2
        batches, seq = [], 1
        while seq < 4:
            chunks, seq = log.read_ring(seq, 4, EventFilter(), False, 100, cap)
            batches.append(len(chunks))
        assert batches == [1, 1, 1]
        big, nxt = log.read_ring(1, 4, EventFilter(), False, 100, 1)  # smaller than any event
        assert (len(big), nxt) == (1, 2)


def test_in_process_publish_keeps_queue_order() -> None:
    """`publish` (an event built by the caller) goes behind what was queued before it with
    `publish_later`, as it does through the event process."""
    from gateway.events.publisher import InProcessPublisher

    with EventLog() as log:
        pub = InProcessPublisher(log, poll_s=0.05)
        try:
            pub.publish_later(("order_event", {"event_type": "accepted", "source": ("fix", "S1"),
                                               "symbol": "XBT/USD", "cl_ord_id": "FIRST",
                                               "order_qty": "1"}))
            pub.publish(b.order_event("accepted", source=SRC, symbol="XBT/USD",
                                      cl_ord_id="SECOND", order_qty="1"))
            pub.flush()
            got = log.read(1)
        finally:
            pub.close()
    assert [e.order.cl_ord_id for e in got] == ["FIRST", "SECOND"]


def test_in_process_events_wait_in_the_bounded_backlog_while_the_journal_is_stuck(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal write that hangs (a dead disk): the log's own queue stops growing at the
    publisher's cap, the publisher's bounded backlog holds the rest and drops (counted) what
    it cannot, and a close does not wait for ever on the stuck writer."""
    from gateway.events.publisher import InProcessPublisher

    stuck = threading.Event()
    release = threading.Event()
    append = Journal.append

    def hang(self: Journal, records: list[tuple[int, bytes, bytes]]) -> None:
        stuck.set()
        release.wait(30)
        append(self, records)

    monkeypatch.setattr(Journal, "append", hang)
    log = EventLog(EventLogConfig(journal_dir=tmp_path / "j"))
    pub = InProcessPublisher(log, poll_s=0.001, max_unwritten=500)
    pub._max_pending = 2_000
    try:
        spec = ("order_event", {"event_type": "accepted", "source": ("fix", "S1"),
                                "symbol": "XBT/USD", "cl_ord_id": "C", "order_qty": "1"})
        pub.publish_later(spec)
        assert stuck.wait(5)
        for _ in range(40):  # at a pace the drain keeps up with
            for _ in range(250):
                pub.publish_later(spec)
            time.sleep(0.005)
        time.sleep(0.1)
        assert log.unwritten <= 500 + 250  # at most one drained batch past the cap
        assert pub.dropped > 0
        t0 = time.monotonic()
        pub.close()
        log.close(writer_wait_s=0.5)
        assert time.monotonic() - t0 < 15
    finally:
        release.set()
