"""An append-only journal of order-state changes.

Durability choice: each record is written with one unbuffered `os.write` on the caller's
thread. That puts it in the kernel's page cache, which survives a `kill -9` of the gateway
(the failure the restart guarantee is about) for ~2 µs per record, the same durability
QuickFIX's own FileStore gives its messages. A background thread `fsync`s at most every
`fsync_interval_ms` to also cover a machine crash without putting a disk flush on the FIX
callback thread. Replay tolerates a torn last line (the process died mid-write).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


class Journal:
    def __init__(self, path: Path, fsync_interval_ms: int = 50) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._dirty = threading.Event()
        self._closed = threading.Event()
        self._interval = fsync_interval_ms / 1000.0
        self._syncer: threading.Thread | None = None
        if fsync_interval_ms > 0:
            self._syncer = threading.Thread(target=self._sync_loop, name="journal-fsync",
                                            daemon=True)
            self._syncer.start()

    def append_line(self, line: str) -> None:
        """One record, one unbuffered write; `line` must not contain a newline."""
        os.write(self._fd, (line + "\n").encode())
        if not self._dirty.is_set():
            self._dirty.set()

    def _sync_loop(self) -> None:
        while not self._closed.is_set():
            self._dirty.wait()
            if self._closed.wait(self._interval):
                break
            self._dirty.clear()
            try:
                os.fsync(self._fd)
            except OSError:  # closed under us during shutdown
                break

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._dirty.set()
        if self._syncer is not None:
            self._syncer.join(timeout=2)
        os.fsync(self._fd)
        os.close(self._fd)

    @staticmethod
    def replay_lines(path: Path) -> Iterator[str]:
        """Every complete record, oldest first; a torn last line (a crash mid-write) is dropped."""
        if not path.exists():
            return
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):
                    log.warning("%s:%d: ignoring a torn last record", path, lineno)
                    return
                yield raw[:-1].decode()
