"""An OMS that reads nothing for `cut_after_s` while its market-data send is blocked is cut off
(gateway/marketdata/outbox.py): a blocked QuickFIX send holds the OMS session's mutex, so its
ExecutionReports, sent on the venue thread, would wait too. Over a real socket pair, whose
peer stops reading, standing in for the OMS session's connection."""

from __future__ import annotations

import contextlib
import logging
import socket
import time

import pytest
import quickfix as fix

from gateway.fix import blocked_send
from gateway.fix import messages as m
from gateway.marketdata.outbox import Outbox

needs_proc = pytest.mark.skipif(not blocked_send.CAN_CUT,
                                reason="needs Linux /proc syscall names")


def _update(i: int) -> fix.Message:
    msg = m.new_message("X")
    msg.setField(m.MD_REQ_ID, "R1")
    msg.setField(m.TEXT, f"{i:06d}" + "x" * 300)
    return msg


@needs_proc
def test_an_oms_that_reads_nothing_past_cut_after_s_is_disconnected(
        caplog: pytest.LogCaptureFixture) -> None:
    ours, oms = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    oms.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    def send(msg: fix.Message) -> None:  # blocks as QuickFIX's send does; False when dead
        with contextlib.suppress(OSError):
            ours.sendall(msg.toString().encode())

    box = Outbox("FIXGW->OMS", send, lambda o: o.end_resync(), cut_after_s=0.5)
    try:
        with caplog.at_level(logging.WARNING, "fixgw.marketdata.oms"):
            deadline = time.monotonic() + 10
            i = 0
            while box.cuts == 0:  # the OMS reads nothing; updates keep coming
                assert time.monotonic() < deadline, "never cut"
                box.put(_update(i))
                i += 1
                time.sleep(0.01)
        assert "the OMS has read nothing for" in caplog.text and "is cut" in caplog.text
        oms.settimeout(5)
        while oms.recv(65536):  # what was sent before the cut, then the end
            pass
    finally:
        box.close()
        ours.close()
        oms.close()


def test_a_slow_reader_within_cut_after_s_is_not_cut() -> None:
    ours, oms = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    oms.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    box = Outbox("FIXGW->OMS", lambda msg: ours.sendall(msg.toString().encode()),
                 lambda o: o.end_resync(), cut_after_s=5.0)
    try:
        for i in range(100):
            box.put(_update(i))
        time.sleep(0.5)  # a pause, then it reads everything
        oms.settimeout(5)
        got = b""
        while got.count(b"\x0110=") < 100:
            got += oms.recv(65536)
        assert box.idle(5) and box.cuts == 0
    finally:
        box.close()
        ours.close()
        oms.close()
