"""Futures ``sendorder`` refusals carry Kraken's status for what was wrong, also when the
engine's reject text adds a detail after the Kraken error (which an exact match missed)."""

from __future__ import annotations

import time

import pytest

from gateway.venue_sim.engine import MatchingEngine
from gateway.venue_sim.futures_rest import _FuturesOrders


@pytest.fixture
def orders() -> _FuturesOrders:
    return _FuturesOrders(MatchingEngine(), "FUT", time.time)


def send(orders: _FuturesOrders, size: str, price: str, cli: str | None = None) -> str:
    p = {"orderType": ["lmt"], "side": ["buy"], "symbol": ["PF_XBTUSD"], "size": [size],
         "limitPrice": [price]}
    if cli is not None:
        p["cliOrdId"] = [cli]
    status = orders.handle("/sendorder", p)["sendStatus"]
    assert isinstance(status, dict)
    return str(status["status"])


@pytest.mark.parametrize(("size", "price", "status"), [
    ("1", "45000.3", "invalidPrice"),     # off the 0.5 tick
    ("0.00001", "45000.0", "invalidSize"),  # off the 0.0001 lot
    ("1", "45000.0", "placed"),
])
def test_off_grid_orders_are_refused_with_the_status_for_what_was_wrong(
        orders: _FuturesOrders, size: str, price: str, status: str) -> None:
    assert send(orders, size, price) == status


def test_a_client_order_id_in_use_is_refused_as_such(orders: _FuturesOrders) -> None:
    assert send(orders, "1", "40000.0", cli="dup") == "placed"
    assert send(orders, "1", "40000.0", cli="dup") == "clientOrderIdAlreadyExist"
