"""An OMS that reads nothing while the gateway sends to it (reports, or market data from its
outbox) is cut after `[oms] stall_cut_s` (gateway/routing/router.py `cut_stalled_oms`):
QuickFIX holds the session's lock through a blocked send, and the thread blocked may be the
venue's. Over real loopback TCP: a listener standing in for the OMS acceptor, an OMS that never
reads."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import quickfix as fix

from gateway.fix import blocked_send
from gateway.fix import messages as m
from gateway.marketdata.outbox import Outbox
from gateway.routing.router import OmsContext, cut_stalled_oms

needs_proc = pytest.mark.skipif(not blocked_send.CAN_CUT,
                                reason="needs Linux /proc syscall names")


class _Session:
    """What OmsContext sends on: a blocking write to the accepted connection."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def send(self, msg: fix.Message) -> bool:
        try:
            self.conn.sendall(msg.toString().encode())
        except OSError:
            return False
        return True


def _connected() -> tuple[socket.socket, socket.socket, socket.socket, OmsContext]:
    """(listener, the OMS's socket, the accepted connection, the OMS's context sending on it):
    small buffers, so a few sends fill them."""
    listener = socket.create_server(("127.0.0.1", 0))
    oms = socket.create_connection(("127.0.0.1", listener.getsockname()[1]))
    oms.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn, _ = listener.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ctx = OmsContext("FIXGW->OMS", fix.SessionID("FIX.4.4", "FIXGW", "OMS"), ())
    ctx.session = _Session(conn)  # type: ignore[assignment]
    return listener, oms, conn, ctx


@pytest.fixture
def stalled() -> Iterator[tuple[OmsContext, socket.socket, int]]:
    """(the OMS's context, the OMS's socket, the acceptor's port): the OMS never reads, and a
    thread keeps sending to it until its send blocks."""
    listener, oms, conn, ctx = _connected()
    port = listener.getsockname()[1]
    done = threading.Event()

    def reports() -> None:
        while not done.is_set():
            ctx.send(_update(0))

    sender = threading.Thread(target=reports, daemon=True)
    sender.start()
    deadline = time.monotonic() + 5
    while not (ctx.sending_since and time.monotonic() - ctx.sending_since > 0.3):
        assert time.monotonic() < deadline, "the send never blocked"
        time.sleep(0.05)
    try:
        yield ctx, oms, port
    finally:
        done.set()
        for s in (oms, conn, listener):
            s.close()
        sender.join(5)


@needs_proc
def test_an_oms_blocked_past_the_limit_is_cut(
        stalled: tuple[OmsContext, socket.socket, int]) -> None:
    ctx, oms, port = stalled
    assert cut_stalled_oms([ctx], 10.0, port) == []  # within the limit: left alone
    assert cut_stalled_oms([ctx], 0.2, port) == ["FIXGW->OMS"]
    oms.settimeout(5)
    while oms.recv(65536):  # what was sent before the cut, then the end
        pass


@needs_proc
def test_only_a_connection_the_oms_acceptor_took_is_cut(
        stalled: tuple[OmsContext, socket.socket, int]) -> None:
    """A thread sending to both (the venue's) may be blocked on another socket: never cut."""
    ctx, _oms, port = stalled
    assert cut_stalled_oms([ctx], 0.2, port + 1) == []
    assert ctx.sending_since  # still blocked: nothing was shut down


def _update(i: int) -> fix.Message:
    msg = m.new_message("X")
    msg.setField(m.MD_REQ_ID, "R1")
    msg.setField(m.TEXT, f"{i:06d}" + "x" * 300)
    return msg


@needs_proc
def test_market_data_blocked_in_the_oms_outbox_is_cut_too(
        caplog: pytest.LogCaptureFixture) -> None:
    """The market-data outbox sends on its own thread, through the OMS session's send: the
    same watch cuts an OMS that reads none of it."""
    listener, oms, conn, ctx = _connected()
    box = Outbox("FIXGW->OMS", ctx.send, lambda o: o.end_resync())
    try:
        with caplog.at_level(logging.WARNING, "fixgw.routing"):
            for i in range(2000):  # far more than the buffers hold; the OMS reads nothing
                box.put(_update(i))
            deadline = time.monotonic() + 10
            while not cut_stalled_oms([ctx], 0.5, listener.getsockname()[1]):
                assert time.monotonic() < deadline, "never cut"
                time.sleep(0.1)
        assert "has read nothing for" in caplog.text and "is cut" in caplog.text
        oms.settimeout(5)
        while oms.recv(65536):  # what was sent before the cut, then the end
            pass
    finally:
        box.close()
        for s in (oms, conn, listener):
            s.close()


def test_a_slow_reader_within_the_limit_is_not_cut() -> None:
    listener, oms, conn, ctx = _connected()
    box = Outbox("FIXGW->OMS", ctx.send, lambda o: o.end_resync())
    try:
        for i in range(100):
            box.put(_update(i))
        time.sleep(0.5)  # a pause, then it reads everything
        assert cut_stalled_oms([ctx], 5.0, listener.getsockname()[1]) == []
        oms.settimeout(5)
        got = b""
        while got.count(b"\x0110=") < 100:
            got += oms.recv(65536)
        assert box.idle(5)
    finally:
        box.close()
        for s in (oms, conn, listener):
            s.close()
