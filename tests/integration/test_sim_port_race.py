"""The simulator chooses its FIX ports itself; one taken by another process between the choice
and the bind must not fail its start (a real loopback listener takes it first)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import quickfix as fix

from gateway.venue_sim.server import SimOptions, VenueSimulator


def _occupy(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def test_a_chosen_port_taken_before_the_bind_is_chosen_again(tmp_path: Path) -> None:
    sim = VenueSimulator(SimOptions(data_dir=tmp_path / "sim", flow_rate_hz=0,
                                    seed_books=False))
    taken = sim.trading_port
    squatter = _occupy(taken)
    try:
        sim.start()
        try:
            assert sim.trading_port != taken
            with socket.create_connection(("127.0.0.1", sim.trading_port), timeout=2):
                pass  # the simulator listens where it now says it does
        finally:
            sim.stop()
    finally:
        squatter.close()


def test_a_configured_port_that_is_taken_fails_the_start(tmp_path: Path) -> None:
    probe = _occupy(0)
    port = probe.getsockname()[1]
    try:
        sim = VenueSimulator(SimOptions(data_dir=tmp_path / "sim", flow_rate_hz=0,
                                        seed_books=False, trading_port=port, md_port=port + 1))
        with pytest.raises(fix.RuntimeError, match="Address already in use"):
            sim.start()  # (the process then exits: `fixgw venue-sim` prints the error)
    finally:
        probe.close()
