"""One OMS session's market-data outbox: a bounded queue and a sender thread of its own.

Why: the OMS fan-out (``gateway.marketdata.fanout``) runs on the venue connection's QuickFIX
thread, which carries both venue sessions (trading and market data). Sending to an OMS is a
blocking socket write: an OMS that stops reading (a GC pause, SIGSTOP) fills its TCP buffer
and the write waits, and with it every venue trading report and heartbeat. So the fan-out only
queues here, under its own lock, and this outbox's thread does the sending with no lock held.
Market data is the only traffic moved off the venue thread: ExecutionReports stay direct, as
the order path must not queue behind book updates.

Overflow: an OMS that leaves ``limit`` book messages unsent is not reading. The book traffic
in its queue is dropped (the lost incrementals are useless now) and the outbox is *resyncing*:
the fan-out queues no book updates for it. Once the sender has nothing left to send (the write
it was blocked in has returned) it calls ``on_drained``, which queues a fresh snapshot per
subscription (FIX allows a full refresh at any time) and calls ``end_resync``. One warning per
episode names the session.

The answers to the OMS's own requests (a 35=Y reject, the snapshot answering a 263=0 or a new
263=1) are never dropped, nor counted towards the limit: the resync re-snapshots the live
subscriptions only, so a dropped reject or one-off snapshot would leave a request unanswered
for good, and an OMS that waits for that answer before it reads on would wait forever. They
are as many as the OMS's requests, which a session that does not read stops sending soon
enough (and the send watch below cuts it if it never reads again).

A send that stays blocked (the OMS reads nothing at all) is not this module's to end: the
fan-out's ``send`` is the OMS session's ``OmsContext.send``, which the gateway's send watch
cuts after ``[oms] stall_cut_s`` (``gateway.routing.router.cut_stalled_oms``), whichever
thread is blocked in it.

Locking: ``put``, ``end_resync`` and ``reset`` are called under the fan-out's lock, which keeps
``resyncing`` consistent with what the fan-out queued; the sender takes the fan-out's lock
only in ``on_drained`` and never while it holds ``_cond``. ``clear`` takes only ``_cond``,
never held across a send, so QuickFIX's onLogout may call it holding the session's mutex.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

import quickfix as fix

log = logging.getLogger("fixgw.marketdata.oms")

Send = Callable[[fix.Message], None]

DEFAULT_LIMIT = 10_000  # messages waiting for one OMS session before it is resynchronised


class Outbox:
    def __init__(self, name: str, send: Send, on_drained: Callable[[Outbox], None],
                 limit: int = DEFAULT_LIMIT) -> None:
        self.name = name  #: the OMS session, for log lines
        self.send = send  #: replaced by the fan-out at each request (the same session's send)
        self.limit = limit
        self._on_drained = on_drained
        self._queue: deque[tuple[fix.Message, bool]] = deque()  # (message, is book traffic)
        self._book_queued = 0  # book messages in _queue: what the limit bounds
        self._cond = threading.Condition(threading.Lock())
        self._sending = False
        self._stop = False
        self.resyncing = False  #: overflowed; fresh snapshots are due once the queue drains
        self._resync_asked = False  # on_drained is running (or ran and failed)
        self.overflows = 0  #: episodes, for ops and tests
        self._thread = threading.Thread(target=self._run, name=f"md-out-{name}", daemon=True)
        self._thread.start()

    # ---- the fan-out's side (under its lock) ---------------------------------------------------
    def put(self, msg: fix.Message, book: bool = True) -> None:
        """Queue `msg`. `book`: a book update from the feed, dropped while resyncing (the fresh
        snapshot covers it), and the overflow's trigger; an answer to the OMS's own request (a
        reject, the snapshot of a new subscription or of a 263=0) is queued all the same and
        survives an overflow, so no request goes unanswered (see the module docstring)."""
        with self._cond:
            if self._stop or (book and self.resyncing):
                return
            if book and self._book_queued >= self.limit:
                answers = [(q, False) for q, is_book in self._queue if not is_book]
                self._queue = deque(answers)
                self._book_queued = 0
                self.resyncing = True
                self._resync_asked = False
                self.overflows += 1
                log.warning("market data to %s: %d book messages unsent, the OMS is not "
                            "reading; they are dropped (the %d answer(s) to its requests are "
                            "kept) and each of its subscriptions gets a fresh snapshot once it "
                            "reads again", self.name, self.limit, len(answers))
                self._cond.notify_all()
                return
            self._queue.append((msg, book))
            self._book_queued += book
            self._cond.notify_all()

    def end_resync(self) -> None:
        """The fresh snapshots are queued (from ``on_drained``): book updates may follow."""
        with self._cond:
            self.resyncing = False
            self._resync_asked = False
            self._cond.notify_all()

    def reset(self) -> None:
        """The OMS's subscriptions are over (it logged out): nothing queued, no resync due."""
        with self._cond:
            self._queue.clear()
            self._book_queued = 0
            self.resyncing = False
            self._resync_asked = False
            self._cond.notify_all()

    # ---- any thread ----------------------------------------------------------------------------
    def clear(self) -> None:
        """Drop what is queued (the OMS logged out). Lock-free as far as QuickFIX goes."""
        with self._cond:
            self._queue.clear()
            self._book_queued = 0
            self._cond.notify_all()

    def idle(self, timeout: float) -> bool:
        """Wait until nothing is queued, being sent or due; False if still busy at `timeout`."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._stop or not (self._queue or self._sending or self.resyncing),
                timeout)

    def close(self) -> None:
        """Stop the sender (the gateway is stopping); whatever is queued is dropped."""
        with self._cond:
            self._stop = True
            self._queue.clear()
            self._book_queued = 0
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---- sender thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or bool(self._queue) or (
                    self.resyncing and not self._resync_asked))
                if self._stop:
                    return
                msg: fix.Message | None = None
                if self._queue:
                    msg, is_book = self._queue.popleft()
                    self._book_queued -= is_book
                else:
                    self._resync_asked = True
                self._sending = msg is not None
            if msg is None:
                self._drained()
                continue
            try:
                self.send(msg)
            except Exception:
                log.exception("market data to %s not sent", self.name)
            with self._cond:
                self._sending = False
                self._cond.notify_all()

    def _drained(self) -> None:
        try:
            self._on_drained(self)
        except Exception:
            log.exception("market data to %s: resynchronisation failed", self.name)
            self.end_resync()  # not again and again; its books stay as they are
