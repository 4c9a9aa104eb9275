"""Spot REST reports why an order was canceled, as the engine knows it (the FIX Text and the WS
``reason`` of the cancel), not "User requested" for every canceled order."""

from __future__ import annotations

import base64
from decimal import Decimal

from gateway.venue_sim.accounts import Accounts, ApiAccount
from gateway.venue_sim.engine import MatchingEngine, Side, TimeInForce
from gateway.venue_sim.spot_rest import SpotRestServer
from tests.venue_sim.sim_rest import private_call

KEY = "kr"
SECRET = base64.b64encode(b"cancel reason test secret, forty bytes!!").decode()
D = Decimal


def test_closed_orders_give_the_engine_s_cancel_cause() -> None:
    engine = MatchingEngine()
    srv = SpotRestServer(engine, Accounts([ApiAccount(KEY, SECRET, "FIXGW")]))
    try:
        engine.submit("MAKER", "m1", "BTC/USD", Side.SELL, D("0.01"), D("45000.0"))
        # IOC for more than rests: its remainder is canceled.
        engine.submit("FIXGW", "ioc", "BTC/USD", Side.BUY, D("0.02"), D("45000.0"),
                      tif=TimeInForce.IOC)
        # FOK that cannot fill in full.
        engine.submit("FIXGW", "fok", "BTC/USD", Side.BUY, D("1"), D("45000.0"),
                      tif=TimeInForce.FOK)
        # Self-trade: the incoming order would meet our own resting one.
        engine.submit("FIXGW", "rest", "BTC/USD", Side.SELL, D("0.01"), D("46000.0"))
        engine.submit("FIXGW", "stp", "BTC/USD", Side.BUY, D("0.01"), D("46000.0"))
        # A user cancel.
        engine.submit("FIXGW", "user", "BTC/USD", Side.BUY, D("0.01"), D("40000.0"))
        engine.cancel("FIXGW", "user-x", "user")
        by_clid = {o["cl_ord_id"]: o for o in
                   private_call(srv, KEY, SECRET, "ClosedOrders")["result"]["closed"].values()}
        reasons = {clid: (o["status"], o["reason"]) for clid, o in by_clid.items()}
        assert reasons == {
            "ioc": ("canceled", "Unfilled remainder of immediate order canceled"),
            "fok": ("canceled", "Fill-or-kill order could not be filled in full"),
            "stp": ("canceled", "Self trade prevention: cancel newest"),
            "user": ("canceled", "User requested"),
        }, reasons
    finally:
        srv.close()


def test_an_amend_below_the_filled_quantity_says_so() -> None:
    engine = MatchingEngine()
    srv = SpotRestServer(engine, Accounts([ApiAccount(KEY, SECRET, "FIXGW")]))
    try:
        placed = private_call(srv, KEY, SECRET, "AddOrder", pair="XBTUSD", type="buy",
                              ordertype="limit", price="45000.0", volume="0.02",
                              cl_ord_id="amd")
        txid = placed["result"]["txid"][0]
        engine.submit("TAKER", "t1", "BTC/USD", Side.SELL, D("0.01"), D("45000.0"))
        assert private_call(srv, KEY, SECRET, "AmendOrder", txid=txid,
                            order_qty="0.005")["error"] == []
        order = private_call(srv, KEY, SECRET, "QueryOrders", txid=txid)["result"][txid]
        assert (order["status"], order["reason"]) == (
            "canceled", "Order quantity amended below the filled quantity"), order
    finally:
        srv.close()
