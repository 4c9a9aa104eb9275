"""An OMS that reads nothing while the gateway sends it reports is cut after `[oms] stall_cut_s`
(gateway/routing/router.py `cut_stalled_oms`): QuickFIX holds the session's lock through a
blocked send, and the thread blocked may be the venue's. Over real loopback TCP: a listener
standing in for the OMS acceptor, an OMS that never reads."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import quickfix as fix

from gateway.fix import blocked_send
from gateway.routing.router import OmsContext, cut_stalled_oms

needs_proc = pytest.mark.skipif(not blocked_send.CAN_CUT,
                                reason="needs Linux /proc syscall names")


class _Session:
    """What OmsContext sends on: a blocking write to the accepted connection."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def send(self, msg: fix.Message) -> bool:
        try:
            self.conn.sendall(b"x" * 4096)
        except OSError:
            return False
        return True


@pytest.fixture
def stalled() -> Iterator[tuple[OmsContext, socket.socket, int]]:
    """(the OMS's context, the OMS's socket, the acceptor's port): the OMS never reads, and a
    thread keeps sending to it until its send blocks."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    oms = socket.create_connection(("127.0.0.1", port))
    oms.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn, _ = listener.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ctx = OmsContext("FIXGW->OMS", fix.SessionID("FIX.4.4", "FIXGW", "OMS"), ())
    ctx.session = _Session(conn)  # type: ignore[assignment]
    done = threading.Event()

    def reports() -> None:
        while not done.is_set():
            ctx.send(fix.Message())

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
