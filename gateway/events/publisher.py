"""How producers hand events to the event log without paying for them on the FIX thread.

A producer on a QuickFIX callback thread only states an event's values as an `EventSpec` (a
builder's name and its keyword arguments as plain values, `gateway.events.builders`) and calls
`publish_later`: a deque append, ~1 µs. A drain thread takes what is pending every few
milliseconds and hands it on:

* `InProcessPublisher` builds each event and publishes it into an `EventLog` in this process
  (tests, tools, and `[grpc] event_process = false`);
* `gateway.events.process.PipePublisher` marshals the pending specs in batches and writes them
  to the event process, which builds, sequences, journals and serves them. The gateway then
  pays ~0.5 µs of marshaling per event instead of building, serializing, journaling and
  streaming it under its own GIL. (Pickled `functools.partial`s of the builders cost ~3 µs an
  event on the drain thread and ~2 µs to unpickle in the child; with plain values and marshal,
  tools/bench_fix.py measured ~30 µs less gateway CPU and ~15 µs less event-process CPU per
  order, ~5 events.)

The drain thread sleeps between polls instead of being woken, so a FIX thread never pays for
waking it; the order of `publish_later` calls is the order of the events' sequences.

The backlog is bounded (`max_pending`): if the consumer stalls or is down for long, new events are
dropped and counted (`dropped`) rather than grown into the gateway's memory until it is killed,
and rather than making a FIX thread wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Protocol

from gateway._proto.fixgw.v1 import events_pb2
from gateway.events.builders import EventSpec, from_spec
from gateway.events.log import EventLog

__all__ = ["DEFAULT_MAX_PENDING", "DeferredPublisher", "EventPublisher", "EventSpec",
           "InProcessPublisher", "Pending", "publish_pending"]

_log = logging.getLogger("fixgw.events")

# ~0.85 KiB an event (an execution report's spec, measured): a million is ~0.85 GiB, over a
# minute of a gateway at full speed (~15,000 events/s) — longer than a child restart takes.
DEFAULT_MAX_PENDING = 1_000_000
_DROP_LOG_INTERVAL_S = 10.0

Event = events_pb2.Event
# (when queued, builder name, keyword arguments): the queue time is the event's gateway
# receive time. A flat tuple, so a batch of them marshals as it is.
Pending = tuple[int, str, dict[str, object]]


class EventPublisher(Protocol):
    """What producers publish to: a built event now, or a spec built off their thread."""

    def publish(self, event: Event) -> None: ...

    def publish_later(self, spec: EventSpec) -> None: ...

    def close(self) -> None: ...


#: Events the in-process log may hold for its journal writer before the publisher holds back.
MAX_UNWRITTEN = 100_000

#: How long a close waits for the drain thread (and its delivery in progress) before it goes
#: on without them.
CLOSE_WAIT_S = 5.0


class DeferredPublisher:
    """The deque and the drain thread; subclasses say what draining a batch means."""

    def __init__(self, poll_s: float = 0.005, name: str = "event-drain",
                 max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._pending: deque[Pending] = deque()
        self._poll_s = poll_s
        self._max_pending = max_pending
        # Events refused because the backlog was full. Incremented by producers without a lock:
        # a rare lost increment under contention is an acceptable price for never blocking them.
        self.dropped = 0
        self._dropped_logged = 0
        self._dropped_logged_at = -_DROP_LOG_INTERVAL_S
        self._stop = threading.Event()
        self._closed = False
        self._drain_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def publish_later(self, spec: EventSpec) -> None:
        """Queue the event; when the backlog is full it is dropped (the newest, so what is
        already queued keeps its order) and counted: a FIX thread must never wait for events."""
        if len(self._pending) >= self._max_pending:
            self.dropped += 1
            return
        self._pending.append((time.time_ns(), spec[0], spec[1]))

    def publish(self, event: Event) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Drain what is pending, then stop the thread. Idempotent. Bounded: a drain thread
        stuck delivering (a child that stopped reading) does not hold up a shutdown."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=CLOSE_WAIT_S)
        if (not self._drain(lock_timeout=CLOSE_WAIT_S) and self._pending
                and self._thread.is_alive()):
            _log.error("event drain still busy after %.0f s at close: %d events not "
                       "delivered", CLOSE_WAIT_S, len(self._pending))

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._drain():
                time.sleep(self._poll_s)

    def flush(self) -> None:
        """Deliver everything queued so far, on the calling thread (tests, shutdown paths)."""
        self._drain()

    def _drain(self, lock_timeout: float = -1) -> bool:
        """Deliver what is pending; False when there was nothing to deliver, nowhere to, or
        (with `lock_timeout`) the drain under way did not end in time."""
        if self.dropped != self._dropped_logged:
            self._report_dropped()
        pending = self._pending
        if not pending or not self._can_deliver():
            return False
        # One drainer at a time keeps sequence order = queue order.
        if not self._drain_lock.acquire(timeout=lock_timeout):
            return False
        try:
            batch: list[Pending] = []
            while pending:
                batch.append(pending.popleft())
            self._deliver(batch)
        finally:
            self._drain_lock.release()
        return True

    def _can_deliver(self) -> bool:
        """False while there is nowhere to deliver to: what is pending then stays queued."""
        return True

    def _deliver(self, batch: list[Pending]) -> None:
        raise NotImplementedError

    def _report_dropped(self) -> None:
        """Rate-limited, off the producers' threads: a full backlog drops events at the
        producers' rate, and one line per dropped event would flood the log."""
        now = time.monotonic()
        if now - self._dropped_logged_at < _DROP_LOG_INTERVAL_S:
            return
        self._dropped_logged_at = now
        self._dropped_logged = self.dropped
        _log.error("event backlog full (%d pending): %d events dropped; is the event process "
                   "stalled?", len(self._pending), self.dropped)


class InProcessPublisher(DeferredPublisher):
    """Builds events on the drain thread and publishes them into an EventLog of this process.

    The log is not owned: close it after this publisher.
    """

    def __init__(self, log: EventLog, poll_s: float = 0.005,
                 max_unwritten: int = MAX_UNWRITTEN) -> None:
        super().__init__(poll_s, "event-builder")
        self.log = log
        self._max_unwritten = max_unwritten
        self.start()

    def publish(self, event: Event) -> None:
        # Queued behind what was queued before it, as PipePublisher does: published at once,
        # it would take a sequence ahead of events queued earlier (a kill switch's BLOCK
        # before the ALLOW decided first).
        self.publish_later(("from_wire", {"wire": event.SerializeToString()}))

    def _can_deliver(self) -> bool:
        # A journal writer stuck on its disk must not make the log's own queue grow without
        # bound (in the gateway's process, with the FIX engine): the events wait here instead,
        # where the backlog is bounded and what it cannot hold is dropped and counted.
        return self.log.unwritten < self._max_unwritten

    def _deliver(self, batch: list[Pending]) -> None:
        publish_pending(self.log, batch)


def publish_pending(log: EventLog, batch: list[Pending]) -> int:
    """Build each pending spec and publish it; a bad one is logged and dropped, never raised
    (it can never reach the order path, and the others still go). Returns how many were
    published, so that the event process can tell rejected events from lost ones."""
    publish = log.publish
    published = 0
    for recv_ns, name, kwargs in batch:
        try:
            publish(from_spec((name, kwargs)), recv_ns)
            published += 1
        except Exception:
            _log.exception("event %s not published", name)
    return published
