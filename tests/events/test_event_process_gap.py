"""The known gap, end to end through the event process: its journal fails (a write error), it
streams from memory, it is killed; the restarted child must not give the sequences a client saw
to other events."""

from __future__ import annotations

import os
import resource
import signal
from pathlib import Path

import grpc
import pytest

from gateway._proto.fixgw.v1 import events_pb2
from gateway.events.log import FLOOR_FILE
from gateway.events.process import EventProcess
from tests.conftest import wait_until
from tests.events.test_event_process import spec, stub, trade
from tests.events.test_events_service import collect


def _start_on_a_small_disk(ep: EventProcess) -> None:
    """The journal can hold ~20 KB (RLIMIT_FSIZE, inherited by the first child only: Python
    ignores SIGXFSZ, so the write fails with EFBIG like a full disk would)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
    try:
        ep.start()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _outgrow_the_disk(ep: EventProcess, total: int) -> None:
    """Publish trades 1..`total`, more than the small disk holds: the journal fails on the
    way, and every event is still published."""
    for i in range(1, total + 1):
        ep.publisher.publish_later(trade(i))
    ep.publisher.flush()
    wait_until(lambda: ep.stats().journal_failed and ep.stats().next_sequence == total + 1,
               10.0, "the journal failure and every event published")


def test_a_child_killed_after_its_journal_failed_is_restarted_past_what_it_streamed(
        tmp_path: Path) -> None:
    ep = EventProcess(spec(tmp_path))
    _start_on_a_small_disk(ep)
    try:
        total = 400
        _outgrow_the_disk(ep, total)
        durable = ep.stats().durable_next
        assert 1 < durable < total
        seen = collect(stub(ep), total, from_sequence=durable)  # from memory only
        assert [e.trade.qty for e in seen] == [str(i) for i in range(durable, total + 1)]
        pid = ep.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: ep.restarts == 1, 10.0, "the restart")
        # Never a sequence the client saw, under another event: the new child starts past
        # them (the floor the failed one recorded, or what the gateway passed, the higher).
        first = ep.stats().next_sequence  # its ready line's; nothing published to it yet
        assert first > total
        ep.publisher.publish_later(trade(1000))
        evs = collect(stub(ep), first, from_sequence=first)
        assert [(e.sequence, e.trade.qty) for e in evs] == [(first, "1000")]
        # A replay gets what the journal has (the failed write may have left whole records past
        # the last reported `durable`: the same events), then DATA_LOSS for the rest.
        got: list[events_pb2.Event] = []
        with pytest.raises(grpc.RpcError) as info:
            for batch in stub(ep).Subscribe(events_pb2.SubscribeRequest(from_sequence=durable),
                                            timeout=10):
                got.extend(batch.events)
        err = info.value
        assert err.code() == grpc.StatusCode.DATA_LOSS
        md = dict(err.trailing_metadata() or ())
        lost_from = int(md["resume-sequence"])
        assert md["gap-end"] == str(first)
        assert [(e.sequence, e.trade.qty) for e in got] == [
            (s, str(s)) for s in range(durable, lost_from)]
        info = stub(ep).GetLogInfo(events_pb2.GetLogInfoRequest())
        assert info.next_sequence == first + 1
    finally:
        ep.stop()



def test_when_the_floor_cannot_be_recorded_either_a_gateway_restart_reuses_no_seen_sequence(
        tmp_path: Path) -> None:
    """The journal fails and its sequence floor cannot be written either (here its path is a
    directory: root ignores permissions); then the whole gateway restarts, so no one passes a
    floor to the new event process. Every sequence a client received must still name the event
    it received: the failed child streamed nothing past its journal, and told the client why."""
    floor = tmp_path / "events" / FLOOR_FILE
    floor.mkdir(parents=True)
    ep = EventProcess(spec(tmp_path))
    _start_on_a_small_disk(ep)
    seen: dict[int, str] = {}
    try:
        total = 400
        _outgrow_the_disk(ep, total)
        with pytest.raises(grpc.RpcError) as info:
            for batch in stub(ep).Subscribe(events_pb2.SubscribeRequest(from_sequence=1),
                                            timeout=5):
                seen.update((e.sequence, e.trade.qty) for e in batch.events)
    finally:
        ep.stop()
    ep = EventProcess(spec(tmp_path))  # the gateway restarts
    ep.start()
    try:
        first = ep.stats().next_sequence  # its ready line's; nothing published to it yet
        ep.publisher.publish_later(trade(1000))
        now = {e.sequence: e.trade.qty for e in collect(stub(ep), first, from_sequence=1)}
        assert {s: now.get(s) for s in seen} == seen
        assert now[first] == "1000"
    finally:
        ep.stop()
    err = info.value
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "sequence floor cannot be recorded" in (err.details() or "")
    assert sorted(seen) == list(range(1, len(seen) + 1)) and len(seen) < total
    assert dict(err.trailing_metadata() or ())["resume-sequence"] == str(len(seen) + 1)
