"""Several threads sharing one key (order entry, reconciliation, the dead-man's switch) over
loopback against the simulator, which enforces kraken-api.md §1's strictly increasing nonce:
a request signed with a smaller nonce may reach the venue after a larger one, and no call may
fail for it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest

from gateway.kraken.auth import NonceSource
from gateway.kraken.ratelimits import RateTier
from gateway.transports.kraken_spot_rest import KrakenRestError, KrakenSpotRest
from gateway.venue_sim.engine import MatchingEngine
from gateway.venue_sim.spot_rest import SpotRestServer
from tests.spot_rest.test_spot_rest import KEY, SECRET, make_accounts

ROOMY = RateTier(Decimal(100_000), Decimal(1000))


@pytest.fixture
def server() -> Iterator[SpotRestServer]:
    srv = SpotRestServer(MatchingEngine(), make_accounts(), tier="pro", rest_tier=ROOMY,
                         engine_tier=ROOMY)
    srv.start()
    yield srv
    srv.close()


def test_threads_sharing_a_key_never_fail_on_nonce_order(server: SpotRestServer) -> None:
    c = KrakenSpotRest(server.base_url, KEY, SECRET, NonceSource(), timeout_s=5,
                       rest_tier=ROOMY, engine_tier=ROOMY, backoff_initial_s=0.001,
                       backoff_max_s=0.01)
    errors: list[KrakenRestError] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(25):
            try:
                c.open_orders()
            except KrakenRestError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [str(e) for e in errors] == []
