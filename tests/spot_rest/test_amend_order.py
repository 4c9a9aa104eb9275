"""Kraken spot REST ``AmendOrder`` (the REST side of a FIX cancel/replace while failed over):
the gateway's client against the simulator's face over a real MatchingEngine on loopback.
In place, as Kraken documents it: same txid, same cl_ord_id, new quantity/price; refused for a
closed order; an ambiguous failure is never resent (a second amend is a second submission)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.transports.kraken_spot_rest import KrakenRestError
from gateway.venue_sim.engine import MatchingEngine, Side
from gateway.venue_sim.spot_rest import SpotRestServer
from tests.spot_rest.test_spot_rest import clid, client, engine, server  # noqa: F401


def test_amend_in_place_keeps_txid_and_cl_ord_id(server: SpotRestServer,  # noqa: F811
                                                 engine: MatchingEngine) -> None:  # noqa: F811
    c = client(server)
    cl = clid("amd")
    txid = c.add_order("BTC/USD", "buy", "limit", Decimal("0.5"), Decimal("40000"), "GTC",
                       cl).txid
    assert txid is not None
    amend_id = c.amend_order(txid=txid, order_qty=Decimal("0.3"), limit_price=Decimal("40100"))
    assert amend_id
    o = c.query_orders([txid])[txid]
    assert (o.txid, o.cl_ord_id, o.status) == (txid, cl, "open")
    assert o.volume == Decimal("0.3") and o.price == Decimal("40100.0")
    # By cl_ord_id, quantity only: the price stays.
    c.amend_order(cl_ord_id=cl, order_qty=Decimal("0.2"))
    o = c.query_orders([txid])[txid]
    assert o.volume == Decimal("0.2") and o.price == Decimal("40100.0")
    # The engine counts each amend as one more submission of the order's ClOrdID.
    assert engine.submission_count("FIXGW", cl) == 3
    # Fills after the amend are against the amended order.
    engine.submit("MAKER", "m1", "BTC/USD", Side.SELL, Decimal("0.2"), Decimal("40100"))
    o = c.query_orders([txid])[txid]
    assert o.status == "closed" and o.vol_exec == Decimal("0.2")
    with pytest.raises(KrakenRestError) as ei:
        c.amend_order(txid=txid, limit_price=Decimal("40200"))
    assert ei.value.errors[0].startswith("EOrder:Unknown order")
    assert ei.value.decision.ord_rej_reason == "5"


def test_amend_refusals_and_no_resend_after_a_timeout(server: SpotRestServer) -> None:  # noqa: F811
    c = client(server)
    txid = c.add_order("BTC/USD", "buy", "limit", Decimal("0.5"), Decimal("40000"), "GTC",
                       clid("amd")).txid
    assert txid is not None
    with pytest.raises(KrakenRestError) as ei:
        c.amend_order(txid=txid, limit_price=Decimal("40000.05"))  # off the 0.1 tick
    assert ei.value.errors[0].startswith("EOrder:Invalid price")
    with pytest.raises(ValueError):
        c.amend_order(txid=txid)
    # Busy (answered before the engine): retried, lands once.
    server.fail_next(1, 200, "EService:Busy", path_prefix="/0/private/AmendOrder")
    before = server.request_count("/0/private/AmendOrder")
    c.amend_order(txid=txid, order_qty=Decimal("0.4"))
    assert server.request_count("/0/private/AmendOrder") - before == 2
    # A 503 (ambiguous: the venue may have acted) is raised, not resent.
    server.fail_next(1, 503, "EService:Unavailable", path_prefix="/0/private/AmendOrder")
    before = server.request_count("/0/private/AmendOrder")
    with pytest.raises(KrakenRestError) as ei:
        c.amend_order(txid=txid, order_qty=Decimal("0.3"))
    assert ei.value.ambiguous
    assert server.request_count("/0/private/AmendOrder") - before == 1


def test_amend_below_the_filled_quantity_cancels_the_remainder(
        server: SpotRestServer, engine: MatchingEngine) -> None:  # noqa: F811
    """Kraken: "If an amend request will reduce the order quantity below the existing filled
    quantity, the remaining quantity will be cancelled." Not closed as filled."""
    c = client(server)
    txid = c.add_order("BTC/USD", "buy", "limit", Decimal("1"), Decimal("40000"), "GTC",
                       clid("amd")).txid
    assert txid is not None
    engine.submit("MAKER", "m-part", "BTC/USD", Side.SELL, Decimal("0.3"), Decimal("40000"))
    assert c.amend_order(txid=txid, order_qty=Decimal("0.2"))
    o = c.query_orders([txid])[txid]
    assert (o.status, o.vol_exec) == ("canceled", Decimal("0.3"))
    assert engine.open_orders("FIXGW") == [] and engine.levels("BTC/USD") == ([], [])


def test_amend_is_charged_to_the_per_pair_counter_model(server: SpotRestServer) -> None:  # noqa: F811
    """kraken-api.md §7: an amend costs +1 fixed plus +3 when the order is under 5 s old, on
    the per-pair engine counter the venue shares with AddOrder; a model that skips amends lets
    the client send orders the venue refuses with EOrder:Rate limit exceeded."""
    c = client(server)
    txid = c.add_order("ETH/USD", "buy", "limit", Decimal("0.01"), Decimal("2000.00"), "GTC",
                       clid("amr")).txid
    assert txid is not None
    c.amend_order(txid=txid, limit_price=Decimal("2000.01"))
    c.amend_order(txid=txid, limit_price=Decimal("2000.02"))
    venue = server.engine_counter("FIXGW", "ETH/USD")
    assert 8.5 < venue <= 9.0  # +1 add, 2 x (+1 +3) amends, minus a little decay
    assert abs(c.pair_counter("ETH/USD") - venue) < 0.5
