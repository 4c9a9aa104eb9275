"""`free_port`: ports no bind(0) or outgoing connection can take before their owner binds them."""

from __future__ import annotations

import socket

import pytest

from gateway.fix import settings
from gateway.fix.settings import free_port


def _ephemeral_range() -> tuple[int, int]:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = f.read().split()
    return int(low), int(high)


def test_ports_are_below_the_ephemeral_range_bindable_and_never_repeated() -> None:
    low, _ = _ephemeral_range()
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(settings._PORT_LOW <= p < low for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # free, as promised


def test_a_bind_to_port_zero_never_takes_one() -> None:
    """The race this avoids: a socket bound to port 0 (or an outgoing connection's source
    port) gets an ephemeral port, which a port from the old bind(0) helper could be."""
    ports = {free_port() for _ in range(50)}
    taken: list[socket.socket] = []
    try:
        for _ in range(500):
            s = socket.socket()
            taken.append(s)
            s.bind(("127.0.0.1", 0))
            assert s.getsockname()[1] not in ports
    finally:
        for s in taken:
            s.close()


def test_a_port_in_use_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        used = busy.getsockname()[1]
        monkeypatch.setattr(settings, "_PORT_LOW", used)
        monkeypatch.setattr(settings, "_PORT_HIGH", used + 1)
        port = free_port()  # the one low port is taken: an ephemeral one instead
    assert port != used
    assert port >= _ephemeral_range()[0]
