"""A FIX client that stops reading must slow only itself: the simulator's sends happen on each
session's own thread, in order, and a session that falls too far behind is disconnected."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import quickfix as fix

from gateway.config.model import ScheduleConfig
from gateway.fix import blocked_send
from gateway.fix import messages as m
from gateway.venue_sim.engine import Side
from gateway.venue_sim.fix_face import MD_COMP_ID
from gateway.venue_sim.fix_outbox import Outbox
from gateway.venue_sim.server import SimOptions, VenueSimulator
from tests.fix_session.rawclient import RawFixClient

needs_proc = pytest.mark.skipif(not blocked_send.CAN_CUT,
                                reason="finding a blocked send needs Linux x86_64/aarch64")


class SocketSession:
    """Stands in for a QuickFIX session: `send` writes the message's Text as a line to a
    socket, blocking when the peer does not read, as QuickFIX's does."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.attempted: list[str] = []
        self.logged_out: list[str] = []

    def send(self, msg: fix.Message) -> bool:
        self.attempted.append(msg.getField(m.TEXT))
        try:
            self.sock.sendall(msg.getField(m.TEXT).encode() + b"\n")
        except OSError:
            return False  # QuickFIX's send reports a dead socket by its result
        return True

    def logout(self, reason: str = "") -> None:
        self.logged_out.append(reason)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    yield a, b
    a.close()
    b.close()


def numbered(i: int, pad: int = 0) -> fix.Message:
    msg = m.new_message("8")
    msg.setField(m.TEXT, f"{i}" + "x" * pad)
    return msg


def read_texts(sock: socket.socket, n: int, timeout: float = 5.0) -> list[str]:
    data = b""
    sock.settimeout(timeout)
    while data.count(b"\n") < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode().splitlines()


def wait_for(cond: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return True
        time.sleep(0.02)
    return False


def test_puts_never_wait_for_the_peer_and_arrive_in_order(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    session = SocketSession(ours)
    box = Outbox(session, "t", limit=10_000)
    try:
        started = time.monotonic()
        for i in range(300):
            box.put(numbered(i, pad=200))  # far more than the socket buffers hold
        assert time.monotonic() - started < 1.0
        assert wait_for(lambda: box.pending > 0 and session.attempted, 2.0)
        assert read_texts(peer, 300) == [f"{i}" + "x" * 200 for i in range(300)]
    finally:
        box.close()
        box.join(time.monotonic() + 2.0)


@needs_proc
def test_trading_session_too_far_behind_is_disconnected_and_keeps_its_reports(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    session = SocketSession(ours)
    box = Outbox(session, "trading", limit=50)
    try:
        for i in range(100):
            box.put(numbered(i, pad=500))
        # The blocked send is failed by a shutdown of its socket; the peer sees the close.
        assert wait_for(lambda: box.cuts == 1 and box.pending == 0, 10.0)
        for i in range(100, 140):  # reports made after the cut still go out (to the store)
            box.put(numbered(i, pad=500))
        assert wait_for(lambda: box.pending == 0, 5.0)
        assert session.attempted == [f"{i}" + "x" * 500 for i in range(140)]  # none dropped
        assert box.cuts == 1
        assert not session.logged_out  # closed, not just flagged
        peer.settimeout(5.0)
        while peer.recv(65536):
            pass  # EOF after the bytes that made it
    finally:
        box.close()
        box.join(time.monotonic() + 2.0)


@needs_proc
def test_market_data_session_too_far_behind_drops_its_queue_and_subscriptions(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _peer = pair
    session = SocketSession(ours)
    cut = threading.Event()
    box = Outbox(session, "md", limit=50, droppable=True,
                 on_cut=cut.set)
    try:
        for i in range(400):
            box.put(numbered(i, pad=500))
        assert cut.wait(5.0)
        assert wait_for(lambda: box.pending == 0, 5.0)
        assert box.cuts >= 1  # the face's puts stop with the subscriptions; these go on
        assert len(session.attempted) < 400
    finally:
        box.close()
        box.join(time.monotonic() + 2.0)


def _md_client_that_stops_reading(sim: VenueSimulator) -> RawFixClient:
    client = RawFixClient("127.0.0.1", sim.md_port, "FIXGW", target=MD_COMP_ID)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connect: a small window
    s.settimeout(5.0)
    s.connect(("127.0.0.1", sim.md_port))
    client.sock = s
    client.send("A", [(98, "0"), (108, "30"), (141, "Y")])
    client.expect("A")
    symbols = list(sim.engine.symbols)
    client.send("V", [(262, "r1"), (263, "1"), (264, "0"), (267, "2"), (269, "0"), (269, "1"),
                      (146, str(len(symbols))), *[(55, sym) for sym in symbols]])
    client.expect("W")
    return client  # and it never reads again


def test_a_market_data_client_that_stops_reading_freezes_nothing_and_is_cut_off(
        tmp_path: Path) -> None:
    sim = VenueSimulator(SimOptions(data_dir=tmp_path / "sim", flow_rate_hz=0,
                                    schedule=ScheduleConfig(mode="non-stop"),
                                    fix_outbox_limit=300))
    sim.start()
    stop = threading.Event()
    client: RawFixClient | None = None
    try:
        client = _md_client_that_stops_reading(sim)

        def pump() -> None:
            while not stop.is_set():
                sim.flow.step()

        pumper = threading.Thread(target=pump, daemon=True)
        pumper.start()
        for i in range(15):  # long enough for the client's and the kernel's buffers to fill
            time.sleep(0.2)
            done = threading.Event()

            def probe(n: int = i, done: threading.Event = done) -> None:
                sim.engine.submit("PROBE", f"p{n}", "BTC/USD", Side.BUY, Decimal("0.001"),
                                  Decimal("1000.0"))
                done.set()

            threading.Thread(target=probe, daemon=True).start()
            assert done.wait(2.0), f"an engine call waited on a client that does not read ({i})"
        stop.set()
        pumper.join(5.0)
        box = sim.face.outboxes.all()
        md = [b for b in box if MD_COMP_ID in b.name]
        assert md and md[0].cuts >= 1
        session = fix.Session.lookupSession(fix.SessionID("FIX.4.4", MD_COMP_ID, "FIXGW"))
        assert wait_for(lambda: not session.isLoggedOn(), 10.0)
    finally:
        stop.set()
        if client is not None:
            client.close()  # unblocks a send stuck on it (without the fix), so stop() returns
        sim.stop()
