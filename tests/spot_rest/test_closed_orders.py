"""ClosedOrders without a cl_ord_id lists the account's closed orders, newest first, whichever
face placed them (Kraken lists the account's orders; the simulator listed its REST ones)."""

from __future__ import annotations

import base64
from decimal import Decimal

from gateway.venue_sim.accounts import Accounts, ApiAccount
from gateway.venue_sim.engine import MatchingEngine, Side
from gateway.venue_sim.spot_rest import SpotRestServer
from tests.venue_sim.sim_rest import private_call

KEY = "kc"
SECRET = base64.b64encode(b"closed orders test secret, forty bytes!!").decode()
D = Decimal


def test_closed_orders_lists_every_face_s_orders_of_the_account_only() -> None:
    engine = MatchingEngine()
    srv = SpotRestServer(engine, Accounts([ApiAccount(KEY, SECRET, "FIXGW")]))
    try:
        # Over FIX (the engine straight), then over REST; another owner's order too.
        engine.submit("FIXGW", "fix-1", "BTC/USD", Side.BUY, D("0.01"), D("1000.0"))
        placed = private_call(srv, KEY, SECRET, "AddOrder", pair="XBTUSD", type="buy",
                              ordertype="limit", price="1001.0", volume="0.01")
        rest_txid = placed["result"]["txid"][0]
        engine.submit("OTHER", "o-1", "BTC/USD", Side.BUY, D("0.01"), D("1000.0"))
        snap = engine.order_status("FIXGW", cl_ord_id="fix-1")
        assert snap is not None
        fix_txid = snap.order_id
        engine.cancel("FIXGW", "fix-1-x", "fix-1")
        engine.cancel("OTHER", "o-1-x", "o-1")
        private_call(srv, KEY, SECRET, "CancelOrder", txid=rest_txid)
        closed = private_call(srv, KEY, SECRET, "ClosedOrders")["result"]
        assert list(closed["closed"]) == [rest_txid, fix_txid] and closed["count"] == 2
    finally:
        srv.close()
