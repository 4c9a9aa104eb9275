"""``EAPI:Invalid nonce`` is refused at authentication, before the venue acts on the request
(kraken-api.md §1), so resending it with a fresh nonce cannot duplicate anything: an AddOrder
so refused is sent again at once (no lookup, no wait for its deadline, with or without a
cl_ord_id), and only once: a nonce refused twice in a row is not a race but a clock or a key
shared with another process, which more attempts cannot fix. Loopback against the simulator."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from gateway.transports.kraken_spot_rest import KrakenRestError
from gateway.venue_sim.engine import MatchingEngine
from gateway.venue_sim.spot_rest import SpotRestServer
from tests.spot_rest.test_spot_rest import clid, client, engine, server  # noqa: F401

ADD = "/0/private/AddOrder"


def test_add_order_refused_nonce_is_resent_at_once(server: SpotRestServer,  # noqa: F811
                                                   engine: MatchingEngine) -> None:  # noqa: F811
    c = client(server, timeout_s=2.0)
    cl = clid("nn")
    server.fail_next(1, 200, "EAPI:Invalid nonce", path_prefix=ADD)
    t0 = time.monotonic()
    res = c.add_order("BTC/USD", "buy", "limit", Decimal("0.01"), Decimal("30000.0"), "GTC", cl)
    assert time.monotonic() - t0 < 1.0  # not held until the 2 s deadline passed
    assert res.txid is not None and not res.recovered
    assert server.request_count(ADD) == 2
    assert server.request_count("/0/private/OpenOrders") == 0
    assert engine.submission_count("FIXGW", cl) == 1
    # Without a cl_ord_id too: nothing was placed, so a resend is safe.
    server.fail_next(1, 200, "EAPI:Invalid nonce", path_prefix=ADD)
    assert c.add_order("BTC/USD", "buy", "limit", Decimal("0.01"), Decimal("30000.0")).txid
    assert server.request_count(ADD) == 4


@pytest.mark.parametrize("method", ["add", "cancel", "amend"])
def test_a_nonce_refused_twice_is_raised(server: SpotRestServer, method: str) -> None:  # noqa: F811
    c = client(server)
    cl = clid("n2")
    txid = c.add_order("BTC/USD", "buy", "limit", Decimal("0.01"), Decimal("30000.0"), "GTC",
                       cl).txid
    path = {"add": ADD, "cancel": "/0/private/CancelOrder", "amend": "/0/private/AmendOrder"}[
        method]
    before = server.request_count(path)
    server.fail_next(5, 200, "EAPI:Invalid nonce", path_prefix=path)
    with pytest.raises(KrakenRestError) as ei:
        if method == "add":
            c.add_order("BTC/USD", "buy", "limit", Decimal("0.01"), Decimal("30000.0"), "GTC",
                        clid("n2"))
        elif method == "cancel":
            c.cancel_order(txid=txid)
        else:
            c.amend_order(txid=txid, order_qty=Decimal("0.02"))
    assert ei.value.errors == ["EAPI:Invalid nonce"]
    assert server.request_count(path) - before == 2
