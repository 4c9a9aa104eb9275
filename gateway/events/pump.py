"""The event process's reading of its pipe: frames in, handled in order, at idle CPU priority.

Why idle priority: on a machine whose cores the order path keeps busy (tools/bench_fix.py on
two vCPUs), the event process's bursts of building and journaling (~0.2-0.5 ms every 5 ms)
held a core the OMS, gateway or venue process had just been woken for. At `nice` 10 the
scheduler still let the burst run on; under SCHED_IDLE any normal task preempts it at once,
and the gateway's round-trip p99 fell from ~1,000 to ~730-860 µs (bench_fix, same-day
A/B runs). Only the thread that reads, builds and journals goes idle: the gRPC threads that
stream to subscribers and forward the gateway's services stay at the process's `nice`.

Why a rescue: an idle thread runs only when a core has nothing else to do, so a machine
saturated by anything (a backtest beside the gateway, a burst of orders) would hold events
back for as long as it lasts. A second thread, at the process's `nice`, looks every
`rescue_after_s / 2`: when a frame that was already there at its previous look is still not
handled, it takes over until the pipe is empty, and the idle thread stays off the lock and
the GIL meanwhile. Under load, events are then handled at the process's `nice` as before this
module, at most ~`rescue_after_s` late. The price, measured with tools/bench_events.py on two
vCPUs: delivery to subscribers p50 ~2.4 ms instead of ~1.9 ms, p99 7-40 ms instead of 6-7.5 ms.
A thread cannot leave SCHED_IDLE without CAP_SYS_NICE, hence two threads rather than one that
changes its priority.

Both threads take frames under one lock, so events keep the pipe's order; the pipe is read
without blocking under that lock, and waited on (select) outside it.

May import only the standard library: the event process wires it to the log.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import threading
import time
from collections.abc import Callable

__all__ = ["HEADER", "FramePump", "run_pump"]

_log = logging.getLogger("fixgw.events")

HEADER = struct.Struct(">I")
_READ_BYTES = 1 << 20
# How often the rescue logs that it is working (it may take over every few hundred ms on a
# saturated machine, and one line per takeover would flood the log).
_RESCUE_LOG_INTERVAL_S = 60.0


class FramePump:
    """Whole frames (4-byte big-endian length, then the payload) from `fd`, one at a time."""

    def __init__(self, fd: int, handle: Callable[[bytes], None]) -> None:
        self._fd = fd
        self._handle = handle
        self._buf = bytearray()
        self._eof = False
        self._lock = threading.Lock()
        os.set_blocking(fd, False)
        self.handled = 0
        self.rescues = 0
        self.truncated = False  # the pipe closed in the middle of a frame
        # Cleared while the rescue has taken over: the idle thread then stays off the GIL and
        # the lock, which it could be holding for long if preempted while the machine is busy.
        self.idle_may_run = threading.Event()
        self.idle_may_run.set()

    def _read(self) -> None:
        """Whatever the pipe holds now, into the buffer (under the lock)."""
        if self._eof:
            return
        try:
            data = os.read(self._fd, _READ_BYTES)
        except BlockingIOError:
            return
        if data:
            self._buf += data
        else:
            self._eof = True

    def _frame_end(self, offset: int = 0) -> int | None:
        """Where the whole frame starting at `offset` in the buffer ends; None if it is not
        all there yet."""
        buf = self._buf
        if len(buf) - offset < HEADER.size:
            return None
        end = offset + HEADER.size + HEADER.unpack_from(buf, offset)[0]
        return end if end <= len(buf) else None

    def _frame(self) -> bytes | None:
        end = self._frame_end()
        if end is None:
            return None
        frame = bytes(self._buf[HEADER.size:end])
        del self._buf[:end]
        return frame

    def has_frame(self) -> bool:
        return self._frame_end() is not None

    def received(self) -> int:
        """Frames handled or waiting whole in the pipe or the buffer, as of now."""
        with self._lock:
            self._read()
            count, offset = 0, 0
            while (end := self._frame_end(offset)) is not None:
                count, offset = count + 1, end
            return self.handled + count

    def pending(self) -> bool:
        """A whole frame is buffered, or bytes (or the close) wait in the pipe."""
        return self.has_frame() or (
            not self._eof and bool(select.select([self._fd], [], [], 0)[0]))

    def wait(self) -> None:
        """Block until the pipe has bytes or is closed (not under the lock)."""
        if not self._eof and not self.has_frame():
            select.select([self._fd], [], [], None)

    def step(self) -> bool:
        """Read what the pipe holds and handle one whole frame, if there is one. False once
        the pipe is closed and every whole frame from it handled."""
        with self._lock:
            if not self.has_frame():
                self._read()
            frame = self._frame()
            if frame is not None:
                self._handle(frame)
                self.handled += 1
                return True
            if self._eof:
                self.truncated = bool(self._buf)
                return False
            return True


def _rescue(pump: FramePump, after_s: float, stop: threading.Event) -> None:
    """Handle frames the idle thread has left waiting for `after_s / 2` or more: at each look,
    if a frame that had arrived by the previous look is still not handled, take over until the
    pipe is empty (see the module doc)."""
    logged_at = -_RESCUE_LOG_INTERVAL_S
    arrived: int | None = None  # frames received as of the previous look
    while not stop.wait(after_s / 2):
        if arrived is None or pump.handled >= arrived:
            arrived = pump.received()
            continue
        pump.rescues += 1
        now = time.monotonic()
        if now - logged_at >= _RESCUE_LOG_INTERVAL_S:
            logged_at = now
            _log.info("events waited over %.1f s for an idle core (the machine is busy): "
                      "handling them at the process's own priority until caught up "
                      "(%d takeovers so far)", after_s / 2, pump.rescues)
        pump.idle_may_run.clear()
        try:
            while pump.pending() and not stop.is_set():
                if not pump.step():
                    return
        finally:
            pump.idle_may_run.set()
        arrived = None


def _go_idle() -> bool:
    """SCHED_IDLE for the calling thread only (Linux applies it per thread); best effort."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError as exc:
        _log.warning("event process: cannot run at idle priority (%s); staying at its nice",
                     exc)
        return False
    return True


def run_pump(pump: FramePump, *, idle: bool, rescue_after_s: float) -> None:
    """Handle frames on this thread until the pipe closes; with `idle`, this thread runs at
    SCHED_IDLE and a rescue thread (at this thread's priority now) covers for it."""
    stop = threading.Event()
    rescuer: threading.Thread | None = None
    if idle:
        rescuer = threading.Thread(target=_rescue, args=(pump, rescue_after_s, stop),
                                   name="event-rescue", daemon=True)
        rescuer.start()  # before going idle: a thread inherits its creator's policy
        if not _go_idle():
            stop.set()
    try:
        while True:
            pump.idle_may_run.wait()
            pump.wait()
            if not pump.step():
                return
    finally:
        stop.set()
        if rescuer is not None:
            rescuer.join()
