"""Blank the venue credentials out of the Logon messages QuickFIX keeps in its file store.

QuickFIX's FileStore writes every sent message to `<session>.body`, the Kraken Logon included:
553 (the API key) and 554 (the logon password, one-time but derived from the secret) would sit
on disk for the whole session day. A stored Logon is never sent again — on a ResendRequest
QuickFIX replaces admin messages with a SequenceReset-GapFill — so its credential values can be
overwritten in place with the same number of `*` and its CheckSum recomputed (three digits
either way): the offsets in `<session>.header` stay valid, the message still parses (QuickFIX
parses each stored message, checksum included, before it gap-fills it), and every other stored
message is untouched.

Scrubbing runs after each logon of a venue session (off the QuickFIX thread), from where the
previous scrub of that file stopped; the first one reads the whole file, so Logons written by
an earlier run are cleaned too.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
from collections.abc import Iterable
from pathlib import Path

__all__ = ["LogonScrubber", "scrub_body"]

log = logging.getLogger("fixgw.fix")

_SOH = b"\x01"
_LOGON = b"\x0135=A\x01"
_TAGS = (b"553", b"554")


def _fix_checksum(mm: mmap.mmap, logon_at: int, trailer: int) -> None:
    """Rewrite the CheckSum (10=) of the message whose MsgType is at `logon_at` and whose
    trailer starts at `trailer`: QuickFIX parses a stored message, checksum included, before it
    decides to gap-fill it, so a stale checksum would fail the whole resend."""
    start = mm.rfind(b"8=FIX", max(0, logon_at - 64), logon_at)
    if start == -1:
        raise ValueError(f"no BeginString before the Logon at byte {logon_at}")
    digits = trailer + 4  # after "\x0110="
    if mm[digits + 3:digits + 4] != _SOH:
        raise ValueError(f"malformed CheckSum after the Logon at byte {logon_at}")
    mm[digits:digits + 3] = b"%03d" % (sum(mm[start:trailer + 1]) % 256)


def scrub_body(path: Path, start: int = 0, tags: Iterable[bytes] = _TAGS) -> tuple[int, int]:
    """Overwrite the values of `tags` in the Logon messages of a FileStore body file, from byte
    `start` on. Returns (values blanked, end offset scanned: where the next scrub may start)."""
    tags = tuple(tags)
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        if size < start:
            start = 0  # the store was reset (new session day): a new file
        if size == start:
            return 0, start
        with mmap.mmap(f.fileno(), size) as mm:
            blanked = 0
            pos = mm.find(_LOGON, start)
            while pos != -1:
                end = mm.find(b"\x0110=", pos)  # the trailer: a Logon's fields end here
                if end == -1:
                    return blanked, pos  # a Logon still being written: next time
                changed = False
                for tag in tags:
                    field = mm.find(_SOH + tag + b"=", pos, end)
                    if field == -1:
                        continue
                    value = field + len(tag) + 2
                    stop = mm.find(_SOH, value, end + 1)
                    if stop > value and mm[value:stop] != b"*" * (stop - value):
                        mm[value:stop] = b"*" * (stop - value)
                        blanked += 1
                        changed = True
                if changed:
                    _fix_checksum(mm, pos, end)
                pos = mm.find(_LOGON, end)
            mm.flush()
        return blanked, size


class LogonScrubber:
    """Scrubs every `*.body` under a store directory after a venue logon, on its own thread."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self._done_to: dict[Path, int] = {}
        self._lock = threading.Lock()

    def on_logon(self) -> None:
        threading.Thread(target=self.scrub, name="store-scrub", daemon=True).start()

    def scrub(self) -> int:
        """Scrub now; returns how many credential values were blanked."""
        total = 0
        with self._lock:
            for body in sorted(self.store_dir.glob("*.body")):
                try:
                    n, end = scrub_body(body, self._done_to.get(body, 0))
                except (OSError, ValueError) as exc:
                    log.error("could not blank the logon credentials in %s: %s", body, exc)
                    continue
                self._done_to[body] = end
                total += n
        if total:
            log.info("blanked %d logon credential value(s) in the venue file store", total)
        return total
