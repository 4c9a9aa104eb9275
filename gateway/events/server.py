"""gRPC EventService over the EventLog, with health checking and reflection.

Why grpc.aio, in a thread of its own: every subscriber is a coroutine rather than a pool thread,
so the number of streams is not capped by a thread pool and a stream blocked on a slow client
pins no thread; all subscriber bookkeeping lives on one event loop and needs no locks; and the
loop can be woken from QuickFIX threads with one eventfd write. The loop runs in its own thread
so the gateway's main thread (and QuickFIX's) stays synchronous: `start()`/`stop()` are plain
blocking calls.

Delivery model: each subscriber pulls from the log by sequence (ring first, journal when it is
further behind) and sends what it found as one `EventBatch`, so a subscriber that is behind gets
big batches and one that is caught up gets each event as soon as the loop is woken. Events are
serialized once (by the log) and batches are assembled from pre-framed bytes, so the per-event
cost of a stream is a filter check and a list append. The head of the stream is the log's
`visible_next`, not its newest event: with a journal, a subscriber is sent an event only once
the journal has it, so a sequence it saw still names the same event after a crash (see
`gateway.events.log`); the journal writer wakes the loop after each write.

Backpressure: a subscriber's queue is its window of the ring, from its cursor to the stream's
head. Once a subscriber has been within `max_lag_events` of the head, that window is
bounded by it; past it the stream ends with RESOURCE_EXHAUSTED naming the sequence to resume
from. Publishers never wait for any of this; a subscriber that is still replaying older history
is not bounded (it reads at its own pace and holds no memory of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway._proto.fixgw.v1 import events_pb2
from gateway.events.journal import JournalGap, JournalRangeError, JournalReader, JournalRecord
from gateway.events.log import EventFilter, EventLog, SequenceOutOfRange, frame_event
from gateway.listen import grpc_bind, host_port

__all__ = ["EVENT_SERVICE_NAME", "EventServer", "EventServerConfig", "EventServerStats"]

_log = logging.getLogger(__name__)

EVENT_SERVICE_NAME: str = events_pb2.DESCRIPTOR.services_by_name["EventService"].full_name


@dataclass(frozen=True, slots=True)
class EventServerConfig:
    """Where to listen and how big batches and subscriber windows may get.

    `port=0` binds an ephemeral port (see `EventServer.port`). TLS is on when `tls_cert_file`
    and `tls_key_file` are set; `tls_client_ca_file` additionally requires client certificates.
    `max_lag_events` must stay below the log's ring capacity so live subscribers never read disk.
    `max_batch_bytes` keeps a batch well under gRPC's default 4 MiB receive limit.

    `wake_interval_s` chooses how a caught-up subscriber learns of a new event when the log has
    no journal (or its journal failed). None (default): the publishing thread wakes the loop
    with one eventfd write when a subscriber is parked — lowest latency, but that publish pays
    for waking a sleeping thread (~3-10 µs on a VM). A number: the loop looks at the log that
    often while subscribers are parked and publishers never make a syscall — publish stays
    ~1 µs, delivery latency grows by up to the interval. With a working journal, events become
    visible when the journal writer has written them, and that thread wakes the loop in either
    mode: publishers pay nothing, and delivery waits for the write, not for the interval.
    """

    host: str = "127.0.0.1"
    port: int = 50051
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    default_batch_events: int = 500
    max_batch_events: int = 5000
    max_batch_bytes: int = 1 << 20
    max_lag_events: int = 50_000
    wake_interval_s: float | None = None
    start_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file requires tls_cert_file/tls_key_file")
        if not 1 <= self.default_batch_events <= self.max_batch_events:
            raise ValueError("need 1 <= default_batch_events <= max_batch_events")
        if self.max_lag_events < 1 or self.max_batch_bytes < 1:
            raise ValueError("max_lag_events and max_batch_bytes must be positive")
        if self.wake_interval_s is not None and not 0 < self.wake_interval_s <= 1:
            raise ValueError("wake_interval_s must be in (0, 1] seconds, or None")


@dataclass(frozen=True, slots=True)
class EventServerStats:
    subscribers: int
    queued: int  # events between live subscribers' cursors and the newest event
    cutoffs_total: int  # streams ended with RESOURCE_EXHAUSTED since start


class _Subscriber:
    __slots__ = ("cursor", "live", "waiting", "wake")

    def __init__(self, cursor: int) -> None:
        self.cursor = cursor  # next sequence to consider; everything before it was written
        # Has been within max_lag_events of the newest event: from then on, falling further
        # behind ends the stream. A subscriber replaying older history is not bounded until it
        # gets that close (it reads at its own pace and holds no memory of its own).
        self.live = False
        self.waiting = False  # parked on `wake` with nothing to send
        self.wake = asyncio.Event()


def _gil_holding_eventfd_write() -> Callable[[int, int], object]:
    """eventfd_write(2) called without releasing the GIL.

    `os.eventfd_write` releases the GIL around the syscall; the loop thread it just woke then
    takes the GIL and the publishing (QuickFIX) thread waits for the loop's next slice of work,
    hundreds of µs at p99. Through ctypes.PyDLL the GIL stays held, so the woken loop runs when
    the publisher's callback ends instead of in the middle of it.
    """
    try:
        fn = ctypes.PyDLL(None).eventfd_write
    except (OSError, AttributeError):
        return os.eventfd_write
    fn.argtypes = (ctypes.c_int, ctypes.c_uint64)
    fn.restype = ctypes.c_int
    return cast(Callable[[int, int], object], fn)


_eventfd_write = _gil_holding_eventfd_write()


class _LoopWaker:
    """Wakes the server's loop from the thread that made events visible (the journal writer, or
    a publisher for a log without journal), and only when a subscriber is parked waiting for new
    events: a flag test per call otherwise, one eventfd write when needed.

    Subscribers that are not parked are busy (reading or writing) and will look at the log's
    head on their own; waking the loop for them would cost every publish a syscall for nothing.
    The eventfd is closed by a finalizer, i.e. only once nothing (no publisher holding the
    callback) can write to it any more: closing it at stop() could let a late publisher write
    into a recycled descriptor.
    """

    def __init__(self) -> None:
        self.pending = False
        self.parked = 0  # subscribers parked on their wake event; changed on the loop only
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        weakref.finalize(self, os.close, self.fd)

    def poke(self) -> None:
        # Runs after the event is visible (visible_next advanced). A subscriber parks by counting
        # itself in `parked` and then re-reading the head, so either it sees the event or this
        # sees `parked > 0` (the GIL makes these plain reads and writes sequentially consistent).
        if self.parked and not self.pending:
            self.pending = True
            _eventfd_write(self.fd, 1)

    def consume(self) -> None:
        # Read before clearing `pending`: a poke that lands after the clear writes again, so no
        # wake-up is ever lost (see EventServer._on_wake).
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.fd)
        self.pending = False


class _DiskCursor:
    """A journal reader plus the records read but not yet sent (a batch filled up mid-read)."""

    def __init__(self, reader: JournalReader) -> None:
        self.reader = reader
        self.pending: deque[JournalRecord] = deque()

    @property
    def position(self) -> int:
        return self.pending[0].sequence if self.pending else self.reader.position

    def fetch(
        self,
        flt: EventFilter,
        include_raw: bool,
        max_events: int,
        max_bytes: int,
        limit_seq: int,
        max_scan: int = 20_000,
    ) -> tuple[list[bytes], int]:
        out: list[bytes] = []
        nbytes = 0
        scanned = 0
        pending = self.pending
        while len(out) < max_events and nbytes < max_bytes and scanned < max_scan:
            if not pending:
                try:
                    pending.extend(self.reader.read(256, limit_seq))
                except (JournalRangeError, JournalGap):
                    if out:
                        break  # send these first; the next fetch raises at the gone sequence
                    raise
                if not pending:
                    break
            rec = pending[0]
            scanned += 1
            if not flt.empty and not flt.match_event(events_pb2.Event.FromString(rec.base)):
                pending.popleft()
                continue
            f = frame_event(rec.payload if include_raw else rec.base)
            if out and nbytes + len(f) > max_bytes:
                break
            pending.popleft()
            out.append(f)
            nbytes += len(f)
        return out, self.position

    def close(self) -> None:
        self.reader.close()


class EventServer:
    """The EventService gRPC server; owns a thread running its asyncio loop.

    Usage from any (non-asyncio) thread::

        server = EventServer(log, EventServerConfig(port=0))
        port = server.start()      # blocks until bound and serving; raises if it cannot bind
        ...
        server.stop(grace=1.0)     # subscribers get UNAVAILABLE with their resume sequence

    The EventLog is not owned: close it after stopping the server.

    `extra_services` host other services on the same port (one address for operators, one TLS
    setup): each callable registers its servicer on the `grpc.aio.Server` (on the server's loop,
    before it starts) and returns the service's full name, which is then listed for reflection
    and reported SERVING by health checking.

    With `log=None` it serves only `extra_services` (the gateway's loopback server for the
    services the event process forwards; see `gateway.events.process`).
    """

    def __init__(
        self,
        log: EventLog | None,
        config: EventServerConfig | None = None,
        extra_services: Sequence[Callable[[grpc.aio.Server], str]] = (),
    ) -> None:
        self._log_or_none = log
        self._serves_events = log is not None
        self.config = config or EventServerConfig()
        self._extra_services = tuple(extra_services)
        self._cutoffs = 0
        if log is not None and self.config.max_lag_events >= log.config.ring_capacity:
            _log.warning(
                "EventServer max_lag_events (%d) >= EventLog ring_capacity (%d): live "
                "subscribers near the lag limit will be served from disk",
                self.config.max_lag_events,
                self._log.config.ring_capacity,
            )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stop_requested: asyncio.Event | None = None
        self._grace: float | None = 1.0
        self._port = 0
        self._closing = False
        self._subs: set[_Subscriber] = set()
        self._waker = _LoopWaker()
        self._health: Any = None

    @property
    def _log(self) -> EventLog:
        """The log, for the EventService parts (only registered when there is one)."""
        assert self._log_or_none is not None
        return self._log_or_none

    @property
    def port(self) -> int:
        """The bound port (useful with `port=0`); 0 before start()."""
        return self._port

    @property
    def address(self) -> str:
        return host_port(self.config.host, self._port)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def stats(self) -> EventServerStats:
        """Subscribers, the events they have yet to receive, and how many were cut off.

        Read from another thread without the loop: a racy but consistent-enough snapshot for
        metrics (the set is copied first).
        """
        head = self._log_or_none.visible_next if self._log_or_none is not None else 0
        subs = list(self._subs)
        return EventServerStats(subscribers=len(subs),
                                queued=sum(max(0, head - s.cursor) for s in subs if s.live),
                                cutoffs_total=self._cutoffs)

    def start(self) -> int:
        """Start serving in a background thread; returns the bound port."""
        if self._thread is not None:
            raise RuntimeError("EventServer already started")
        self._thread = threading.Thread(target=self._run, name="fixgw-events-grpc", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.config.start_timeout_s):
            raise TimeoutError("EventServer did not start in time")
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error
        return self._port

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop accepting, end every stream (UNAVAILABLE + resume sequence), wait for the thread.

        `grace` is how long in-flight writes may take before their RPCs are cancelled.
        """
        thread, loop, stop_requested = self._thread, self._loop, self._stop_requested
        if thread is None or loop is None or stop_requested is None or not thread.is_alive():
            return
        self._grace = grace
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(stop_requested.set)
        thread.join((grace or 0.0) + 30.0)

    def __enter__(self) -> EventServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ loop thread

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            if not self._ready.is_set():
                self._start_error = exc
                self._ready.set()
            else:
                _log.exception("EventServer loop failed")
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def _bind(self, server: grpc.aio.Server) -> int:
        cfg = self.config
        addr = host_port(cfg.host, cfg.port)
        creds = None
        if cfg.tls_cert_file is not None and cfg.tls_key_file is not None:
            ca = Path(cfg.tls_client_ca_file).read_bytes() if cfg.tls_client_ca_file else None
            creds = grpc.ssl_server_credentials(
                [(Path(cfg.tls_key_file).read_bytes(), Path(cfg.tls_cert_file).read_bytes())],
                root_certificates=ca,
                require_client_auth=ca is not None,
            )
        return grpc_bind(server, addr, creds, "event service")

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        server = grpc.aio.server(
            options=[
                # Without this a second gateway could silently share the port (Linux default).
                ("grpc.so_reuseport", 0),
                # Detect subscribers that vanished without closing (their streams hold cursors).
                ("grpc.keepalive_time_ms", 20_000),
                ("grpc.keepalive_timeout_ms", 10_000),
            ]
        )
        own_names: tuple[str, ...] = ()
        if self._serves_events:
            server.add_generic_rpc_handlers((self._handlers(),))
            own_names = (EVENT_SERVICE_NAME,)
        extra_names = tuple(register(server) for register in self._extra_services)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*own_names, *extra_names, health.SERVICE_NAME, reflection.SERVICE_NAME),
            server,
        )
        self._port = self._bind(server)
        await server.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        await self._health.set("", serving)
        for name in (*own_names, *extra_names):
            await self._health.set(name, serving)
        interval = self.config.wake_interval_s
        poller: asyncio.Task[None] | None = None
        if not self._serves_events:
            self._ready.set()
            try:
                await self._stop_requested.wait()
            finally:
                await self._health.enter_graceful_shutdown()
                await server.stop(self._grace)
            return
        # With a journal the writer makes events visible and wakes the loop, off the publishing
        # threads, whatever the interval; publishers wake it only without a (working) journal,
        # and only when no interval was asked for.
        woken = interval is None or self._log.persistent
        if woken:
            loop.add_reader(self._waker.fd, self._on_wake)
            self._log.add_waker(self._waker.poke, from_publish=interval is None)
        if interval is not None:
            poller = loop.create_task(self._poll_log(interval))
        self._ready.set()
        try:
            await self._stop_requested.wait()
        finally:
            if woken:
                self._log.remove_waker(self._waker.poke)
                loop.remove_reader(self._waker.fd)
            if poller is not None:
                poller.cancel()
            self._closing = True
            for sub in self._subs:
                sub.wake.set()
            await self._health.enter_graceful_shutdown()
            await server.stop(self._grace)

    def _handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            EVENT_SERVICE_NAME,
            {
                # response_serializer=None: the handler writes EventBatch bytes it assembled
                # from pre-serialized events (see module docstring).
                "Subscribe": grpc.unary_stream_rpc_method_handler(
                    self._subscribe,
                    request_deserializer=events_pb2.SubscribeRequest.FromString,
                    response_serializer=None,
                ),
                "GetLogInfo": grpc.unary_unary_rpc_method_handler(
                    self._get_log_info,
                    request_deserializer=events_pb2.GetLogInfoRequest.FromString,
                    response_serializer=events_pb2.GetLogInfoResponse.SerializeToString,
                ),
            },
        )

    async def _poll_log(self, interval: float) -> None:
        """The `wake_interval_s` alternative to publisher wake-ups (a log without a working
        journal; with one, the writer's wake-ups come first and this finds nothing new)."""
        log = self._log
        seen = log.visible_next
        while True:
            await asyncio.sleep(interval)
            head = log.visible_next
            # Held-back events (EventLog.floor_error) do not move the head: parked subscribers
            # are woken to be told.
            if head != seen or log.floor_error is not None:
                seen = head
                for sub in self._subs:
                    if sub.waiting:
                        sub.wake.set()

    def _on_wake(self) -> None:
        """Runs on the loop after publishes: wake the parked subscribers."""
        self._waker.consume()
        for sub in self._subs:
            if sub.waiting:
                sub.wake.set()

    async def _get_log_info(
        self, request: events_pb2.GetLogInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> events_pb2.GetLogInfoResponse:
        log = self._log
        return events_pb2.GetLogInfoResponse(
            oldest_sequence=log.oldest_sequence(),
            # Not the newest published: a client must not learn of a sequence that a crash could
            # give to another event (one that subscribes from here would miss that event).
            next_sequence=log.visible_next,
            persistent=log.persistent,
        )

    @staticmethod
    async def _abort(
        context: grpc.aio.ServicerContext[Any, Any],
        code: grpc.StatusCode,
        message: str,
        **metadata: int,
    ) -> NoReturn:
        trailing = tuple((k.replace("_", "-"), str(v)) for k, v in metadata.items())
        await context.abort(code, message, trailing_metadata=trailing)
        raise AssertionError("unreachable: abort raises")

    async def _out_of_range(
        self, context: grpc.aio.ServicerContext[Any, Any], exc: SequenceOutOfRange
    ) -> NoReturn:
        await self._abort(
            context,
            grpc.StatusCode.OUT_OF_RANGE,
            str(exc),
            oldest_sequence=exc.oldest,
            next_sequence=exc.next_sequence,
        )

    async def _journal_unreadable(
        self, context: grpc.aio.ServicerContext[Any, Any], at: int, exc: OSError
    ) -> NoReturn:
        _log.error("event journal read failed at %d: %s", at, exc)
        await self._abort(
            context,
            grpc.StatusCode.DATA_LOSS,
            f"event journal unreadable at sequence {at}: {exc}",
            resume_sequence=at,
        )

    async def _gap(
        self, context: grpc.aio.ServicerContext[Any, Any], exc: JournalGap
    ) -> NoReturn:
        """Sequences clients may have been sent from memory by a log whose journal had failed,
        and that the restarted log skipped rather than give to other events, or that the live
        one's memory no longer holds (EventLog.lost_gap): lost, so DATA_LOSS (an operator
        decides), never a silent jump nor another event under a seen sequence."""
        _log.error("event stream reached lost sequences: %s", exc)
        await self._abort(
            context,
            grpc.StatusCode.DATA_LOSS,
            str(exc),
            resume_sequence=exc.sequence,
            gap_end=exc.resume,
        )

    async def _held_back(
        self, context: grpc.aio.ServicerContext[Any, Any], at: int, exc: OSError
    ) -> NoReturn:
        """Events from `at` on exist but may not be sent: the journal failed and the sequence
        floor cannot be recorded either (see EventLog._reserve_floor), so a restart could give
        their sequences to other events. Not a silent wait (it would look like a quiet market):
        the client is told why and retries; they are streamed once the floor is written."""
        await self._abort(
            context,
            grpc.StatusCode.UNAVAILABLE,
            f"events from sequence {at} are held back: the event journal failed and the "
            f"sequence floor cannot be recorded ({exc}); resume from sequence {at} later",
            resume_sequence=at,
        )

    async def _subscribe(
        self, request: events_pb2.SubscribeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        log = self._log
        cfg = self.config
        flt = EventFilter.from_request(request)
        include_raw = request.include_raw
        max_events = min(request.max_batch_events or cfg.default_batch_events, cfg.max_batch_events)
        max_bytes = cfg.max_batch_bytes
        start = request.from_sequence or log.visible_next
        try:
            log.check_range(start)
        except SequenceOutOfRange as exc:
            await self._out_of_range(context, exc)
        if self._closing:
            await self._abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "event server is stopping",
                resume_sequence=start,
            )
        sub = _Subscriber(start)
        self._subs.add(sub)
        disk: _DiskCursor | None = None
        try:
            while True:
                if self._closing:
                    await self._abort(
                        context,
                        grpc.StatusCode.UNAVAILABLE,
                        f"event server is stopping; resume from sequence {sub.cursor}",
                        resume_sequence=sub.cursor,
                    )
                # Against what it could have been sent: a journal writer that is behind is not
                # the subscriber's lag.
                lag = log.visible_next - sub.cursor
                if lag <= cfg.max_lag_events:
                    sub.live = True
                elif sub.live:
                    # Checked after every write: a subscriber whose client stopped reading is
                    # parked in write() and is cut off as soon as that write completes.
                    self._cutoffs += 1
                    await self._abort(
                        context,
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"subscriber fell more than {cfg.max_lag_events} events behind; "
                        f"resume from sequence {sub.cursor}",
                        resume_sequence=sub.cursor,
                    )
                cursor = sub.cursor
                head = log.visible_next
                if cursor >= head:
                    if log.floor_error is not None and log.next_sequence > cursor:
                        await self._held_back(context, cursor, log.floor_error)
                    sub.wake.clear()
                    sub.waiting = True
                    self._waker.parked += 1
                    try:
                        # Re-check after announcing we park: a publish (with a journal: a
                        # write) in between would otherwise see no parked subscriber and skip
                        # the wake-up.
                        if log.visible_next <= cursor and not self._closing:
                            await sub.wake.wait()
                    finally:
                        sub.waiting = False
                        self._waker.parked -= 1
                    continue
                if cursor >= log.ring_oldest:
                    if disk is not None:
                        disk.close()
                        disk = None
                    chunks, nxt = log.read_ring(
                        cursor, head, flt, include_raw, max_events, max_bytes
                    )
                else:
                    durable = log.durable_next
                    if cursor >= durable:
                        # Evicted from memory but not on disk: only once the journal failed
                        # (otherwise the head is what is on disk), and then for good.
                        if log.journal_error is not None:
                            await self._gap(context, log.lost_gap(cursor))
                        await asyncio.sleep(0.002)
                        continue
                    if disk is None or disk.position != cursor:
                        if disk is not None:
                            disk.close()
                        try:
                            reader = await asyncio.to_thread(log.journal_reader, cursor)
                        except SequenceOutOfRange as exc:
                            await self._out_of_range(context, exc)
                        except JournalGap as exc:
                            await self._gap(context, exc)
                        except OSError as exc:  # a corrupt segment (JournalCorruptError)
                            await self._journal_unreadable(context, cursor, exc)
                        disk = _DiskCursor(reader)
                    try:
                        chunks, nxt = await asyncio.to_thread(
                            disk.fetch, flt, include_raw, max_events, max_bytes, durable
                        )
                    except JournalGap as exc:
                        await self._gap(context, exc)
                    except JournalRangeError:
                        # Retention removed the next segment while we were reading.
                        await self._out_of_range(
                            context,
                            SequenceOutOfRange(
                                disk.position, log.oldest_sequence(), log.visible_next
                            ),
                        )
                    except OSError as exc:
                        await self._journal_unreadable(context, disk.position, exc)
                if chunks:
                    await context.write(b"".join(chunks))
                elif nxt == cursor:
                    await asyncio.sleep(0.001)  # raced with ring eviction; retry from disk
                else:
                    await asyncio.sleep(0)  # only filtered-out events: let others run
                sub.cursor = nxt
        finally:
            self._subs.discard(sub)
            if disk is not None:
                disk.close()
