"""The simulator's outgoing FIX messages: one ordered queue and one sender thread per session.

Why not send where the message is made: QuickFIX's ``Session.send`` writes to the socket on the
calling thread and blocks while the peer's TCP window is full. Reports and market data are
made by the engine's listener, under the engine lock (and the market-data publisher's lock), so
one client that stopped reading froze the whole venue: synthetic flow, REST, WS, futures and
every other FIX client. Here the listener only appends to the session's queue, which costs a
lock held for an append, and the session's own thread does the I/O in the order of the appends,
so each session still sees engine order.

Bounded: a session more than ``limit`` messages behind is cut off, as a venue drops a slow
consumer, and the cut is logged. Its connection is closed, so the client reconnects and, as
after any drop, resubscribes to market data and asks for a resend of what it missed. A
market-data session's queued messages are dropped along with its subscriptions (a new
subscription starts with a fresh snapshot). A trading session's reports are kept and sent;
once the session is down QuickFIX only stores them, for the client's ResendRequest: a venue
does not lose a fill.

Closing a connection whose send is blocked: QuickFIX holds the session's mutex through the
send, so ``Session.disconnect()`` would block as well. The sender thread sits in a ``send(2)``
on the connection's socket, which ``/proc/self/task/<tid>/syscall`` names; shutting that socket
down fails the send at once, and QuickFIX's reader thread sees the close and logs the session
out as after any drop (Linux only; elsewhere the cut is logged and the session only flagged
for logout).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import quickfix as fix

from gateway.fix.blocked_send import close_blocked_send

__all__ = ["DEFAULT_LIMIT", "Outbox", "Outboxes"]

log = logging.getLogger("fixgw.venue_sim")

DEFAULT_LIMIT = 10_000  # messages a session may fall behind before it is cut off
_CUT_WAIT_S = 5.0  # how long a cut looks for the sender blocked in its send
_POLL_S = 0.02


class Outbox:
    """One session's outgoing application messages, sent in order by the session's thread.

    ``put`` never blocks on I/O, so it may be called under any lock. ``droppable`` (market
    data): a cut drops the queue and calls ``on_cut`` (which drops the subscriptions).
    """

    def __init__(self, session: fix.Session, name: str, limit: int = DEFAULT_LIMIT, *,
                 droppable: bool = False, on_cut: Callable[[], None] | None = None) -> None:
        self.name = name
        self.limit = limit
        self.cuts = 0  # how often this session was cut off (tests, logs)
        self._session = session
        self._droppable = droppable
        self._on_cut = on_cut
        self._queue: deque[fix.Message] = deque()
        self._cond = threading.Condition(threading.Lock())
        # A cut is armed until it fires, and re-armed once the session has caught up (half the
        # limit): the messages queued while a cut takes effect must not trigger another one.
        self._armed = True
        self._cut_done = True
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"venue-sim-out-{name}",
                                        daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def put(self, msg: fix.Message) -> None:
        """Queue ``msg`` behind everything queued before it; start a cut when over the limit."""
        with self._cond:
            if self._stopping:
                log.debug("%s: stopped, message not sent", self.name)
                return
            self._queue.append(msg)
            behind = len(self._queue)
            if behind > self.limit and self._armed:
                self._armed = False
                # Its own thread: a cut waits for the sender, and put() runs under the engine lock.
                threading.Thread(target=self._cut, args=(behind,), daemon=True,
                                 name=f"venue-sim-cut-{self.name}").start()
            self._cond.notify()

    def close(self) -> None:
        """Take no more messages; the thread ends once it has sent what is queued."""
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def join(self, deadline: float) -> None:
        """Wait (until the ``time.monotonic`` ``deadline``) for :meth:`close` to take effect; a
        send still blocked then (a client not reading) has its connection closed, and what is
        still queued is dropped, so the thread ends and nothing is left running."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():
            return
        with self._cond:
            dropped = len(self._queue)
            self._queue.clear()
        native_id = self._thread.native_id
        closed = native_id is not None and close_blocked_send(native_id, _POLL_S)
        log.warning("%s: client not reading at stop; %s, %d message(s) not sent", self.name,
                    "connection closed" if closed else "its sender may stay blocked", dropped)
        self._thread.join(1.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._rearm()
                    self._cond.wait()
                if not self._queue:
                    return
                msg = self._queue.popleft()
                self._rearm()
            try:
                self._session.send(msg)
            except Exception:  # one bad message must not end the session's sender
                log.exception("%s: send failed", self.name)

    def _rearm(self) -> None:
        if not self._armed and self._cut_done and len(self._queue) <= self.limit // 2:
            self._armed = True

    def _cut(self, behind: int) -> None:
        self.cuts += 1
        self._cut_done = False
        dropped = 0
        if self._droppable:
            with self._cond:
                dropped = len(self._queue)
                self._queue.clear()
            if self._on_cut is not None:
                self._on_cut()
        log.warning("%s: client %d messages behind (limit %d): disconnecting it%s", self.name,
                    behind, self.limit,
                    f", {dropped} queued message(s) dropped with its subscriptions"
                    if self._droppable else "; its reports stay queued for a resend")
        native_id = self._thread.native_id
        if native_id is None or not close_blocked_send(native_id, _CUT_WAIT_S):
            # Not blocked in a send (slow rather than stopped) or no way to tell: QuickFIX
            # sends a Logout at its next timer tick, between two of our sends.
            log.warning("%s: no blocked send to close; logging the session out instead",
                        self.name)
            self._session.logout("client too far behind")
        with self._cond:
            self._cut_done = True
            self._rearm()


class Outboxes:
    """The face's outboxes by session, made at first use (sessions live as long as the
    acceptor, across logons, and so do their outboxes)."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._by_session: dict[str, Outbox] = {}
        self._stopped = False

    def get(self, session_id: fix.SessionID, *, droppable: bool = False,
            on_cut: Callable[[], None] | None = None) -> Outbox | None:
        """The session's outbox; None if QuickFIX has no such session (or after stop)."""
        key = session_id.toString()
        with self._lock:
            box = self._by_session.get(key)
            if box is None and not self._stopped:
                session = fix.Session.lookupSession(session_id)
                if session is None:
                    return None
                box = Outbox(session, key, self.limit, droppable=droppable, on_cut=on_cut)
                self._by_session[key] = box
            return box

    def all(self) -> list[Outbox]:
        with self._lock:
            return list(self._by_session.values())

    def stop(self, wait_s: float = 2.0) -> None:
        """Send what is queued, within ``wait_s`` for all sessions together, and end the
        threads (closing the connection of a client that does not read)."""
        with self._lock:
            self._stopped = True
            boxes = list(self._by_session.values())
        for box in boxes:
            box.close()
        deadline = time.monotonic() + wait_s
        for box in boxes:
            box.join(deadline)
