"""The order-path retries (AddOrder lookup, CancelOrder, AmendOrder) back off no longer than
the configured ``backoff_max_s``: a desk that sets it short must not wait a second between
attempts of a cancel; loopback against the simulator, sleeps observed."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from gateway.kraken.auth import NonceSource
from gateway.transports.kraken_spot_rest import KrakenSpotRest
from gateway.venue_sim.engine import MatchingEngine
from gateway.venue_sim.spot_rest import SpotRestServer
from tests.spot_rest.test_spot_rest import KEY, SECRET, make_accounts


@pytest.fixture
def server() -> Iterator[SpotRestServer]:
    srv = SpotRestServer(MatchingEngine(), make_accounts(), tier="pro")
    srv.start()
    yield srv
    srv.close()


@pytest.mark.parametrize("cap", [0.02, 3.0])
def test_cancel_backoff_honours_backoff_max(server: SpotRestServer, cap: float) -> None:
    slept: list[float] = []
    c = KrakenSpotRest(server.base_url, KEY, SECRET, NonceSource(), timeout_s=2,
                       backoff_initial_s=0.01, backoff_max_s=cap, max_attempts=10,
                       add_order_deadline=False, sleep=slept.append)
    txid = c.add_order("BTC/USD", "buy", "limit", Decimal("0.01"), Decimal("30000.0"), "GTC",
                       "bk1").txid
    server.fail_next(9, 200, "EService:Busy", path_prefix="/0/private/CancelOrder")
    assert c.cancel_order(txid=txid) == 1
    assert len(slept) == 9
    assert max(slept) <= cap
    assert max(slept) == min(cap, 0.01 * 2 ** 8)
