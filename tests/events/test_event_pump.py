"""The event process's pipe reader (gateway.events.pump), over a real pipe: frames come out
whole and in order however the bytes arrive; a pipe closed mid-frame is reported; the reading
thread runs at SCHED_IDLE while its rescue thread does not; frames the reading thread leaves
waiting are handled by the rescue; and in a real event process, events still arrive while
every core is busy with ordinary work."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.events import pump as p
from gateway.events.process import EventProcess, EventProcessSpec
from tests.conftest import wait_until
from tests.events.test_event_process import stub, trade
from tests.events.test_events_service import collect

_LINUX = sys.platform.startswith("linux") and hasattr(os, "SCHED_IDLE")


def frame(payload: bytes) -> bytes:
    return p.HEADER.pack(len(payload)) + payload


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


def policy_of(tid: int) -> int:
    for line in Path(f"/proc/self/task/{tid}/sched").read_text().splitlines():
        if line.startswith("policy"):
            return int(line.split(":")[1])
    raise AssertionError("no policy line")


def test_frames_come_out_whole_and_in_order(pipe: tuple[int, int]) -> None:
    r, w = pipe
    got: list[bytes] = []
    pump = p.FramePump(r, got.append)
    data = b"".join(frame(bytes([i]) * i) for i in range(1, 40))
    for i in range(0, len(data), 7):  # a frame's header and body split across reads
        os.write(w, data[i:i + 7])
        pump.step()
    os.close(w)
    while pump.step():
        pass
    assert got == [bytes([i]) * i for i in range(1, 40)]
    assert not pump.truncated
    assert pump.handled == 39


def test_a_pipe_closed_mid_frame_is_reported(pipe: tuple[int, int]) -> None:
    r, w = pipe
    got: list[bytes] = []
    pump = p.FramePump(r, got.append)
    os.write(w, frame(b"whole") + frame(b"cut short")[:6])
    os.close(w)
    while pump.step():
        pass
    assert got == [b"whole"]
    assert pump.truncated


@pytest.mark.skipif(not _LINUX, reason="SCHED_IDLE is Linux's")
def test_the_reading_thread_is_idle_and_its_rescue_is_not(pipe: tuple[int, int]) -> None:
    r, w = pipe
    seen: dict[str, int] = {}

    def handle(payload: bytes) -> None:
        seen["reader"] = policy_of(threading.get_native_id())
        rescue = next(t for t in threading.enumerate() if t.name == "event-rescue")
        assert rescue.native_id is not None
        seen["rescue"] = policy_of(rescue.native_id)

    pump = p.FramePump(r, handle)
    reader = threading.Thread(target=p.run_pump, args=(pump,),
                              kwargs={"idle": True, "rescue_after_s": 0.2})
    reader.start()
    os.write(w, frame(b"x"))
    wait_until(lambda: "reader" in seen, timeout=5)
    os.close(w)
    reader.join(5)
    assert not reader.is_alive()
    assert seen == {"reader": os.SCHED_IDLE, "rescue": os.SCHED_OTHER}


def test_frames_left_waiting_are_handled_by_the_rescue(pipe: tuple[int, int]) -> None:
    """Nobody else steps the pump here, as when the idle thread gets no CPU at all."""
    r, w = pipe
    got: list[bytes] = []
    pump = p.FramePump(r, got.append)
    stop = threading.Event()
    rescuer = threading.Thread(target=p._rescue, args=(pump, 0.1, stop), daemon=True)
    rescuer.start()
    try:
        for i in range(5):
            os.write(w, frame(str(i).encode()))
        wait_until(lambda: len(got) == 5, timeout=5)
        assert got == [b"0", b"1", b"2", b"3", b"4"]
        assert pump.rescues >= 1
    finally:
        stop.set()
        rescuer.join(5)


@pytest.mark.skipif(not _LINUX, reason="SCHED_IDLE is Linux's")
def test_events_arrive_while_every_core_is_busy(tmp_path: Path) -> None:
    """Ordinary processes spinning on every core starve an idle thread; the rescue, at the
    process's nice, still gets the events out (and says it took over)."""
    ep = EventProcess(EventProcessSpec(journal_dir=str(tmp_path / "events"), port=0, nice=0,
                                       stats_interval_s=0.1))
    ep.start()
    spin = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass\n"
    spinners = [subprocess.Popen([sys.executable, "-c", spin])
                for _ in range(2 * (os.cpu_count() or 2))]
    try:
        time.sleep(0.3)  # the spinners are running
        # Frames every 50 ms until the rescue has taken over once (or 8 s: a failure).
        sent, deadline = 0, time.monotonic() + 8
        while time.monotonic() < deadline and (sent < 200 or ep.stats().rescues == 0):
            for _ in range(10):
                sent += 1
                ep.publisher.publish_later(trade(sent))
            time.sleep(0.05)
        got = collect(stub(ep), sent, from_sequence=1)
        assert [e.trade.qty for e in got] == [str(i) for i in range(1, sent + 1)]
        assert all(s.poll() is None for s in spinners)  # delivered while the cores were busy
        assert ep.stats().rescues >= 1
    finally:
        for s in spinners:
            s.kill()
            s.wait()
        ep.stop()
