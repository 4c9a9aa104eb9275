"""On-disk journal of published events: what lets a subscriber resume across a gateway restart
and from further back than the in-memory ring holds.

Layout: a directory of segment files named by the first sequence they hold
(`00000000000000000001.evj`), each an 8-byte magic followed by records::

    u32 payload_len | u32 base_len | u32 crc32(payload) | u64 sequence | payload

`payload` is the serialized `Event` without `raw_fix` (`base_len` bytes) followed by the
`raw_fix` field encoded on its own. Keeping the raw bytes as a separable suffix means a reader
serves subscribers that did not ask for raw messages by slicing, without re-serializing.

Only the event log's writer (its thread, or its one publisher) appends; readers open their own
file handles, so a reader never sees a half-written record as long as it stops at
`durable_next` (records are written whole and `durable_next` moves only after the write
returned). A torn tail left by a crash is truncated when the journal is reopened.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gateway.durable import fsync_dir

_log = logging.getLogger(__name__)

MAGIC = b"FXGWEVJ1"
RECORD_HEADER = struct.Struct("<IIIQ")
SEGMENT_SUFFIX = ".evj"
# A record longer than this is corruption, not an event (the gRPC message limit is far lower).
_MAX_RECORD = 64 << 20


class JournalRangeError(LookupError):
    """The requested sequence is no longer (or not yet) on disk."""


class JournalGap(LookupError):
    """Sequences [sequence, resume) were never journaled and never will be: a log that
    streamed them from memory after its journal failed died, and the next one was started past
    them (`EventLogConfig.min_next_sequence`) so that no sequence a client saw names another
    event. A reader stops there, and the client is told, rather than skipping them silently.
    The live log whose journal failed reports the same for what its memory no longer holds
    (`EventLog.lost_gap`), with its own `why`."""

    def __init__(self, sequence: int, resume: int,
                 why: str = "the event journal had failed when the event process stopped") -> None:
        super().__init__(f"sequences {sequence}..{resume - 1} were lost ({why}); resume from "
                         f"{resume} to skip them")
        self.sequence = sequence
        self.resume = resume


class JournalCorruptError(OSError):
    """A segment that is there does not read as the journal wrote it (bit rot, a record lost
    to a machine crash): its sequences are lost, not merely retired, so a subscriber is told
    DATA_LOSS rather than sent back to the oldest sequence to read what it had again."""


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One record as read back; `payload[:base_len]` is the event without its raw FIX bytes."""

    sequence: int
    payload: bytes
    base_len: int

    @property
    def base(self) -> bytes:
        return self.payload[: self.base_len]


@dataclass(slots=True)
class _Segment:
    first_seq: int
    path: Path
    size: int


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def _scan(data: bytes, expected_first: int) -> tuple[int, int]:
    """Walk a segment image; return (offset after the last valid record, next sequence).

    A record is valid when it is complete, its CRC matches and its sequence continues the
    previous one; the first invalid record and everything after it are a torn or corrupt tail.
    """
    if data[: len(MAGIC)] != MAGIC:
        return 0, expected_first
    off = len(MAGIC)
    nxt = expected_first
    hsize = RECORD_HEADER.size
    end = len(data)
    while off + hsize <= end:
        plen, blen, crc, seq = RECORD_HEADER.unpack_from(data, off)
        body = off + hsize
        if seq != nxt or plen > _MAX_RECORD or blen > plen or body + plen > end:
            break
        if zlib.crc32(data[body : body + plen]) != crc:
            break
        off = body + plen
        nxt = seq + 1
    return off, nxt


class Journal:
    """Append-only segmented event journal with size-based retention."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_max_bytes: int = 64 << 20,
        retention_max_bytes: int = 1 << 30,
        fsync: bool = False,
    ) -> None:
        if segment_max_bytes <= len(MAGIC):
            raise ValueError("segment_max_bytes too small")
        self.directory = directory
        self._segment_max = segment_max_bytes
        self._retention_max = retention_max_bytes
        self._fsync = fsync
        # Guards `_segments` (the writer rolls/deletes while readers look segments up).
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self._segments: list[_Segment] = []
        for path in sorted(directory.glob("*" + SEGMENT_SUFFIX)):
            try:
                first = int(path.name[: -len(SEGMENT_SUFFIX)])
            except ValueError:
                continue
            self._segments.append(_Segment(first, path, path.stat().st_size))
        self._active: BinaryIO | None = None
        self._next_seq: int | None = None
        if self._segments:
            self._recover_tail()

    def _recover_tail(self) -> None:
        last = self._segments[-1]
        data = last.path.read_bytes()
        valid, nxt = _scan(data, last.first_seq)
        if valid < len(MAGIC):
            # Header never made it to disk: rewrite an empty segment in place.
            last.path.write_bytes(MAGIC)
            valid = len(MAGIC)
        elif valid < len(data):
            _log.warning(
                "journal %s: truncating %d bytes of torn/corrupt tail after sequence %d",
                last.path,
                len(data) - valid,
                nxt - 1,
            )
            with open(last.path, "r+b") as f:
                f.truncate(valid)
        last.size = valid
        self._next_seq = nxt

    @property
    def next_sequence(self) -> int | None:
        """Sequence after the last record on disk, or None for an empty journal."""
        return self._next_seq

    def oldest_sequence(self) -> int | None:
        """First sequence still retained on disk, or None when the journal holds nothing."""
        with self._lock:
            for seg in self._segments:
                if seg.size > len(MAGIC) or seg is not self._segments[-1]:
                    return seg.first_seq
        return None

    def append(self, records: Iterable[tuple[int, bytes, bytes]]) -> None:
        """Append (sequence, base, raw_suffix) records in order. The log's writer only.

        One `write` per batch keeps syscall count proportional to batches, not events. When this
        returns the records are with the OS (they survive a crash of this process) but, even
        with `fsync`, not yet synced (except a segment that filled up): `sync()` does that, so
        that the event log can serve them to subscribers first.
        """
        buf = bytearray()
        first: int | None = None
        last = 0
        for seq, base, raw_suffix in records:
            if first is None:
                first = seq
                if self._next_seq is not None and seq != self._next_seq:
                    if seq < self._next_seq:
                        raise ValueError(f"journal: expected sequence {self._next_seq}, "
                                         f"got {seq}")
                    self._skip_to(seq)
                if self._active is None or self._segments[-1].size + 1 > self._segment_max:
                    self._roll(seq)
            payload = base + raw_suffix if raw_suffix else base
            buf += RECORD_HEADER.pack(len(payload), len(base), zlib.crc32(payload), seq)
            buf += payload
            last = seq
            if self._segments[-1].size + len(buf) >= self._segment_max:
                self._write(buf)
                buf = bytearray()
                self._next_seq = seq + 1
                self._roll(seq + 1)
        if buf:
            self._write(buf)
        if first is not None:
            self._next_seq = last + 1

    def _write(self, buf: bytearray) -> None:
        assert self._active is not None
        self._active.write(buf)
        self._active.flush()
        self._segments[-1].size += len(buf)

    def sync(self) -> None:
        """With `fsync`: force what `append` wrote to disk (survives a machine crash too)."""
        if self._fsync and self._active is not None:
            os.fsync(self._active.fileno())

    def skip_to(self, seq: int) -> None:
        """Make the journal continue at `seq` (> next_sequence), leaving a gap; done when the log
        opens past the journal, so that readers see the gap before the next event is written."""
        if self._next_seq is not None and seq > self._next_seq:
            self._skip_to(seq)

    def _skip_to(self, seq: int) -> None:
        """Leave a gap before `seq` (see JournalGap): it starts a segment of its own, so that
        segment names keep saying where each one starts; an empty last segment (it would claim
        a sequence of the gap) is replaced."""
        if self._active is not None:
            self._active.close()
            self._active = None
        with self._lock:
            last = self._segments[-1] if self._segments else None
            if last is not None and last.size <= len(MAGIC):
                self._segments.pop()
                last.path.unlink(missing_ok=True)
        self._next_seq = seq
        self._roll(seq, reopen=False)

    def _roll(self, first_seq: int, reopen: bool = True) -> None:
        """Start a new segment (or reopen the last one after a restart, if it has room)."""
        if (reopen and self._active is None and self._segments
                and self._segments[-1].size < self._segment_max):
            self._active = open(self._segments[-1].path, "ab")  # noqa: SIM115 - lives across calls
            return
        if self._active is not None:
            if self._fsync:
                os.fsync(self._active.fileno())
            self._active.close()
        path = self.directory / _segment_name(first_seq)
        f = open(path, "wb")  # noqa: SIM115 - lives across calls
        f.write(MAGIC)
        f.flush()
        if self._fsync:
            os.fsync(f.fileno())
            fsync_dir(self.directory)
        self._active = f
        with self._lock:
            self._segments.append(_Segment(first_seq, path, len(MAGIC)))
        self._enforce_retention()

    def _enforce_retention(self) -> None:
        """Drop whole oldest segments while over budget; the active segment always stays."""
        with self._lock:
            total = sum(s.size for s in self._segments)
            while len(self._segments) > 1 and total > self._retention_max:
                seg = self._segments.pop(0)
                total -= seg.size
                seg.path.unlink(missing_ok=True)
                _log.info("journal: retention removed %s", seg.path.name)

    def close(self) -> None:
        if self._active is not None:
            self._active.flush()
            if self._fsync:
                os.fsync(self._active.fileno())
            self._active.close()
            self._active = None

    def _segment_for(self, seq: int) -> tuple[_Segment, _Segment | None]:
        with self._lock:
            found = None
            for i, seg in enumerate(self._segments):
                if seg.first_seq <= seq:
                    found = i
                else:
                    break
            if found is None:
                raise JournalRangeError(seq)
            nxt = self._segments[found + 1] if found + 1 < len(self._segments) else None
            return self._segments[found], nxt

    def reader(self, from_seq: int) -> JournalReader:
        return JournalReader(self, from_seq)


class JournalReader:
    """Sequential reader from a given sequence; one per catching-up subscriber.

    Not thread-safe; the server calls it from one worker thread at a time. The open handle keeps
    a segment readable even if retention unlinks it meanwhile (POSIX semantics), so a reader
    already past the check never loses the file under it.
    """

    def __init__(self, journal: Journal, from_seq: int) -> None:
        self._journal = journal
        self._file: BinaryIO | None = None
        self.position = from_seq
        seg, nxt = journal._segment_for(from_seq)
        self._open(seg, from_seq, nxt)

    def _open(self, seg: _Segment, target: int, nxt: _Segment | None = None) -> None:
        if self._file is not None:
            self._file.close()
        try:
            f = open(seg.path, "rb")  # noqa: SIM115 - lives across calls
        except FileNotFoundError:
            raise JournalRangeError(target) from None
        self._file = f
        if f.read(len(MAGIC)) != MAGIC:
            raise JournalCorruptError(f"{seg.path.name}: not a journal segment (bad magic)")
        seq = seg.first_seq
        hsize = RECORD_HEADER.size
        while seq < target:
            hdr = f.read(hsize)
            if len(hdr) < hsize:
                if not hdr and nxt is not None and nxt.first_seq > target:
                    self.close()
                    raise JournalGap(target, nxt.first_seq)  # a start inside the gap
                raise JournalCorruptError(f"{seg.path.name}: ends before sequence {seq}")
            plen, _blen, _crc, rseq = RECORD_HEADER.unpack(hdr)
            if rseq != seq:
                raise JournalCorruptError(f"{seg.path.name}: sequence {rseq} where {seq} was "
                                          "expected")
            f.seek(plen, os.SEEK_CUR)
            seq += 1
        self._seg = seg

    def read(self, max_records: int, limit_seq: int) -> list[JournalRecord]:
        """Up to `max_records` records from `position`, never at or past `limit_seq` (the first
        sequence not yet durable), following segment boundaries."""
        out: list[JournalRecord] = []
        f = self._file
        assert f is not None
        hsize = RECORD_HEADER.size
        while len(out) < max_records and self.position < limit_seq:
            hdr = f.read(hsize)
            if len(hdr) < hsize:
                # End of this segment. `position` is durable, so it must be the first record of
                # a newer segment; anything else is corruption.
                try:
                    cur, nxt = self._journal._segment_for(self.position)
                    if (not hdr and cur.path == self._seg.path and nxt is not None
                            and nxt.first_seq > self.position):
                        raise JournalGap(self.position, nxt.first_seq)
                except (JournalRangeError, JournalGap):
                    if out:
                        # Retention removed what follows (or a gap follows), but what this call
                        # read from the open handle is good: return it; the next call raises at
                        # `position`, the first sequence really gone, so a subscriber gets every
                        # event it could.
                        return out
                    raise
                if len(hdr) or cur.first_seq != self.position or cur.path == self._seg.path:
                    if out:
                        return out  # good records first; the next call fails at `position`
                    raise OSError(f"journal: sequence {self.position} missing in {self._seg.path}")
                self._open(cur, self.position)
                f = self._file
                assert f is not None
                continue
            plen, blen, crc, seq = RECORD_HEADER.unpack(hdr)
            payload = f.read(plen)
            if seq != self.position or len(payload) != plen or zlib.crc32(payload) != crc:
                raise OSError(f"journal corrupt at sequence {self.position} in {self._seg.path}")
            out.append(JournalRecord(seq, payload, blen))
            self.position = seq + 1
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
