"""EventLog and journal without gRPC: sequencing, stamping, restart recovery, retention."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from gateway._proto.fixgw.v1 import events_pb2
from gateway.events import EventLog, EventLogClosed, EventLogConfig, SequenceOutOfRange
from gateway.events import builders as b
from gateway.events.journal import SEGMENT_SUFFIX

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
