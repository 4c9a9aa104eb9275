"""The gateway-wide event log: assigns sequences, keeps a ring of recent events in memory and hands
them to a background writer that journals them to disk.

Why it is shaped this way: `publish()` runs on QuickFIX callback threads, where every
microsecond is added to order latency and blocking is not allowed. So publish does only what must
be ordered (take a sequence, put the entry in the ring) under one short lock, and everything
costly is deferred to whoever needs it first: serialization to the writer thread or to the first
subscriber that sends the event, disk I/O to the writer thread, fan-out to the server's event
loop. Subscribers pull from the ring (or the journal) by sequence, which is what makes resume,
replay and "slow subscriber" handling the same code path, and costs publish nothing per
subscriber.

Visibility: with a journal, subscribers are served only events the writer has written to it
(`visible_next`), never one that exists only in this process's memory. A subscriber resumes
from `last_seen + 1`, and the log reopened after a crash continues from the journal's next
sequence: had a subscriber been sent an event the journal never got, that sequence would be
given to a different event and the client would silently miss it. Written is enough (the page
cache survives a crash of the process; fsync, for a machine crash, follows in the background).
The cost is one write added to delivery latency: a publish that finds the writer's queue empty
wakes the writer, and the writer wakes the subscribers' loop after each write.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway._proto.fixgw.v1 import events_pb2
from gateway.events.journal import Journal, JournalGap, JournalRangeError, JournalReader

__all__ = [
    "EventFilter",
    "EventLog",
    "EventLogClosed",
    "EventLogConfig",
    "SequenceOutOfRange",
]

_log = logging.getLogger(__name__)

Event = events_pb2.Event

_KIND_BY_PAYLOAD: dict[str | None, events_pb2.EventKind.ValueType] = {
    "order": events_pb2.EVENT_KIND_ORDER,
    "cancel_reject": events_pb2.EVENT_KIND_CANCEL_REJECT,
    "book_snapshot": events_pb2.EVENT_KIND_BOOK_SNAPSHOT,
    "book_delta": events_pb2.EVENT_KIND_BOOK_DELTA,
    "trade": events_pb2.EVENT_KIND_TRADE,
    "top_of_book": events_pb2.EVENT_KIND_TOP_OF_BOOK,
    "session_status": events_pb2.EVENT_KIND_SESSION_STATUS,
    "gate_decision": events_pb2.EVENT_KIND_GATE_DECISION,
    "transport_switch": events_pb2.EVENT_KIND_TRANSPORT_SWITCH,
    "signal_snapshot": events_pb2.EVENT_KIND_SIGNAL_SNAPSHOT,
}

# After a journal failure, sequences are reserved this far ahead in the floor file (see
# EventLog._reserve_floor): one small in-place write per half a reservation, and a reopened log
# starts past anything the failed one may have streamed.
_FLOOR_RESERVE = 1 << 20
FLOOR_FILE = "sequence-floor"

# Entries the journal writer serializes between voluntary GIL releases (~100-200 µs of work).
_WRITER_YIELD_EVERY = 64

# Wire tags: Event.raw_fix is field 8 (length-delimited), EventBatch.events is field 1.
_RAW_FIX_TAG = b"\x42"
_BATCH_EVENT_TAG = b"\x0a"


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def frame_event(wire: bytes) -> bytes:
    """Encode one serialized Event as an `EventBatch.events` element.

    Batches are assembled by concatenating these, so each event is serialized once however many
    subscribers receive it (protobuf defines a message as the concatenation of its fields).
    """
    return _BATCH_EVENT_TAG + _varint(len(wire)) + wire


def raw_suffix(raw: bytes) -> bytes:
    """`raw_fix` encoded on its own, appended to an Event serialized without it."""
    return _RAW_FIX_TAG + _varint(len(raw)) + raw if raw else b""


class EventLogClosed(RuntimeError):
    """publish() after close(): the producer outlived the log (a shutdown-order bug)."""


class SequenceOutOfRange(LookupError):
    """A sequence is older than what the log retains, or newer than what it has."""

    def __init__(self, sequence: int, oldest: int, next_sequence: int) -> None:
        if sequence >= next_sequence:
            msg = f"sequence {sequence} is beyond the newest event (next is {next_sequence})"
        else:
            msg = f"sequence {sequence} is no longer retained; oldest available is {oldest}"
        super().__init__(msg)
        self.sequence = sequence
        self.oldest = oldest
        self.next_sequence = next_sequence


# Serializes `_Entry.prepare` across the consumer threads (journal writer, server loop, readers).
# Publishers never take it.
_PREPARE_LOCK = threading.Lock()


class _Entry:
    """A published event; everything but ordering is deferred to `prepare()`, off the publisher.

    After `prepare()` the entry holds its filter keys as plain Python values (cheap to compare),
    the event serialized without raw_fix, and the raw bytes; the message object is dropped so the
    ring holds only bytes.
    """

    __slots__ = (
        "_framed",
        "_framed_raw",
        "_wire",
        "account",
        "event",
        "kind",
        "raw",
        "recv_ns",
        "seq",
        "session",
        "source_kind",
        "symbol",
    )

    # Set by prepare(); read only after `_wire` is set (see prepare()).
    raw: bytes
    symbol: str
    account: str
    session: str
    source_kind: int
    _framed: bytes | None
    _framed_raw: bytes | None

    def __init__(self, event: events_pb2.Event, kind: events_pb2.EventKind.ValueType, recv_ns: int):
        # Only what publish() knows; every store here is paid on the publishing thread.
        self.seq = 0
        self.event: events_pb2.Event | None = event
        self.kind = kind
        self.recv_ns = recv_ns
        self._wire: bytes | None = None

    def prepare(self) -> bytes:
        """Finish the event (sequence, kind, receive time), extract keys and raw, serialize.

        Done once, by whichever consumer thread needs the entry first. `_wire` is assigned last,
        so a reader that sees it set also sees the keys.
        """
        with _PREPARE_LOCK:
            w = self._wire
            if w is not None:
                return w
            ev = self.event
            assert ev is not None
            ev.sequence = self.seq
            ev.kind = self.kind
            if not ev.HasField("gateway_receive_time"):
                ns = self.recv_ns
                ts = ev.gateway_receive_time
                ts.seconds = ns // 1_000_000_000
                ts.nanos = ns % 1_000_000_000
            raw = ev.raw_fix
            self.raw = raw
            if raw:
                ev.ClearField("raw_fix")
            self._framed = None
            self._framed_raw = None
            src = ev.source
            self.symbol = ev.symbol
            self.account = ev.account
            self.session = src.session
            self.source_kind = src.kind
            w = ev.SerializeToString()
            self.event = None
            self._wire = w
            return w

    def wire(self) -> bytes:
        """The event serialized without raw_fix."""
        w = self._wire
        return w if w is not None else self.prepare()

    def framed(self, include_raw: bool) -> bytes:
        if self._wire is None:
            self.prepare()
        if include_raw and self.raw:
            f = self._framed_raw
            if f is None:
                f = self._framed_raw = frame_event(self.wire() + raw_suffix(self.raw))
            return f
        f = self._framed
        if f is None:
            f = self._framed = frame_event(self.wire())
        return f


class EventFilter:
    """SubscribeRequest filters as frozensets; AND across fields, OR within, empty = no filter."""

    __slots__ = ("accounts", "empty", "kinds", "sessions", "source_kinds", "symbols")

    def __init__(
        self,
        *,
        kinds: Iterable[int] = (),
        symbols: Iterable[str] = (),
        sessions: Iterable[str] = (),
        accounts: Iterable[str] = (),
        source_kinds: Iterable[int] = (),
    ) -> None:
        self.kinds = frozenset(int(k) for k in kinds)
        self.symbols = frozenset(symbols)
        self.sessions = frozenset(sessions)
        self.accounts = frozenset(accounts)
        self.source_kinds = frozenset(int(k) for k in source_kinds)
        self.empty = not (
            self.kinds or self.symbols or self.sessions or self.accounts or self.source_kinds
        )

    @classmethod
    def from_request(cls, req: events_pb2.SubscribeRequest) -> EventFilter:
        return cls(
            kinds=req.kinds,
            symbols=req.symbols,
            sessions=req.sessions,
            accounts=req.accounts,
            source_kinds=req.source_kinds,
        )

    def match(self, kind: int, symbol: str, session: str, account: str, source_kind: int) -> bool:
        return (
            (not self.kinds or kind in self.kinds)
            and (not self.symbols or symbol in self.symbols)
            and (not self.sessions or session in self.sessions)
            and (not self.accounts or account in self.accounts)
            and (not self.source_kinds or source_kind in self.source_kinds)
        )

    def match_entry(self, e: _Entry) -> bool:
        return self.match(e.kind, e.symbol, e.session, e.account, e.source_kind)

    def match_event(self, ev: events_pb2.Event) -> bool:
        src = ev.source
        return self.match(ev.kind, ev.symbol, src.session, ev.account, src.kind)


@dataclass(frozen=True, slots=True)
class EventLogConfig:
    """Sizing of the log.

    `ring_capacity` bounds memory (roughly 0.5 KiB per event once serialized) and is how far
    back a subscriber can be served without disk reads; it must exceed the server's
    `max_lag_events` so that a live subscriber never has to touch the disk.
    `journal_dir=None` keeps events in memory only (tests, tools): nothing survives a restart.
    `fsync=False` survives a process crash (the OS has the data) but not a power loss; turning it
    on costs one fsync per writer batch, never anything on the publishing thread, and adds
    nothing to delivery: subscribers are served once the write returned, the fsync follows.
    The writer sleeps until a publish finds its queue empty and wakes it: one futex wake (~3 µs
    on a VM) per batch, paid by the publishing thread, which in the gateway is never a FIX
    thread (events are published by the event process or a drain thread). It used to poll every
    2 ms instead, which cost an idle event process ~1.3 % of a core and added ~1 ms to delivery
    on average. `writer_interval_s` is only how often an idle writer looks anyway.
    `writer_thread=False` is for a log whose one publisher may wait for the disk (the event
    process's pipe reader): there is no writer thread, and that publisher journals what it
    published with `write_pending()`. `flush` and `close` then write too, so only that thread
    may call them.
    """

    journal_dir: Path | None = None
    ring_capacity: int = 1 << 16
    segment_max_bytes: int = 64 << 20
    retention_max_bytes: int = 1 << 30
    fsync: bool = False
    writer_max_batch: int = 4096
    writer_interval_s: float = 0.5
    writer_thread: bool = True
    # The lowest sequence this log may give (0: no bound). A log whose journal failed streamed
    # events from memory; if it died, the journal's next sequence was already given to events
    # clients saw. Whoever restarts the log (the gateway, for its event process) passes how far
    # the dead one may have got, and the journal keeps a gap that readers report (JournalGap).
    min_next_sequence: int = 0


class EventLog:
    """Sequenced, journaled, in-memory-indexed event log; see the module docstring for the why."""

    def __init__(self, config: EventLogConfig | None = None) -> None:
        cfg = config or EventLogConfig()
        cap = cfg.ring_capacity
        if cap < 2 or cap & (cap - 1):
            raise ValueError("ring_capacity must be a power of two >= 2")
        self.config = cfg
        self._journal: Journal | None = None
        start = 1
        if cfg.journal_dir is not None:
            self._journal = Journal(
                Path(cfg.journal_dir),
                segment_max_bytes=cfg.segment_max_bytes,
                retention_max_bytes=cfg.retention_max_bytes,
                fsync=cfg.fsync,
            )
            start = self._journal.next_sequence or 1
            start = max(start, self._open_floor(Path(cfg.journal_dir) / FLOOR_FILE))
        start = max(start, cfg.min_next_sequence)
        if self._journal is not None:
            self._journal.skip_to(start)  # the gap is on disk before anything is served
        self._floor_reserved = 0  # sequences below it are covered by the floor file
        # The floor file could not be written (see _reserve_floor): held-back events wait.
        self.floor_error: OSError | None = None
        self._capacity = cap
        self._mask = cap - 1
        self._ring: list[_Entry | None] = [None] * cap
        self._first = start  # first sequence this instance published: the ring's lower bound
        self._next = start
        self._lock = threading.Lock()
        self._closed = False
        # Callbacks run when events become visible (see add_waker), with whether the publishing
        # thread may run them; `_wakers` are all of them (the writer runs them after each write),
        # `_publish_wakers` those publish() runs: none while a journal decides visibility.
        self._waker_specs: tuple[tuple[Callable[[], None], bool], ...] = ()
        self._wakers: tuple[Callable[[], None], ...] = ()
        self._publish_wakers: tuple[Callable[[], None], ...] = ()
        # Journal writer hand-off: an unbounded deque (a journal entry is never dropped), and the
        # event a publish sets when it finds the deque empty (the writer then sleeps on it).
        self._pending: deque[_Entry] = deque()
        self._writer_kick = threading.Event()
        self._durable_next = start
        self.journal_error: BaseException | None = None
        self._writer: threading.Thread | None = None
        if self._journal is not None and cfg.writer_thread:
            self._writer = threading.Thread(
                target=self._writer_main, name="fixgw-events-journal", daemon=True
            )
            self._writer.start()

    # ----------------------------------------------------------------- publishing (hot path)

    def publish(self, event: events_pb2.Event, recv_ns: int | None = None) -> int:
        """Append an event; returns its sequence. Never blocks on I/O or on subscribers.

        Takes ownership of `event`: the caller must not touch it afterwards. The log sets
        `sequence` and `kind`, and `gateway_receive_time` to the time of this call unless the
        producer stamped it (better: stamp when the callback started) — but later, on a consumer
        thread: the caller pays for a sequence, a timestamp and one short lock, nothing else.
        `recv_ns` is when the producer saw the fact (a deferred publisher stamps it when the
        event is queued), used when the event carries no `gateway_receive_time` of its own.
        Raises ValueError for an event without payload and EventLogClosed after close().
        """
        kind = _KIND_BY_PAYLOAD.get(event.WhichOneof("payload"))
        if kind is None:
            raise ValueError("event has no payload")
        entry = _Entry(event, kind, time.time_ns() if recv_ns is None else recv_ns)
        with self._lock:
            if self._closed:
                raise EventLogClosed("event log is closed")
            seq = self._next
            entry.seq = seq
            self._ring[seq & self._mask] = entry
            self._next = seq + 1
            kick = False
            if self._journal is not None:
                kick = not self._pending and self._writer is not None
                self._pending.append(entry)
        if kick:
            self._writer_kick.set()
        for wake in self._publish_wakers:
            wake()
        return seq

    # ----------------------------------------------------------------------- consumers' view

    @property
    def next_sequence(self) -> int:
        """The sequence the next published event gets."""
        return self._next

    @property
    def ring_oldest(self) -> int:
        """Oldest sequence still in memory."""
        return max(self._first, self._next - self._capacity)

    @property
    def durable_next(self) -> int:
        """First sequence not yet written to the journal (== next_sequence when caught up).

        Written means write(2) returned: the event survives a crash of this process (the OS has
        it). With `fsync` configured, the writer syncs right after moving this.
        """
        return self._durable_next if self._journal is not None else self._next

    @property
    def visible_next(self) -> int:
        """First sequence subscribers may not be sent yet: the head of the stream they see.

        With a journal it is `durable_next`: an event is served only once the journal has it,
        so a sequence a subscriber saw is never given to another event by the log that reopens
        the journal after a crash. Without a journal (nothing survives anyway) it is
        `next_sequence`. Once the journal has failed (see `journal_error`) streaming goes on
        from memory, as far as the floor file covers (see `_reserve_floor`): normally that is
        `next_sequence` too, but while the floor cannot be written either (`floor_error`)
        events past `durable_next` are held back, since a restart would reuse their sequences.
        """
        if self._journal is None:
            return self._next
        if self.journal_error is None:
            return self._durable_next
        return min(self._next, max(self._durable_next, self._floor_reserved))

    @property
    def persistent(self) -> bool:
        return self._journal is not None

    def oldest_sequence(self) -> int:
        """Oldest sequence a subscriber can start from (== next_sequence when the log is empty)."""
        oldest = self.ring_oldest
        if self._journal is None:
            return oldest
        # Events not yet written are queued for the journal, hence retained too. A failed
        # journal is still readable up to `durable_next`, and what the ring has evicted since
        # is lost (`lost_gap`): a replay gets what the journal has, then DATA_LOSS naming the
        # lost range, as after a restart (JournalGap); not OUT_OF_RANGE from the ring's oldest.
        j = self._journal.oldest_sequence()
        return min(oldest, self._first if j is None else j)

    def lost_gap(self, seq: int) -> JournalGap:
        """The journal failed, and `seq` (at or past `durable_next`) is no longer in memory:
        from it up to the ring's oldest event, the events are gone for good (the journal will
        never get them). Subscribers are told so once, as for a gap a restart left (DATA_LOSS
        with where to resume), never asked to retry a range that will not come back."""
        return JournalGap(seq, self.ring_oldest, "the event journal had failed and memory no "
                                                 "longer holds them")

    def check_range(self, seq: int) -> None:
        """Raise SequenceOutOfRange unless a subscription may start at `seq`.

        Up to `next_sequence`, not `visible_next`: a subscription from a published but not yet
        visible sequence simply waits for it (in-process callers compute starts from
        next_sequence); clients are only ever told of visible ones (GetLogInfo, the stream, and
        the error's `next_sequence`).
        """
        oldest = self.oldest_sequence()
        if seq < oldest or seq > self._next:
            raise SequenceOutOfRange(seq, oldest, self.visible_next)

    def add_waker(self, wake: Callable[[], None], *, from_publish: bool = True) -> None:
        """Register a callback run whenever events become visible (`visible_next` moves).

        With a journal that is the writer's thread, after each write; without one, or once the
        journal has failed, the publishing thread after every publish. `from_publish=False`
        keeps it off publishing threads altogether (then only the writer runs it, and the
        caller must look at `visible_next` itself for a log without a working journal: the
        EventServer's `wake_interval_s` polling). It must be as cheap as publish itself (set a
        flag, write an eventfd); the EventServer uses it to wake its event loop.
        """
        with self._lock:
            self._waker_specs = (*self._waker_specs, (wake, from_publish))
            self._update_wakers()

    def remove_waker(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._waker_specs = tuple(s for s in self._waker_specs if s[0] is not wake)
            self._update_wakers()

    def _update_wakers(self) -> None:
        """Under `_lock`: who runs which wakers, from the registrations and the journal's state."""
        specs = self._waker_specs
        self._wakers = tuple(w for w, _ in specs)
        publish_decides = self._journal is None or self.journal_error is not None
        self._publish_wakers = tuple(w for w, ok in specs if ok) if publish_decides else ()

    def read_ring(
        self,
        start: int,
        stop: int,
        flt: EventFilter,
        include_raw: bool,
        max_events: int,
        max_bytes: int,
        max_scan: int = 8192,
    ) -> tuple[list[bytes], int]:
        """Framed events in [start, stop) that match, from memory; returns (chunks, next cursor).

        Stops early at the batch limits, after `max_scan` entries (so a narrow filter cannot hog
        the event loop), or where the ring was overwritten; the caller then continues from the
        returned cursor (from the journal if it is no longer in memory).
        """
        ring = self._ring
        mask = self._mask
        out: list[bytes] = []
        nbytes = 0
        seq = start
        end = min(stop, start + max_scan)
        match_all = flt.empty
        while seq < end:
            e = ring[seq & mask]
            if e is None or e.seq != seq:
                break
            if e._wire is None:
                e.prepare()
            if match_all or flt.match_entry(e):
                f = e.framed(include_raw)
                if out and nbytes + len(f) > max_bytes:
                    break  # it starts the next batch (one larger than the cap goes alone)
                out.append(f)
                nbytes += len(f)
                if len(out) >= max_events:
                    seq += 1
                    break
            seq += 1
        return out, seq

    def journal_reader(self, from_seq: int) -> JournalReader:
        """A sequential disk reader (raises SequenceOutOfRange when the journal lacks from_seq).

        The error names `visible_next`, as `check_range` does: the server passes it to the
        client, which must never learn of a sequence the journal does not have yet."""
        if self._journal is None:
            raise SequenceOutOfRange(from_seq, self.oldest_sequence(), self.visible_next)
        try:
            return self._journal.reader(from_seq)
        except JournalRangeError:
            raise SequenceOutOfRange(from_seq, self.oldest_sequence(), self.visible_next) \
                from None

    def read(self, from_seq: int, max_events: int = 1000) -> list[events_pb2.Event]:
        """Events from `from_seq` on, parsed (raw_fix included); for in-process consumers and
        tests. Not for the hot path: it parses every event. Unlike a subscriber it is not held
        to `visible_next`: an in-process reader dies with the log, so it cannot be misled by a
        sequence reused after a crash."""
        self.check_range(from_seq)
        out: list[events_pb2.Event] = []
        seq = from_seq
        while len(out) < max_events and seq < self._next:
            if seq >= self.ring_oldest:
                e = self._ring[seq & self._mask]
                if e is not None and e.seq == seq:
                    ev = events_pb2.Event.FromString(e.wire())
                    if e.raw:
                        ev.raw_fix = e.raw
                    out.append(ev)
                    seq += 1
                    continue
            if seq >= self.durable_next:
                if self.journal_error is not None:
                    raise self.lost_gap(seq)
                self.flush()
            reader = self.journal_reader(seq)
            try:
                for rec in reader.read(max_events - len(out), self.durable_next):
                    out.append(events_pb2.Event.FromString(rec.payload))
                    seq = rec.sequence + 1
            finally:
                reader.close()
        return out

    # ------------------------------------------------------------------------ journal writer

    def _writer_main(self) -> None:
        journal = self._journal
        assert journal is not None
        pending = self._pending
        limit = self.config.writer_max_batch
        interval = self.config.writer_interval_s
        kick = self._writer_kick
        while True:
            # Cleared before looking at the queue: a publish that finds it empty after this sets
            # the kick again, so the wait below returns at once and nothing waits an interval.
            kick.clear()
            if not pending:
                if self._closed:
                    return
                if self.floor_error is not None:  # held-back events wait for this to work
                    self._reserve_floor(self._next + _FLOOR_RESERVE)
                kick.wait(interval)
                continue
            self._write_batch(journal, pending, limit, yield_every=_WRITER_YIELD_EVERY)

    def write_pending(self) -> None:
        """Journal what was published, on the calling thread (`writer_thread=False`)."""
        journal = self._journal
        pending = self._pending
        while journal is not None and pending:
            self._write_batch(journal, pending, self.config.writer_max_batch)

    def _write_batch(self, journal: Journal, pending: deque[_Entry], limit: int,
                     yield_every: int = 0) -> None:
        records: list[tuple[int, bytes, bytes]] = []
        while pending and len(records) < limit:
            e = pending.popleft()
            records.append((e.seq, e.wire(), raw_suffix(e.raw)))
            if yield_every and len(records) % yield_every == 0:
                # Serializing is pure Python-held-GIL work; without a voluntary release a
                # publisher (a QuickFIX thread) could wait a whole switch interval (5 ms).
                time.sleep(0)
        if self.journal_error is not None:
            if records and records[-1][0] + _FLOOR_RESERVE // 2 >= self._floor_reserved:
                self._reserve_floor(self._next + _FLOOR_RESERVE)
            return
        try:
            journal.append(records)
        except Exception as exc:
            self._journal_failed("write", exc)
            return
        # Visible to subscribers from here on (see visible_next), and they are told at once:
        # this, not the publisher, is what makes an event deliverable.
        self._durable_next = records[-1][0] + 1
        for wake in self._wakers:
            wake()
        try:
            journal.sync()  # after the wake-up: fsync delays no delivery
        except Exception as exc:
            self._journal_failed("fsync", exc)

    def _journal_failed(self, what: str, exc: Exception) -> None:
        """Stop journaling: the file's state is unknown after a failed write, and writing on could
        corrupt it. Live streaming goes on from memory (availability over the crash guarantee,
        which a journal that cannot be written cannot give anyway): every published event
        becomes visible, and publishers wake subscribers from now on."""
        _log.exception("event journal %s failed; journaling stopped, events are served from "
                       "memory only, as far as the sequence floor is recorded (a crash of this "
                       "process now loses them)", what)
        # Before anything only in memory becomes visible (setting journal_error does that): a
        # log reopened on this journal must not give these sequences to other events.
        self._reserve_floor(self._next + _FLOOR_RESERVE)
        self.journal_error = exc
        with self._lock:
            self._update_wakers()
        for wake in self._wakers:  # what was waiting for the writer is visible now
            wake()

    def _open_floor(self, path: Path) -> int:
        """The lowest sequence a log on this journal may give (0: none), and the file made
        ready for `_reserve_floor`: it exists with its full size from the start, so that
        rewriting it in place when the disk is full needs no new block (on a filesystem that
        overwrites in place: ext4, xfs)."""
        self._floor_path = path
        try:
            text = path.read_text().strip()
            return int(text) if text else 0
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            _log.error("event journal floor file %s unreadable: %s", path, exc)
            return 0
        try:
            path.write_text(f"{0:020d}\n")
        except OSError as exc:
            _log.error("event journal floor file %s not created: %s", path, exc)
        return 0

    def _reserve_floor(self, floor: int) -> None:
        """Journal failed: record that sequences below `floor` may have been streamed from
        memory, so that the log reopened after a crash or restart starts at `floor` (the journal
        keeps the gap; a replay reaching it gets JournalGap) instead of reusing them. Reserved
        ahead, so this runs once per half a reservation, on the writer's side, not per event.

        Only what is below the recorded floor is streamed (`visible_next`). If the file cannot
        be written either (a full copy-on-write disk, a read-only directory), nothing past
        `durable_next` is: a restart would give those sequences to other events. Subscribers
        that reach them are ended with UNAVAILABLE (the server looks at `floor_error`), and the
        writer tries again with each batch, or each interval when idle (with `writer_thread=
        False`: with each batch only, i.e. the next publish); once a write works the held-back
        events are streamed. Logged once each way, not per try."""
        try:
            with open(self._floor_path, "r+b") as f:
                f.write(f"{floor:020d}\n".encode())
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            if self.floor_error is None:
                _log.error("event journal floor not recorded (%s): events from sequence %d on "
                           "are held back from subscribers (a restart could give their "
                           "sequences to other events) until it can be written", exc,
                           self.visible_next)
            self.floor_error = exc
            return
        self._floor_reserved = floor
        if self.floor_error is not None:
            self.floor_error = None
            _log.warning("event journal floor recorded (%d): held-back events are streamed "
                         "again", floor)
            for wake in self._wakers:
                wake()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything published so far is written to the journal, hence visible
        (tests, shutdown)."""
        if self._journal is None:
            return True
        if self._writer is None:
            self.write_pending()
        target = self._next
        deadline = time.monotonic() + timeout
        while self._durable_next < target and self.journal_error is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        return self.journal_error is None

    @property
    def unwritten(self) -> int:
        """Events published but not yet handed to the journal writer's batch (a writer stuck
        on its disk makes this grow; see `InProcessPublisher`)."""
        return len(self._pending)

    def close(self, writer_wait_s: float | None = None) -> None:
        """Flush the journal and stop the writer; later publishes raise EventLogClosed.
        `writer_wait_s`: give up on a writer stuck on its disk after that long (logged)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._writer is not None:
            self._writer_kick.set()
            self._writer.join(writer_wait_s)
            if self._writer.is_alive():
                _log.error("event journal writer still busy after %.0f s at close: %d events "
                           "not journaled", writer_wait_s or 0, len(self._pending))
                return  # the journal is the writer's until it returns
        else:
            self.write_pending()
        if self._journal is not None:
            self._journal.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
