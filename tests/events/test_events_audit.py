"""Audit of the event stream's resume contract (proto/API-GUIDE.md 3.4/3.5) over a real gRPC
server: edge cases found wanting, each pinned by a test that failed before its fix."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from gateway.events import EventLog, EventLogConfig, EventServer, EventServerConfig
from tests.conftest import wait_until
from tests.events.test_events_service import Stub, collect, order, status_of


def test_after_a_journal_failure_what_the_journal_holds_can_still_be_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed write stops journaling, but what was written before stays readable: a client
    resuming from there must be served, not told OUT_OF_RANGE ("events are gone", which makes
    it rebuild its state or skip events it could have had)."""
    log = EventLog(EventLogConfig(journal_dir=tmp_path / "j", ring_capacity=64))
    server = EventServer(log, EventServerConfig(port=0))
    port = server.start()
    try:
        for i in range(100):
            log.publish(order(i))
        assert log.flush()
        journal = log._journal
        assert journal is not None

        def broken(records: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(journal, "append", broken)
        for i in range(100, 110):
            log.publish(order(i))
        wait_until(lambda: log.journal_error is not None, 5.0, "the failed write")
        # 1..100 on disk, 47..110 in memory: nothing is missing.
        assert log.oldest_sequence() == 1
        stub = Stub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        evs = collect(stub, 110, from_sequence=1)
        assert [e.sequence for e in evs] == list(range(1, 111))
        # Once memory no longer reaches back to what is on disk, the range between is gone
        # for good (never written): that is OUT_OF_RANGE, from the oldest event still held.
        for i in range(110, 200):
            log.publish(order(i))
        err = status_of(lambda: collect(stub, 200, from_sequence=1))
        assert err.code() == grpc.StatusCode.OUT_OF_RANGE
        assert dict(err.trailing_metadata() or ())["oldest-sequence"] == str(200 - 64 + 1)
    finally:
        server.stop(0)
        log.close()
