"""The event process: the EventLog and the gRPC EventService in a child process of the gateway.

Why a process: every event the gateway publishes used to be built, serialized, journaled and
streamed to each subscriber under the gateway's own GIL, so ten subscribers (or one busy one)
took turns with the FIX callback threads; `tools/bench_events.py` showed the order round trip's
p99 doubling with ten subscribers attached. Here the gateway only pickles the frozen event
builds (`gateway.events.publisher`) and writes them to this process's stdin; this process
builds, sequences, journals and serves them, on its own GIL and at a lower CPU priority than the
order path (`nice`), so a subscriber can cost the FIX path CPU time on a saturated machine but
never a lock.

The same port also serves the gateway's own gRPC services (SignalService, PositioningService):
their calls are passed through unchanged to a loopback server inside the gateway
(`gateway.events.proxy`), so operators keep one address, one TLS setup, reflection and health.

Lifetime: the child exits when its stdin closes, after publishing everything it was sent and
flushing the journal — on a clean stop and equally when the gateway is killed (-9 included), so
no event that reached the pipe is lost and no orphan holds the port. It ignores SIGINT (a Ctrl-C
reaches the whole process group; the gateway decides when events end). A lock on the journal
directory makes a restarted gateway's new child wait for the old one to finish its flush.

Wire: gateway → child, frames of a 4-byte big-endian length and a pickled list of builds;
child → gateway, JSON lines on stdout: ``{"ready": {"port": N}}`` once serving, then
``{"stats": {...}}`` every second (subscribers, queued events, cut-offs; for metrics).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import IO, Any

from gateway.events.log import EventLog, EventLogConfig
from gateway.events.proxy import proxy_registrations
from gateway.events.publisher import DeferredPublisher, Event, EventBuild, given_event
from gateway.events.server import EventServer, EventServerConfig

__all__ = ["EventProcess", "EventProcessSpec", "EventProcessStats", "PipePublisher", "main"]

_log = logging.getLogger("fixgw.events")

_HEADER = struct.Struct(">I")
# Builds pickled per write: ~4 µs each, so one dumps() holds the gateway's GIL for well under
# the 0.5 ms switch interval a FIX thread might be waiting out.
_MAX_BUILDS_PER_FRAME = 16
_LOCK_WAIT_S = 30.0


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
    wake_interval_s: float | None = 0.005
    proxy_target: str | None = None
    proxy_services: list[str] = field(default_factory=list)
    nice: int = 5
    log_level: str = "INFO"
    stats_interval_s: float = 1.0


@dataclass(frozen=True)
class EventProcessStats:
    subscribers: int = 0
    queued: int = 0
    cutoffs_total: int = 0
    next_sequence: int = 0


class PipePublisher(DeferredPublisher):
    """The gateway's side of the pipe: pickles pending builds and writes them to the child."""

    def __init__(self, poll_s: float = 0.005) -> None:
        super().__init__(poll_s, "event-pipe")
        self._out: IO[bytes] | None = None
        self._broken = False

    def attach(self, out: IO[bytes]) -> None:
        self._out = out
        self.start()

    def publish(self, event: Event) -> None:
        self.publish_later(partial(given_event, event.SerializeToString()))

    def close(self) -> None:
        super().close()
        out, self._out = self._out, None
        if out is not None:
            with contextlib.suppress(OSError):
                out.close()

    def _drain(self) -> bool:
        if self._out is None:
            return False  # not attached yet: keep what is pending
        return super()._drain()

    def _deliver(self, batch: list[tuple[int, EventBuild]]) -> None:
        for i in range(0, len(batch), _MAX_BUILDS_PER_FRAME):
            chunk = batch[i:i + _MAX_BUILDS_PER_FRAME]
            try:
                payload = pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                payload = self._pickle_each(chunk)
            self._write(_HEADER.pack(len(payload)) + payload)

    @staticmethod
    def _pickle_each(chunk: list[tuple[int, EventBuild]]) -> bytes:
        """One unpicklable build must not take the others down with it."""
        good: list[tuple[int, EventBuild]] = []
        for build in chunk:
            try:
                pickle.dumps(build, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                _log.exception("event not published (cannot be sent to the event process)")
            else:
                good.append(build)
        return pickle.dumps(good, protocol=pickle.HIGHEST_PROTOCOL)

    def _write(self, data: bytes) -> None:
        out = self._out
        if out is None or self._broken:
            return
        fd = out.fileno()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]  # releases the GIL; blocks only this thread
        except OSError as exc:
            self._broken = True
            _log.error("event process is gone (%s): events are no longer published", exc)


class EventProcess:
    """Starts, feeds and stops the child; `publisher` is what the gateway publishes to."""

    def __init__(self, spec: EventProcessSpec) -> None:
        self.spec = spec
        self.publisher = PipePublisher()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stats = EventProcessStats()
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.port = 0

    def start(self, proxy_target: str | None = None, timeout_s: float = 60.0) -> int:
        """Spawn the child and wait until it serves; returns the bound gRPC port.

        `proxy_target` (host:port) overrides the spec's: the gateway's loopback server usually
        binds only after the gateway, and with it this publisher, exists.
        """
        if proxy_target is not None:
            self.spec = replace(self.spec, proxy_target=proxy_target)
        cmd = [sys.executable, "-m", "gateway.events.process", json.dumps(asdict(self.spec))]
        proc = self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdin is not None
        threading.Thread(target=self._read, args=(proc.stdout,), name="event-process-out",
                         daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self._kill()
                raise RuntimeError(f"event process did not start within {timeout_s:.0f} s") \
                    from None
            if line is None:
                code = proc.wait()
                raise RuntimeError(f"event process exited with code {code} before serving "
                                   "(see its log lines above)")
            if "ready" in line:
                self.port = int(line["ready"]["port"])
                break
        _widen_pipe(proc.stdin.fileno())
        self.publisher.attach(proc.stdin)
        return self.port

    def stats(self) -> EventProcessStats:
        return self._stats

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def stop(self, timeout_s: float = 15.0) -> None:
        """Send what is pending, close the pipe, and wait for the child to flush and exit."""
        self.publisher.close()
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _log.error("event process did not exit within %.0f s: killed", timeout_s)
            self._kill()

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _read(self, out: IO[bytes]) -> None:
        for raw in out:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if "stats" in line:
                self._stats = EventProcessStats(**line["stats"])
            else:
                self._lines.put(line)
        self._lines.put(None)


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


def _read_exact(stream: IO[bytes], n: int) -> bytes | None:
    data = stream.read(n)
    return data if data is not None and len(data) == n else None


def _emit(line: dict[str, Any], lock: threading.Lock) -> None:
    with lock:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def _report_stats(server: EventServer, log: EventLog, interval: float, stop: threading.Event,
                  lock: threading.Lock) -> None:
    while not stop.wait(interval):
        s = server.stats()
        _emit({"stats": asdict(EventProcessStats(
            subscribers=s.subscribers, queued=s.queued, cutoffs_total=s.cutoffs_total,
            next_sequence=log.next_sequence))}, lock)


def serve(spec: EventProcessSpec, stdin: IO[bytes]) -> None:
    """Serve events sent on `stdin` until it closes."""
    if spec.nice:
        with contextlib.suppress(OSError):
            os.nice(spec.nice)
    journal_dir = Path(spec.journal_dir) if spec.journal_dir else None
    if journal_dir is not None:
        _lock_journal(journal_dir)  # held (by the open fd) until this process exits
    log = EventLog(EventLogConfig(journal_dir=journal_dir,
                                  retention_max_bytes=spec.retention_max_bytes))
    extra = (proxy_registrations(spec.proxy_target, spec.proxy_services)
             if spec.proxy_target else [])
    server = EventServer(log, EventServerConfig(
        host=spec.host, port=spec.port,
        tls_cert_file=Path(spec.tls_cert_file) if spec.tls_cert_file else None,
        tls_key_file=Path(spec.tls_key_file) if spec.tls_key_file else None,
        tls_client_ca_file=Path(spec.tls_client_ca_file) if spec.tls_client_ca_file else None,
        wake_interval_s=spec.wake_interval_s), extra_services=extra)
    out_lock = threading.Lock()
    stop = threading.Event()
    try:
        port = server.start()
        _emit({"ready": {"port": port}}, out_lock)
        threading.Thread(target=_report_stats, args=(server, log, spec.stats_interval_s, stop,
                                                     out_lock), daemon=True).start()
        publish = log.publish
        while (header := _read_exact(stdin, _HEADER.size)) is not None:
            payload = _read_exact(stdin, _HEADER.unpack(header)[0])
            if payload is None:
                _log.error("event pipe closed mid-frame: the gateway stopped while writing")
                break
            builds: list[tuple[int, EventBuild]] = pickle.loads(payload)
            for recv_ns, build in builds:
                try:
                    publish(build(), recv_ns)
                except Exception:
                    _log.exception("event not published")
    finally:
        stop.set()
        server.stop(grace=1.0)
        log.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec_fields = json.loads(args[0])
    spec = EventProcessSpec(**spec_fields)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=getattr(logging, spec.log_level, logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s [event process] %(message)s")
    try:
        serve(spec, sys.stdin.buffer)
    except Exception as exc:
        _log.error("event process failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
