"""A simulator of its own per test: every face on free loopback ports, no synthetic flow and
no seeded books (a test's own orders are the only ones), always open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config.model import ScheduleConfig
from gateway.venue_sim.server import SimOptions, VenueSimulator


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[VenueSimulator]:
    s = VenueSimulator(SimOptions(data_dir=tmp_path / "sim", flow_rate_hz=0, seed_books=False,
                                  schedule=ScheduleConfig(mode="non-stop")))
    s.start()
    try:
        yield s
    finally:
        s.stop()
