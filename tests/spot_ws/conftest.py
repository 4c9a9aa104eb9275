"""The fallback in process, failed over with its private WebSocket connected: the gateway's
router and fallback against the simulator's spot REST and WS v2 faces over one matching
engine on loopback (only the OMS FIX session is replaced by a recorder)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.venue_sim.spot_ws import SpotWsServer
from tests.integration.test_failover_amend import World, connect_private_ws


@contextmanager
def ws_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             **kw: object) -> Iterator[tuple[World, SpotWsServer]]:
    """A `World` (its keyword arguments: `kw`) whose OMS reports are recorded, connected to
    the simulator's private WS face (returned too, for a test that changes its answers)."""
    w = World(tmp_path, **kw)  # type: ignore[arg-type]
    w.capture(monkeypatch)
    face, _ws = connect_private_ws(w)
    try:
        yield w, face
    finally:
        w.close()
        face.stop()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with ws_world(tmp_path, monkeypatch) as (w, _face):
        yield w
