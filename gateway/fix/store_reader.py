"""Read what a QuickFIX FileStore says a session has sent, from outside QuickFIX.

Why: the router journals a venue report before it forwards it to the OMS (see
routing.router), so a gateway killed between the two must find out at restart whether the
forward happened. QuickFIX answers that: ``Session::sendRaw`` persists an application message
(``.body`` + its index in ``.header``) and advances the next sender sequence number
(``.seqnums``) before it writes the message to the socket. So an ExecutionReport whose ExecID
is in a stored message with a sequence number below the stored next-sender number was sent,
or will be through the OMS's ResendRequest; one that is not there never left. The same holds
for the other answers the router journals before sending (a 35=9, a 35=r), found by their id.

A message in ``.body`` at a sequence number not below ``.seqnums``' sender number was written
by a process killed before it advanced the number: it was never sent, and QuickFIX will reuse
that number (a later ``.header`` entry for the same number wins, as in QuickFIX's own load).

Read these files before QuickFIX opens the store (the acceptor's constructor): opening it may
reset it for a new session period, and the question is what was sent *before* the restart.
"""

from __future__ import annotations

import bisect
import mmap
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["SentStore", "store_prefix"]



def store_prefix(store_dir: Path, begin_string: str, sender: str, target: str,
                 qualifier: str = "") -> Path:
    """The FileStore's common file prefix for a session, as QuickFIX names it:
    ``<dir>/<BeginString>-<Sender>-<Target>[-<Qualifier>].``"""
    name = f"{begin_string}-{sender}-{target}" + (f"-{qualifier}" if qualifier else "")
    return store_dir / f"{name}."


@dataclass(frozen=True, slots=True)
class SentStore:
    """One session's FileStore as left on disk: sent messages by offset, and its creation."""

    body_path: Path
    next_sender: int
    created_epoch_s: float | None
    #: (offset, size, seq) of every message counted as sent, sorted by offset
    entries: tuple[tuple[int, int, int], ...]

    @classmethod
    def load(cls, prefix: Path) -> SentStore | None:
        """The store under `prefix`, or None when it has no files (never used: nothing sent)."""
        body = Path(f"{prefix}body")
        header = Path(f"{prefix}header")
        seqnums = Path(f"{prefix}seqnums")
        if not (body.exists() and header.exists() and seqnums.exists()):
            return None
        sender_txt = seqnums.read_text().split(":")[0].strip()
        next_sender = int(sender_txt) if sender_txt else 1
        created: float | None = None
        session = Path(f"{prefix}session")
        if session.exists():
            try:
                created = datetime.strptime(session.read_text().strip()[:17],
                                            "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC).timestamp()
            except ValueError:
                created = None
        by_seq: dict[int, tuple[int, int]] = {}
        for item in header.read_text().split():
            parts = item.split(",")
            if len(parts) != 3:
                continue  # a torn last entry (the process died mid-write)
            seq, off, size = (int(p) for p in parts)
            by_seq[seq] = (off, size)  # a later entry for the same number wins
        entries = sorted((off, size, seq) for seq, (off, size) in by_seq.items()
                         if seq < next_sender)
        return cls(body, next_sender, created, tuple(entries))

    def sent_execution_reports(self, exec_ids: Iterable[str]) -> set[str]:
        """Those of `exec_ids` that are the ExecID of a sent ExecutionReport in this store."""
        return self.sent_messages("8", "17", exec_ids)

    def sent_messages(self, msg_type: str, tag: str, values: Iterable[str]) -> set[str]:
        """Those of `values` that are the value of `tag` in a sent message of `msg_type` in
        this store (the router's journaled answers: a 35=8 by ExecID, a 35=9 by ClOrdID, a
        35=r by OrderID; see gateway.orders.store.ANSWER_ID_TAG).

        Searched from the end of ``.body`` (the messages asked about are the newest), in C
        (mmap.rfind), each hit mapped to its message through the index."""
        kind = b"\x0135=" + msg_type.encode() + b"\x01"
        wanted = list(values)
        found: set[str] = set()
        if not wanted or not self.entries or os.path.getsize(self.body_path) == 0:
            return found
        offsets = [e[0] for e in self.entries]
        with open(self.body_path, "rb") as f, mmap.mmap(f.fileno(), 0,
                                                        access=mmap.ACCESS_READ) as mm:
            for value in wanted:
                needle = b"\x01" + tag.encode() + b"=" + value.encode() + b"\x01"
                end = len(mm)
                while (pos := mm.rfind(needle, 0, end)) != -1:
                    i = bisect.bisect_right(offsets, pos) - 1
                    if i >= 0:
                        off, size, _seq = self.entries[i]
                        if (pos + len(needle) <= off + size
                                and mm.find(kind, off, off + size) != -1):
                            found.add(value)
                            break
                    end = pos  # not inside a sent ExecutionReport: look further back
        return found
