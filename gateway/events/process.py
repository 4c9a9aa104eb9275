"""The event process: the EventLog and the gRPC EventService in a child process of the gateway.

Why a process: every event the gateway publishes used to be built, serialized, journaled and
streamed to each subscriber under the gateway's own GIL, so ten subscribers (or one busy one)
took turns with the FIX callback threads; `tools/bench_events.py` showed the order round trip's
p99 doubling with ten subscribers attached. Here the gateway only marshals the events' specs
(`gateway.events.publisher`) and writes them to this process's stdin; this process
builds, sequences, journals and serves them, on its own GIL and at a lower CPU priority than the
order path (`nice`; the thread that builds and journals at idle priority, with a rescue when
the machine is busy: `gateway.events.pump`), so a subscriber can cost the FIX path CPU time on
a saturated machine but never a lock.

The same port also serves the gateway's own gRPC services (SignalService, PositioningService):
their calls are passed through unchanged to a loopback server inside the gateway
(`gateway.events.proxy`), so operators keep one address, one TLS setup, reflection and health.

Lifetime: the child exits when its stdin closes, after publishing everything it was sent and
flushing the journal — on a clean stop and equally when the gateway is killed (-9 included), so
no event that reached the pipe is lost and no orphan holds the port. It ignores SIGINT, SIGHUP
and SIGTERM (a Ctrl-C, a terminal's hangup or a service manager's stop reaches the whole process
group; the gateway decides when events end). A lock on the journal directory makes a restarted
gateway's new child wait for the old one to finish its flush.

If the child dies on its own (a crash, the OOM killer, a kill -9 of it alone), the gateway's
watcher thread starts another with the same spec and port, after 0.5 s, doubling up to 10 s while
tries fail or children die young; its log continues from the journal's next sequence. Events
published meanwhile wait in the publisher's (bounded) backlog and go to the new child, as does
a frame whose write failed. What the dead child had been sent but not journaled — bytes in the
pipe, its last couple of milliseconds of journal writes — is lost: the gateway counts the events
written to it, and the new child's first sequence says how many reached the journal; the
difference is logged and added to `EventProcess.lost_events`. No subscriber ever saw those: the
child streams an event only once its journal has it (`EventLog.visible_next`), so every
sequence a subscriber was sent names the same event in the new child, and one that resumes
from `last_seen + 1` misses nothing that was journaled. The child journals each frame on the
thread that read and built it (`EventLogConfig.writer_thread=False`), then wakes the stream's
loop: one thread woken per frame instead of two, and no GIL hand-off between a builder and a
writer thread (~2 µs less CPU per event of ~12, measured in-process).

Wire: gateway → child, frames of a 4-byte big-endian length and a marshaled list of
`(queued_ns, builder_name, kwargs)` (`publisher.Pending`; marshal, not pickle: plain values
only, ~6x cheaper for the gateway's drain thread and nothing executable crosses the pipe);
child → gateway, JSON lines on stdout: ``{"ready": {"port": N}}`` once serving, then
``{"stats": {...}}`` every second (subscribers, queued events, cut-offs; for metrics).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import marshal
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from gateway.events.log import EventLog, EventLogConfig
from gateway.events.proxy import proxy_registrations
from gateway.events.publisher import (
    CLOSE_WAIT_S,
    DEFAULT_MAX_PENDING,
    DeferredPublisher,
    Event,
    Pending,
    publish_pending,
)
from gateway.events.pump import HEADER, FramePump, run_pump
from gateway.events.server import EventServer, EventServerConfig
from gateway.listen import ListenError, host_port
from gateway.log_format import setup_logging
from gateway.owned_child import leave_stopping_to_owner

__all__ = ["EventProcess", "EventProcessSpec", "EventProcessStats", "PipePublisher", "main"]

_log = logging.getLogger("fixgw.events")

# Specs marshaled per write: ~0.5 µs each, so one dumps() holds the gateway's GIL for well
# under the 0.5 ms switch interval a FIX thread might be waiting out.
_MAX_SPECS_PER_FRAME = 64
#: A child that reads nothing of a frame for this long is taken as wedged (see PipePublisher).
#: Its reading thread journals each frame it reads, so a slow disk stalls it; this is far past
#: any fsync a working disk takes.
WRITE_STALL_S = 30.0
_LOCK_WAIT_S = 30.0
# Restarting a dead child: the first try after 0.5 s, doubling up to 10 s while tries fail or
# children die young.
_RESTART_MIN_S = 0.5
_RESTART_MAX_S = 10.0
_RESTART_WAIT_S = 60.0
_REAP_WAIT_S = 5.0
# The child's exit code when its port is taken: the parent then raises ListenError, which
# `fixgw run` reports in one line, rather than a generic start failure.
_EXIT_CANNOT_LISTEN = 3

# The JSON lines a child writes on stdout, and None once it has exited (or its pipe broke).
_Lines = queue.Queue[dict[str, Any] | None]


@dataclass(frozen=True)
class EventProcessSpec:
    """Everything the child needs, passed as JSON on its command line."""

    journal_dir: str | None
    retention_max_bytes: int = 1 << 30
    host: str = "127.0.0.1"
    port: int = 50051
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    # None: the child's stream loop is woken, never polls (see EventServerConfig). The child
    # publishes on its reading thread and its journal writer wakes the loop after each write;
    # the 5 ms poll it used to run cost it ~1 % of a core while idle.
    wake_interval_s: float | None = None
    proxy_target: str | None = None
    proxy_services: list[str] = field(default_factory=list)
    nice: int = 10
    # Read, build and journal at SCHED_IDLE, with a rescue at `nice` once frames have waited
    # about `rescue_after_s` (gateway.events.pump); False: all at `nice`.
    idle: bool = True
    rescue_after_s: float = 0.2
    max_lag_events: int = 50_000
    # The lowest sequence the child's log may give (EventLogConfig.min_next_sequence): set by
    # the gateway when it restarts a child whose journal had failed (see EventProcess._watch).
    min_next_sequence: int = 0
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": the gateway's own `[gateway] log_format`
    stats_interval_s: float = 1.0


@dataclass(frozen=True)
class EventProcessStats:
    """The child's last report. `durable_next` and `rejected` (specs it could not build) let the
    gateway tell, when a child dies, how many of the events it wrote may be lost."""

    subscribers: int = 0
    queued: int = 0
    cutoffs_total: int = 0
    next_sequence: int = 0
    durable_next: int = 0
    rejected: int = 0
    # Times the rescue thread took over from the idle one (gateway.events.pump).
    rescues: int = 0
    # Its journal failed: it streams from memory, so its next sequence may exceed the journal's.
    journal_failed: bool = False


def _nothing() -> None:
    pass


class PipePublisher(DeferredPublisher):
    """The gateway's side of the pipe: marshals pending specs and writes them to the child.

    The child may die and be replaced (`EventProcess`): between `detach` and the next `attach`
    events stay queued, and a frame whose write failed is queued again, first, for the next child.
    """

    def __init__(self, poll_s: float = 0.005, max_pending: int = DEFAULT_MAX_PENDING,
                 stall_s: float = WRITE_STALL_S) -> None:
        super().__init__(poll_s, "event-pipe", max_pending)
        self._stall_s = stall_s
        self._out: IO[bytes] | None = None
        self._on_broken: Callable[[], None] = _nothing
        # Events in frames written whole to the current child: the bytes still in the pipe when
        # it dies are lost, and this is what tells how many (against what it journaled).
        self.written = 0

    def attach(self, out: IO[bytes], on_broken: Callable[[], None] = _nothing) -> None:
        """Write to `out` from now on; `on_broken` is called, on the drain thread, if a write
        to it fails (the child is gone) or makes no progress for `stall_s` (the child lives but
        no longer reads: wedged on its disk, stopped)."""
        os.set_blocking(out.fileno(), False)  # see _write
        with self._drain_lock:
            self._out, self._on_broken, self.written = out, on_broken, 0
        self.start()

    def detach(self, lock_timeout: float = -1) -> int:
        """Stop writing to the current child and close its pipe; returns how many events were
        written to it. Waits for a write in progress (at most `lock_timeout`, then the pipe is
        left to the child's end: a write to a dead child fails at once)."""
        if not self._drain_lock.acquire(timeout=lock_timeout):
            _log.error("event pipe still being written after %.0f s: not closed here",
                       lock_timeout)
            return self.written
        try:
            out, self._out = self._out, None
            written, self.written = self.written, 0
        finally:
            self._drain_lock.release()
        if out is not None:
            with contextlib.suppress(OSError):
                out.close()
        return written

    def publish(self, event: Event) -> None:
        self.publish_later(("from_wire", {"wire": event.SerializeToString()}))

    def close(self) -> None:
        super().close()
        self.detach(lock_timeout=CLOSE_WAIT_S)
        if self._pending:
            _log.error("%d events not published: the event process was down when the gateway "
                       "stopped", len(self._pending))

    def _can_deliver(self) -> bool:
        return self._out is not None  # not attached, or the child is down: keep what is pending

    def _deliver(self, batch: list[Pending]) -> None:
        for i in range(0, len(batch), _MAX_SPECS_PER_FRAME):
            chunk = batch[i:i + _MAX_SPECS_PER_FRAME]
            try:
                payload = marshal.dumps(chunk)
            except ValueError:
                chunk = self._plain_only(chunk)
                payload = marshal.dumps(chunk)
            if not self._write(HEADER.pack(len(payload)) + payload):
                # A frame the child did not get whole was not published: it and the rest go,
                # in order and ahead of anything queued since, to the next child.
                self._pending.extendleft(reversed(chunk + batch[i + _MAX_SPECS_PER_FRAME:]))
                return
            self.written += len(chunk)

    @staticmethod
    def _plain_only(chunk: list[Pending]) -> list[Pending]:
        """One spec holding something marshal refuses (a Decimal, an object) must not take the
        others down with it: it is logged by name and dropped."""
        good: list[Pending] = []
        for pending in chunk:
            try:
                marshal.dumps(pending)
            except ValueError:
                _log.error("event %s not published: its spec holds a value marshal cannot "
                           "carry (only plain values may): %r", pending[1], pending[2])
            else:
                good.append(pending)
        return good

    def _write(self, data: bytes) -> bool:
        """Write one frame; False (and `on_broken`) if the child is gone or stalled.

        The pipe is non-blocking and a full one is waited on with a deadline: a child that
        lives but stopped reading would otherwise hold this thread in a write for ever, drop
        every later event once the backlog is full, and hang the gateway's stop. A stall is
        no progress for `stall_s`; `EventProcess` then kills the child and starts another,
        which gets this frame and what is queued behind it."""
        out = self._out
        if out is None:
            return False
        fd = out.fileno()
        view = memoryview(data)
        stalled_at: float | None = None
        try:
            while view:
                try:
                    view = view[os.write(fd, view):]  # releases the GIL
                    stalled_at = None
                    continue
                except BlockingIOError:
                    pass
                now = time.monotonic()
                if stalled_at is None:
                    stalled_at = now
                elif now - stalled_at >= self._stall_s:
                    _log.error("event process has read nothing for %.0f s: taken as wedged",
                               self._stall_s)
                    raise BrokenPipeError("event process not reading")
                select.select([], [fd], [], min(1.0, self._stall_s))
        except OSError:
            # The child is gone (or wedged): stop writing to it; `EventProcess` reports it,
            # kills it if it still lives, and starts another.
            self._out = None
            with contextlib.suppress(OSError):
                out.close()
            self._on_broken()
            return False
        return True


class EventProcess:
    """Starts, feeds, restarts and stops the child; `publisher` is what the gateway publishes to.

    For metrics: `restarts` counts children started after one died; `lost_events` counts events
    written to a child that died before journaling them.
    """

    def __init__(self, spec: EventProcessSpec) -> None:
        self.spec = spec
        self.publisher = PipePublisher()
        self.port = 0
        self.restarts = 0
        self.lost_events = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stats = EventProcessStats()
        self._first_sequence = 0  # the current child's next sequence when it came up
        self._up_since = 0.0
        self._stopping = threading.Event()
        self._spawn_lock = threading.Lock()  # stop() waits out a restart under way
        self._watcher: threading.Thread | None = None

    def start(self, proxy_target: str | None = None, timeout_s: float = 60.0) -> int:
        """Spawn the child and wait until it serves; returns the bound gRPC port.

        `proxy_target` (host:port) overrides the spec's: the gateway's loopback server usually
        binds only after the gateway, and with it this publisher, exists.
        """
        if proxy_target is not None:
            self.spec = replace(self.spec, proxy_target=proxy_target)
        lines = self._spawn(self.spec, timeout_s)
        self._watcher = threading.Thread(target=self._watch, args=(lines,),
                                         name="event-process-watch", daemon=True)
        self._watcher.start()
        return self.port

    def stats(self) -> EventProcessStats:
        return self._stats

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def stop(self, timeout_s: float = 15.0) -> None:
        """Send what is pending, close the pipe, and wait for the child to flush and exit."""
        self._stopping.set()  # from here on the child's exit is no death: no restart
        with self._spawn_lock:  # a restart under way completes, so what is pending reaches it
            self.publisher.close()
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _log.error("event process did not exit within %.0f s: killed", timeout_s)
                self._kill()
        if self._watcher is not None:
            self._watcher.join(timeout_s)

    def _spawn(self, spec: EventProcessSpec, timeout_s: float) -> _Lines:
        """Start a child, wait until it serves, and point the publisher at it. Returns the
        queue that gets None when the child exits or the pipe to it breaks."""
        cmd = [sys.executable, "-m", "gateway.events.process", json.dumps(asdict(spec))]
        lines: _Lines = queue.Queue()
        proc = self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdin is not None
        threading.Thread(target=self._read, args=(proc.stdout, lines), name="event-process-out",
                         daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self._kill()
                raise RuntimeError(f"event process did not start within {timeout_s:.0f} s") \
                    from None
            if line is None:
                code = proc.wait()
                if code == _EXIT_CANNOT_LISTEN:
                    raise ListenError("event service cannot listen on "
                                      f"{host_port(spec.host, spec.port)} "
                                      "(address in use?)")
                raise RuntimeError(f"event process exited with code {code} before serving "
                                   "(see its log lines above)")
            if "ready" in line:
                break
        self.port = int(line["ready"]["port"])
        self._first_sequence = int(line["ready"]["next_sequence"])
        self._up_since = time.monotonic()
        _widen_pipe(proc.stdin.fileno())
        self.publisher.attach(proc.stdin, on_broken=lambda: lines.put(None))
        return lines

    def _watch(self, lines: _Lines) -> None:
        """Restart the child whenever it dies, until stop(). On this thread, never a producer's:
        they only append to the publisher's deque, which keeps what they publish meanwhile."""
        delay = _RESTART_MIN_S
        while True:
            while lines.get() is not None:
                pass
            if self._stopping.is_set():
                return
            if time.monotonic() - self._up_since >= _RESTART_MAX_S:
                delay = _RESTART_MIN_S  # it ran a while: not a crash loop
            first, stats = self._first_sequence, self._stats
            written = self.publisher.detach()
            pid, status = self._reap()
            if stats.journal_failed:
                # It streamed from memory: subscribers may have seen sequences up to `first +
                # written - 1` (each event written took at most one) that its journal lacks. The
                # new child starts past them; its journal keeps the gap, which a replay reports
                # (JournalGap) instead of serving other events under those sequences.
                floor = max(first + written, stats.next_sequence, self.spec.min_next_sequence)
                self.spec = replace(self.spec, min_next_sequence=floor)
                _log.error("the dead event process's journal had failed: the new one starts at "
                           "sequence %d at the lowest; sequences from %d on that its journal "
                           "lacks are lost (a replay reaching them gets DATA_LOSS)", floor,
                           stats.durable_next)
            unconfirmed = max(0, written - (stats.durable_next - first) - stats.rejected)
            _log.error("event process (pid %d) died (%s); restarting it in %.1f s. Up to %d "
                       "events written to it since its last stats report may be lost (the exact "
                       "count follows the restart); events published meanwhile are kept for the "
                       "new one", pid, status, delay, unconfirmed)
            while True:
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, _RESTART_MAX_S)
                with self._spawn_lock:
                    if self._stopping.is_set():
                        return
                    try:
                        # The same port even if the spec asked for any: clients reconnect to it.
                        lines = self._spawn(replace(self.spec, port=self.port), _RESTART_WAIT_S)
                        break
                    except (RuntimeError, OSError) as exc:  # the port taken, no fds left...
                        _log.error("event process restart failed (%s); retrying in %.1f s",
                                   exc, delay)
            lost = self._lost(written, first, stats)
            self.restarts += 1
            self.lost_events += lost
            _log.warning("event process restarted (pid %s, restart %d), continuing from sequence "
                         "%d; %d events written to the dead one never reached its journal",
                         self.pid, self.restarts, self._first_sequence, lost)

    def _lost(self, written: int, first: int, stats: EventProcessStats) -> int:
        """Events written to a dead child that never reached its journal: the new child's
        log continues from that journal, so its first sequence says how many did. Specs the
        dead child rejected after its last report (it logged them) count here too; without a
        journal, what it last reported having published stands in for it."""
        reached = (stats.next_sequence if self.spec.journal_dir is None
                   else self._first_sequence) - first
        return max(0, written - reached - stats.rejected)

    def _reap(self) -> tuple[int, str]:
        """Wait for the dead child (pid, how it ended); one whose pipe broke but that lives on is
        wedged, of no use any more, and holds the port and the journal: killed."""
        proc = self._proc
        assert proc is not None
        try:
            code = proc.wait(_REAP_WAIT_S)
        except subprocess.TimeoutExpired:
            self._kill()
            code = proc.wait()
        if code < 0:
            with contextlib.suppress(ValueError):
                return proc.pid, f"exit code {code}, {signal.Signals(-code).name}"
        return proc.pid, f"exit code {code}"

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _read(self, out: IO[bytes], lines: _Lines) -> None:
        with out:
            for raw in out:
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if "stats" in line:
                    self._stats = EventProcessStats(**line["stats"])
                    continue
                if "ready" in line:  # a new child: no stats of the dead one's stand for it
                    n = int(line["ready"]["next_sequence"])
                    self._stats = EventProcessStats(next_sequence=n, durable_next=n)
                lines.put(line)
        lines.put(None)


def _widen_pipe(fd: int, size: int = 1 << 20) -> None:
    """Room for a burst of events (Linux pipes hold 64 KiB, ~300 events, by default), so the
    drain thread rarely waits while the lower-priority child catches up; best effort."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, set_size, size)


# ---- the child ---------------------------------------------------------------------------------

def _lock_journal(journal_dir: Path) -> int:
    """Wait for a previous child (of a killed gateway) to finish flushing this journal."""
    journal_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(journal_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + _LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"event journal {journal_dir} is still locked by another "
                                   f"event process after {_LOCK_WAIT_S:.0f} s") from None
            time.sleep(0.05)


def _emit(line: dict[str, Any], lock: threading.Lock) -> None:
    with lock:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def _report_stats(stats: Callable[[], EventProcessStats], interval: float,
                  stop: threading.Event, lock: threading.Lock) -> None:
    while not stop.wait(interval):
        _emit({"stats": asdict(stats())}, lock)


def serve(spec: EventProcessSpec, stdin: IO[bytes]) -> None:
    """Serve events sent on `stdin` until it closes."""
    if spec.nice:
        with contextlib.suppress(OSError):
            os.nice(spec.nice)
    journal_dir = Path(spec.journal_dir) if spec.journal_dir else None
    if journal_dir is not None:
        _lock_journal(journal_dir)  # held (by the open fd) until this process exits
    # Its only publisher is the loop below, which can wait for a journal write.
    log = EventLog(EventLogConfig(journal_dir=journal_dir,
                                  retention_max_bytes=spec.retention_max_bytes,
                                  writer_thread=False,
                                  min_next_sequence=spec.min_next_sequence))
    extra = (proxy_registrations(spec.proxy_target, spec.proxy_services)
             if spec.proxy_target else [])
    server = EventServer(log, EventServerConfig(
        host=spec.host, port=spec.port,
        tls_cert_file=Path(spec.tls_cert_file) if spec.tls_cert_file else None,
        tls_key_file=Path(spec.tls_key_file) if spec.tls_key_file else None,
        tls_client_ca_file=Path(spec.tls_client_ca_file) if spec.tls_client_ca_file else None,
        wake_interval_s=spec.wake_interval_s, max_lag_events=spec.max_lag_events),
        extra_services=extra)
    out_lock = threading.Lock()
    stop = threading.Event()
    rejected = 0

    def handle(payload: bytes) -> None:
        nonlocal rejected
        batch = marshal.loads(payload)
        rejected += len(batch) - publish_pending(log, batch)
        log.write_pending()

    pump = FramePump(stdin.fileno(), handle)

    def stats() -> EventProcessStats:
        s = server.stats()
        return EventProcessStats(
            subscribers=s.subscribers, queued=s.queued, cutoffs_total=s.cutoffs_total,
            next_sequence=log.next_sequence, durable_next=log.durable_next, rejected=rejected,
            rescues=pump.rescues, journal_failed=log.journal_error is not None)

    try:
        port = server.start()
        _log.info("serving events on %s:%d from sequence %d", spec.host, port, log.next_sequence)
        # Where this child's log starts: after a restart, the gateway tells from it how many of
        # the events it wrote to the dead child reached the journal.
        _emit({"ready": {"port": port, "next_sequence": log.next_sequence}}, out_lock)
        threading.Thread(target=_report_stats, args=(stats, spec.stats_interval_s, stop,
                                                     out_lock), daemon=True).start()
        run_pump(pump, idle=spec.idle, rescue_after_s=spec.rescue_after_s)
        if pump.truncated:
            _log.error("event pipe closed mid-frame: the gateway stopped while writing")
    finally:
        stop.set()
        server.stop(grace=1.0)
        log.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec_fields = json.loads(args[0])
    spec = EventProcessSpec(**spec_fields)
    leave_stopping_to_owner()
    setup_logging(spec.log_level, spec.log_format, process="event process")
    try:
        serve(spec, sys.stdin.buffer)
    except ListenError as exc:
        _log.error("event process failed: %s", exc)
        return _EXIT_CANNOT_LISTEN
    except Exception as exc:
        _log.error("event process failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
