"""Audit of the event stream's resume contract (proto/API-GUIDE.md 3.4/3.5) over a real gRPC
server: edge cases found wanting, each pinned by a test that failed before its fix."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway._proto.fixgw.v1 import common_pb2, events_pb2
from gateway.events import EventLog, EventLogConfig, EventServer, EventServerConfig
from gateway.events import builders as b
from gateway.events.journal import MAGIC, Journal, JournalGap, JournalRangeError
from gateway.events.log import FLOOR_FILE, EventFilter, SequenceOutOfRange
from gateway.events.server import _DiskCursor
from tests.conftest import wait_until
from tests.events.test_events_log import hold_writes
from tests.events.test_events_service import FIX_A, FIX_B, Stub, collect, order, status_of


def _journal_fails(log: EventLog, monkeypatch: pytest.MonkeyPatch, first: int,
                   last: int, *, floor_fails: bool = False) -> None:
    """What was published so far is journaled; then the disk is full: events `first`..`last`
    (order numbers) are published and the log streams them from memory only. `floor_fails`:
    the sequence floor file cannot be written either (its directory is gone; chmod would not
    stop root)."""
    assert log.flush()
    journal = log._journal
    assert journal is not None

    def broken(records: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal, "append", broken)
    if floor_fails:
        monkeypatch.setattr(log, "_floor_path", journal.directory / "gone" / FLOOR_FILE)
    for i in range(first, last + 1):
        log.publish(order(i))
    wait_until(lambda: log.journal_error is not None, 5.0, "the failed write")


@contextlib.contextmanager
def _journal_failed_at_101(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                           ) -> Iterator[tuple[EventLog, Stub]]:
    """A served log of 64 events' memory whose journal took 1..100 and failed on 101..110."""
    log = EventLog(EventLogConfig(journal_dir=tmp_path / "j", ring_capacity=64))
    server = EventServer(log, EventServerConfig(port=0))
    port = server.start()
    try:
        for i in range(100):
            log.publish(order(i))
        _journal_fails(log, monkeypatch, 100, 109)
        yield log, Stub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    finally:
        server.stop(0)
        log.close()


def test_after_a_journal_failure_what_the_journal_holds_can_still_be_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed write stops journaling, but what was written before stays readable: a client
    resuming from there must be served, not told OUT_OF_RANGE ("events are gone", which makes
    it rebuild its state or skip events it could have had)."""
    with _journal_failed_at_101(tmp_path, monkeypatch) as (log, stub):
        # 1..100 on disk, 47..110 in memory: nothing is missing.
        assert log.oldest_sequence() == 1
        evs = collect(stub, 110, from_sequence=1)
        assert [e.sequence for e in evs] == list(range(1, 111))
        # Once memory no longer reaches back to what is on disk, the range between is gone
        # for good (never written): a replay gets what the journal has, then DATA_LOSS naming
        # the lost range (as after a restart), and so does a start inside it.
        for i in range(110, 200):
            log.publish(order(i))
        assert log.oldest_sequence() == 1
        got, err = _until_error(stub, from_sequence=1)
        assert [e.sequence for e in got] == list(range(1, 101))
        assert err.code() == grpc.StatusCode.DATA_LOSS
        md = dict(err.trailing_metadata() or ())
        assert (md["resume-sequence"], md["gap-end"]) == ("101", str(200 - 64 + 1))
        got, err = _until_error(stub, from_sequence=120)
        assert (got, err.code()) == ([], grpc.StatusCode.DATA_LOSS)
        assert dict(err.trailing_metadata() or ())["gap-end"] == str(200 - 64 + 1)


def test_a_reader_overtaken_by_retention_still_returns_what_it_read(tmp_path: Path) -> None:
    """Retention may unlink the segment a replay is reading and the next one. The reader's open
    handle still holds its segment: what it read from it before finding the next one gone must
    be returned (the server sends it, then OUT_OF_RANGE at the first sequence really gone), not
    dropped with the error, which told the client "gone from X" for X past events it never
    got and could have had."""
    journal = Journal(tmp_path, segment_max_bytes=1024, retention_max_bytes=3 * 1024)
    seq = 1

    def append(n: int) -> None:
        nonlocal seq
        journal.append((s, b"x" * 100, b"") for s in range(seq, seq + n))
        seq += n

    append(20)
    reader = journal.reader(1)
    first = reader.read(2, seq)
    assert [r.sequence for r in first] == [1, 2]
    append(80)  # retention removes the reader's segment and the next one
    oldest = journal.oldest_sequence()
    assert oldest is not None and oldest > 20
    got = reader.read(1000, seq)
    assert got and got[0].sequence == 3
    end = got[-1].sequence + 1
    assert reader.position == end < oldest
    with pytest.raises(JournalRangeError):
        reader.read(1000, seq)
    assert reader.position == end
    reader.close()
    journal.close()


def test_a_disk_cursor_overtaken_by_retention_returns_its_batch_before_the_error(
    tmp_path: Path,
) -> None:
    """The same one level up: a batch the server's disk cursor had filled when the next read
    found the rest gone is returned (and sent); the next fetch raises at the gone sequence."""
    journal = Journal(tmp_path, segment_max_bytes=1024, retention_max_bytes=3 * 1024)
    wire = order(0).SerializeToString()
    journal.append((s, wire, b"") for s in range(1, 21))
    cursor = _DiskCursor(journal.reader(1))
    journal.append((s, wire, b"") for s in range(21, 200))
    oldest = journal.oldest_sequence()
    assert oldest is not None and oldest > 20
    chunks, nxt = cursor.fetch(EventFilter(), False, 5000, 1 << 20, 200)
    assert chunks and 1 < nxt < oldest
    assert len(chunks) == nxt - 1
    with pytest.raises(JournalRangeError):
        cursor.fetch(EventFilter(), False, 5000, 1 << 20, 200)
    assert cursor.position == nxt
    cursor.reader.close()
    journal.close()


def _mixed(log: EventLog) -> None:
    log.publish(order(1, symbol="XBT/USD", account="A1", source=FIX_A))
    log.publish(order(2, symbol="ETH/USD", account="A2", source=FIX_B))
    log.publish(b.session_event("logon", source=FIX_A, next_sender_seq_num=2))
    log.publish(b.book_delta(source=b.EventSource.ws("md"), symbol="XBT/USD", bids=[("1", "0")]))
    log.publish(b.trade(source=FIX_B, symbol="ETH/USD", price="3000.5", qty="0.1",
                        aggressor_side="2"))
    log.publish(order(3, symbol="XBT/USD", account="A2", source=FIX_B))
    log.publish(b.gate_decision(rule="max_qty", action="warn", symbol="XBT/USD", account="A1"))


FILTERS: list[dict[str, object]] = [
    {},
    {"kinds": [events_pb2.EVENT_KIND_ORDER]},
    {"kinds": [events_pb2.EVENT_KIND_TRADE, events_pb2.EVENT_KIND_SESSION_STATUS]},
    {"symbols": ["XBT/USD"]},
    {"sessions": ["FIX.4.4:OMS->GW"]},
    {"accounts": ["A2"]},
    {"symbols": ["XBT/USD"], "accounts": ["A2"]},
    {"source_kinds": [common_pb2.SOURCE_KIND_WS]},
    {"source_kinds": [common_pb2.SOURCE_KIND_GATEWAY]},
    {"kinds": [events_pb2.EVENT_KIND_TOP_OF_BOOK]},
]


def _matching(stub: Stub, **req: object) -> list[tuple[int, bytes]]:
    """Every match from sequence 1: the stream until its short deadline ends it."""
    out: list[tuple[int, bytes]] = []
    request = events_pb2.SubscribeRequest(from_sequence=1, include_raw=True, **req)  # type: ignore[arg-type]
    stream = stub.Subscribe(request, timeout=0.5)
    with contextlib.suppress(grpc.RpcError):
        for batch in stream:
            out.extend((e.sequence, e.SerializeToString()) for e in batch.events)
    return out


def test_filters_select_the_same_events_from_memory_and_from_the_journal(
    tmp_path: Path,
) -> None:
    """A replay from disk (after a restart nothing old is in memory) must select exactly what the
    same filter selected from memory, byte for byte."""
    cfg = EventLogConfig(journal_dir=tmp_path / "j", ring_capacity=1 << 10)
    results: list[list[list[tuple[int, bytes]]]] = []
    for _restart in range(2):
        log = EventLog(cfg)
        if log.next_sequence == 1:
            _mixed(log)
        server = EventServer(log, EventServerConfig(port=0))
        port = server.start()
        try:
            assert log.flush()
            assert log.ring_oldest == (8 if results else 1)
            stub = Stub(grpc.insecure_channel(f"127.0.0.1:{port}"))
            results.append([_matching(stub, **flt) for flt in FILTERS])
        finally:
            server.stop(0)
            log.close()
    assert results[0] == results[1]
    assert [len(r) for r in results[0]] == [7, 3, 2, 4, 3, 2, 1, 1, 1, 0]


def test_a_journal_range_error_names_only_a_visible_next_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OUT_OF_RANGE's `next-sequence` (from a replay whose start retention removed) must be the
    visible head, like GetLogInfo's: a sequence not yet journaled could go to another event
    after a crash, and a client told of it could resume past events it never saw."""
    log = EventLog(EventLogConfig(journal_dir=tmp_path / "j", ring_capacity=64))
    try:
        for i in range(10):
            log.publish(order(i))
        assert log.flush()
        gate = hold_writes(log, monkeypatch)
        log.publish(order(10))  # published, not yet written: visible_next stays 11
        assert (log.visible_next, log.next_sequence) == (11, 12)
        with pytest.raises(SequenceOutOfRange) as info:
            log.journal_reader(0)
        assert info.value.next_sequence == 11
        gate.set()
    finally:
        log.close()


def test_a_log_restarted_after_its_journal_failed_skips_the_sequences_it_streamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The known gap: after a journal write error the log streams from memory; a log reopened
    on that journal continued from the journal's next sequence and gave sequences clients had
    seen to other events. Started with `min_next_sequence` past them, it leaves a gap that a
    replay reports (DATA_LOSS naming the lost range), before and after another restart."""
    jdir = tmp_path / "j"
    log = EventLog(EventLogConfig(journal_dir=jdir, ring_capacity=64, segment_max_bytes=4096))
    for i in range(1, 31):
        log.publish(order(i))
    _journal_fails(log, monkeypatch, 31, 35)
    server = EventServer(log, EventServerConfig(port=0))
    port = server.start()
    stub = Stub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    seen = collect(stub, 35, from_sequence=31)  # a client saw 31..35, from memory only
    assert [e.order.cl_ord_id for e in seen] == [f"C{i}" for i in range(31, 36)]
    server.stop(0)
    log.close()
    monkeypatch.undo()
    # As if the failed log could not record its floor either (that file is the next test's):
    # what the restarting side passes is all there is.
    (jdir / FLOOR_FILE).unlink()

    for _restart in range(2):  # the gap survives a further restart of the log
        log = EventLog(EventLogConfig(journal_dir=jdir, ring_capacity=64, segment_max_bytes=4096,
                                      min_next_sequence=36))
        server = EventServer(log, EventServerConfig(port=0))
        port = server.start()
        try:
            if log.next_sequence == 36:
                assert log.publish(order(100)) == 36  # never 31: that is C31 to the client
                log.publish(order(101))
                assert log.flush()
            stub = Stub(grpc.insecure_channel(f"127.0.0.1:{port}"))
            got: list[events_pb2.Event] = []
            with pytest.raises(grpc.RpcError) as info:
                stream = stub.Subscribe(events_pb2.SubscribeRequest(from_sequence=1), timeout=10)
                for batch in stream:
                    got.extend(batch.events)
            err = info.value
            assert [e.sequence for e in got] == list(range(1, 31))
            assert err.code() == grpc.StatusCode.DATA_LOSS
            md = dict(err.trailing_metadata() or ())
            assert (md["resume-sequence"], md["gap-end"]) == ("31", "36")
            assert "sequences 31..35 were lost" in (err.details() or "")
            # Resuming where the client stood is told the same, never given other events.
            err = status_of(lambda s=stub: collect(s, 36, from_sequence=33))  # type: ignore[misc]
            assert err.code() == grpc.StatusCode.DATA_LOSS
            assert dict(err.trailing_metadata() or ())["gap-end"] == "36"
            evs = collect(stub, 37, from_sequence=36)
            assert [(e.sequence, e.order.cl_ord_id) for e in evs] == [(36, "C100"), (37, "C101")]
        finally:
            server.stop(0)
            log.close()


@pytest.mark.parametrize("segment_max", [1 << 20, 3 * 120 + 8])
def test_the_journal_keeps_a_gap_across_reopen_and_readers_report_it(
    tmp_path: Path, segment_max: int
) -> None:
    """A gap in the journal (a log started past its next sequence) starts a segment of its own;
    a reader running into it, or starting inside it, gets JournalGap with where it ends. The
    small segment size leaves an empty segment named in the gap (a roll after a full one):
    it is replaced, so no segment claims a lost sequence."""
    journal = Journal(tmp_path, segment_max_bytes=segment_max)
    journal.append((s, b"x" * 100, b"") for s in range(1, 4))
    journal.close()
    empty_named_in_gap = (tmp_path / "00000000000000000004.evj").exists()
    assert empty_named_in_gap == (segment_max < 1 << 20)
    journal = Journal(tmp_path, segment_max_bytes=segment_max)
    journal.append((s, b"y" * 100, b"") for s in range(10, 12))
    assert journal.next_sequence == 12 and journal.oldest_sequence() == 1
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[-1].startswith("00000000000000000010")
    assert not any(p.startswith("00000000000000000004") for p in names)
    reader = journal.reader(2)
    assert [r.sequence for r in reader.read(100, 12)] == [2, 3]
    with pytest.raises(JournalGap) as info:
        reader.read(100, 12)
    assert (info.value.sequence, info.value.resume) == (4, 10)
    reader.close()
    with pytest.raises(JournalGap) as info:
        journal.reader(6)
    assert (info.value.sequence, info.value.resume) == (6, 10)
    reader = journal.reader(10)
    assert [r.sequence for r in reader.read(100, 12)] == [10, 11]
    reader.close()
    journal.close()
    assert Journal(tmp_path, segment_max_bytes=segment_max).next_sequence == 12


def test_a_log_reopened_after_its_journal_failed_starts_past_the_recorded_floor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without anyone passing `min_next_sequence` (a gateway restart: the new gateway does not
    know what the old one's event process streamed from memory), the log reopened on a journal
    that had failed must not give the streamed sequences to other events: the failed log
    recorded a floor, ahead of what it may stream, before streaming from memory."""
    jdir = tmp_path / "j"
    log = EventLog(EventLogConfig(journal_dir=jdir, ring_capacity=64))
    for i in range(1, 11):
        log.publish(order(i))
    _journal_fails(log, monkeypatch, 11, 15)
    assert [e.sequence for e in log.read(11, 10)] == [11, 12, 13, 14, 15]  # streamable
    log.close()
    monkeypatch.undo()

    log = EventLog(EventLogConfig(journal_dir=jdir, ring_capacity=64))
    try:
        floor = log.next_sequence
        assert floor > 15
        # The gap is there before the first new event: a replay stops at it.
        reader = log.journal_reader(11)
        with pytest.raises(JournalGap):
            reader.read(10, log.durable_next)
        reader.close()
        assert log.publish(order(100)) == floor
        assert log.flush()
        reader = log.journal_reader(11)
        with pytest.raises(JournalGap) as info:
            reader.read(10, log.durable_next)
        reader.close()
        assert (info.value.sequence, info.value.resume) == (11, floor)
    finally:
        log.close()
    log = EventLog(EventLogConfig(journal_dir=jdir, ring_capacity=64))  # a clean restart
    try:
        assert log.next_sequence == floor + 1
    finally:
        log.close()


def test_a_floor_over_an_empty_journal_starts_a_segment_of_its_own(tmp_path: Path) -> None:
    """The journal's very first write failed (an empty segment named 1 is all there is): a log
    started at a floor must not append to that segment (readers would find sequence 1 missing
    in it), and a replay from inside the gap is told the events are gone."""
    Journal(tmp_path)._roll(1)  # what a first append that then failed leaves
    assert (tmp_path / "00000000000000000001.evj").stat().st_size == len(MAGIC)
    log = EventLog(EventLogConfig(journal_dir=tmp_path, min_next_sequence=50))
    try:
        assert log.publish(order(1)) == 50
        assert log.flush()
        assert [e.sequence for e in log.read(50, 10)] == [50]
        assert log.oldest_sequence() == 50
        with pytest.raises(SequenceOutOfRange):
            log.journal_reader(10)
    finally:
        log.close()
    log = EventLog(EventLogConfig(journal_dir=tmp_path))  # what a reopen finds on disk
    try:
        assert log.next_sequence == 51
        assert [e.order.cl_ord_id for e in log.read(50, 10)] == ["C1"]
    finally:
        log.close()


def _until_error(stub: Stub, from_sequence: int,
                 timeout: float = 5.0) -> tuple[list[events_pb2.Event], grpc.RpcError]:
    """What a subscription from `from_sequence` gets before its stream ends, and how it ends."""
    got: list[events_pb2.Event] = []
    with pytest.raises(grpc.RpcError) as info:
        stream = stub.Subscribe(events_pb2.SubscribeRequest(from_sequence=from_sequence),
                                timeout=timeout)
        for batch in stream:
            got.extend(batch.events)
    return got, info.value


def test_when_the_floor_cannot_be_recorded_either_no_sequence_a_client_saw_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The journal fails and the floor file cannot be written either (a full copy-on-write
    disk, a read-only directory): nothing tells a restarted gateway how far the log streamed
    from memory, so it streamed nothing past the journal. A client is told why (UNAVAILABLE,
    once per try, logged once), and after the restart every sequence it received still names
    the event it received under it."""
    cfg = EventLogConfig(journal_dir=tmp_path / "j", ring_capacity=64)
    log = EventLog(cfg)
    server = EventServer(log, EventServerConfig(port=0))
    port = server.start()
    seen: dict[int, str] = {}
    try:
        for i in range(1, 11):
            log.publish(order(i))
        with caplog.at_level(logging.ERROR, logger="gateway.events.log"):
            _journal_fails(log, monkeypatch, 11, 15, floor_fails=True)
            for i in range(16, 21):  # more batches: the writer tries the floor again
                log.publish(order(i))
                wait_until(lambda: log.unwritten == 0, 5.0, "the writer's batch")
        stub = Stub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        got, err = _until_error(stub, from_sequence=1)
        seen.update((e.sequence, e.order.cl_ord_id) for e in got)
        assert sorted(seen) == list(range(1, 11))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert dict(err.trailing_metadata() or ())["resume-sequence"] == "11"
        assert "sequence floor cannot be recorded" in (err.details() or "")
        err = status_of(lambda: collect(stub, 11, from_sequence=11))  # a retry: the same
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert stub.GetLogInfo(events_pb2.GetLogInfoRequest()).next_sequence == 11
        assert len([r for r in caplog.records if "floor not recorded" in r.getMessage()]) == 1
    finally:
        server.stop(0)
        log.close()
    monkeypatch.undo()

    log = EventLog(cfg)  # the gateway restarts: the journal's next sequence is 11 again
    try:
        log.publish(order(100))
        assert log.flush()
        now = {e.sequence: e.order.cl_ord_id for e in log.read(1, 100)}
        assert {s: now.get(s) for s in seen} == seen
        assert now[log.next_sequence - 1] == "C100"
    finally:
        log.close()


def test_held_back_events_are_streamed_once_the_floor_can_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The floor file becomes writable again (space freed): the idle writer records it, without
    waiting for another event, and the held-back events are streamed; a restart starts past
    them."""
    cfg = EventLogConfig(journal_dir=tmp_path / "j", ring_capacity=64, writer_interval_s=0.05)
    log = EventLog(cfg)
    server = EventServer(log, EventServerConfig(port=0))
    port = server.start()
    try:
        for i in range(1, 11):
            log.publish(order(i))
        _journal_fails(log, monkeypatch, 11, 15, floor_fails=True)
        stub = Stub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        assert status_of(lambda: collect(stub, 15, from_sequence=11)).code() == \
            grpc.StatusCode.UNAVAILABLE
        monkeypatch.undo()  # the floor's directory is back (the journal stays stopped)
        wait_until(lambda: log.visible_next == 16, 5.0, "the floor recorded")
        evs = collect(stub, 15, from_sequence=11)
        assert [e.order.cl_ord_id for e in evs] == [f"C{i}" for i in range(11, 16)]
    finally:
        server.stop(0)
        log.close()
    log = EventLog(cfg)
    try:
        assert log.next_sequence > 15
    finally:
        log.close()


def test_a_subscriber_overtaken_by_memory_after_a_journal_failure_gets_one_final_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscriber streaming after the journal failed falls behind memory: the events between
    its position and the oldest one still held were never journaled and are gone. It used to
    get UNAVAILABLE ("resume later") and then, retrying, OUT_OF_RANGE: one answer, final at
    once and the same on a retry, DATA_LOSS naming the lost range and where to resume."""
    with _journal_failed_at_101(tmp_path, monkeypatch) as (log, stub):
        stream = stub.Subscribe(events_pb2.SubscribeRequest(from_sequence=1, max_batch_events=10),
                                timeout=10)
        got = list(next(stream).events)
        for i in range(110, 200):  # memory moves past where the subscriber stands
            log.publish(order(i))
        with pytest.raises(grpc.RpcError) as info:
            for batch in stream:
                got.extend(batch.events)
        err = info.value
        assert err.code() == grpc.StatusCode.DATA_LOSS
        md = dict(err.trailing_metadata() or ())
        resume, gap_end = int(md["resume-sequence"]), int(md["gap-end"])
        assert [e.sequence for e in got] == list(range(1, resume))
        assert 101 <= resume < gap_end == log.ring_oldest == 200 - 64 + 1
        assert f"resume from {gap_end}" in (err.details() or "")
        again = status_of(lambda: collect(stub, 200, from_sequence=resume))
        assert again.code() == grpc.StatusCode.DATA_LOSS
        assert dict(again.trailing_metadata() or ()) == md
        assert [e.sequence for e in collect(stub, 200, from_sequence=gap_end)] == list(
            range(gap_end, 201))
        with pytest.raises(JournalGap):  # an in-process reader is told the same
            log.read(resume)
