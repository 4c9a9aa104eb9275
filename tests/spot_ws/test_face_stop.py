"""A simulator WS face stops promptly even when a client has stopped reading: it closes that
connection after its own short close timeout instead of websockets' default 10 s, which used
to outlast `stop()`'s join and leave the face's thread behind."""

from __future__ import annotations

import base64
import os
import socket

from gateway.venue_sim.accounts import Accounts
from gateway.venue_sim.engine import MatchingEngine
from gateway.venue_sim.spot_ws import SpotWsServer


def _silent_client(host: str, port: int, path: str) -> socket.socket:
    """A WebSocket handshake over a bare socket, then nothing: never reads, never answers."""
    sock = socket.create_connection((host, port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    assert b" 101 " in sock.recv(4096)
    return sock


def test_stop_does_not_wait_on_a_client_that_stopped_reading() -> None:
    face = SpotWsServer(MatchingEngine(seed=1), Accounts())
    face.start()
    sock = _silent_client(face.host, face.port, face.path)
    try:
        thread = face._thread
        assert thread is not None
        face.stop()
        assert not thread.is_alive(), "the face's thread outlived stop()"
    finally:
        sock.close()
