"""How producers hand events to the event log without paying for them on the FIX thread.

A producer on a QuickFIX callback thread only freezes an event's values into a callable (a
`functools.partial` of a `gateway.events.builders` function) and calls `publish_later`: a deque
append, ~1 µs. A drain thread takes what is pending every few milliseconds and hands it on:

* `InProcessPublisher` builds each event and publishes it into an `EventLog` in this process
  (tests, tools, and `[grpc] event_process = false`);
* `gateway.events.process.PipePublisher` pickles the pending callables in small batches and
  writes them to the event process, which builds, sequences, journals and serves them. The
  gateway then pays ~4 µs of pickling per event instead of building, serializing, journaling and
  streaming it under its own GIL (measured with tools/bench_fix.py and tools/bench_events.py).

The drain thread sleeps between polls instead of being woken, so a FIX thread never pays for
waking it; the order of `publish_later` calls is the order of the events' sequences.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from gateway._proto.fixgw.v1 import events_pb2
from gateway.events.log import EventLog

__all__ = ["DeferredPublisher", "EventPublisher", "InProcessPublisher", "given_event"]

_log = logging.getLogger("fixgw.events")

Event = events_pb2.Event
EventBuild = Callable[[], Event]


class EventPublisher(Protocol):
    """What producers publish to: a built event now, or a build deferred off their thread."""

    def publish(self, event: Event) -> None: ...

    def publish_later(self, build: EventBuild) -> None: ...

    def close(self) -> None: ...


def given_event(wire: bytes) -> Event:
    """A build for an event that already exists (its serialized form travels, not the object)."""
    return Event.FromString(wire)


class DeferredPublisher:
    """The deque and the drain thread; subclasses say what draining a batch means."""

    def __init__(self, poll_s: float = 0.005, name: str = "event-drain") -> None:
        # (when queued, build): the queue time is the event's gateway receive time.
        self._pending: deque[tuple[int, EventBuild]] = deque()
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._closed = False
        self._drain_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def publish_later(self, build: EventBuild) -> None:
        self._pending.append((time.time_ns(), build))

    def publish(self, event: Event) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Drain what is pending, then stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._drain()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._drain():
                time.sleep(self._poll_s)

    def flush(self) -> None:
        """Deliver everything queued so far, on the calling thread (tests, shutdown paths)."""
        self._drain()

    def _drain(self) -> bool:
        pending = self._pending
        if not pending:
            return False
        with self._drain_lock:  # one drainer at a time keeps sequence order = queue order
            batch: list[tuple[int, EventBuild]] = []
            while pending:
                batch.append(pending.popleft())
            self._deliver(batch)
        return True

    def _deliver(self, batch: list[tuple[int, EventBuild]]) -> None:
        raise NotImplementedError


class InProcessPublisher(DeferredPublisher):
    """Builds events on the drain thread and publishes them into an EventLog of this process.

    The log is not owned: close it after this publisher.
    """

    def __init__(self, log: EventLog, poll_s: float = 0.005) -> None:
        super().__init__(poll_s, "event-builder")
        self.log = log
        self.start()

    def publish(self, event: Event) -> None:
        self.log.publish(event)

    def _deliver(self, batch: list[tuple[int, EventBuild]]) -> None:
        publish = self.log.publish
        for recv_ns, build in batch:
            try:
                publish(build(), recv_ns)
            except Exception:
                # A bad event is dropped and logged; it can never reach the order path.
                _log.exception("event not published")
