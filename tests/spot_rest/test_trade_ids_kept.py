"""The spot REST face keeps the trade ids QueryOrders reports (trades=true) for the accounts'
orders only, and for as many orders as the engine keeps closed ones: the synthetic flow trades
all day and its fills must not grow the simulator's memory."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

from gateway.venue_sim.accounts import Accounts, ApiAccount
from gateway.venue_sim.engine import MatchingEngine, Side, TradePrinted
from gateway.venue_sim.flow import SyntheticFlow
from gateway.venue_sim.spot_rest import SpotRestServer
from tests.venue_sim.sim_rest import private_call

D = Decimal
BTC = "BTC/USD"
KEY = "k"
SECRET = base64.b64encode(b"trade ids kept test secret, forty bytes+").decode()
def rest(srv: SpotRestServer, method: str, **params: str) -> dict[str, Any]:
    return private_call(srv, KEY, SECRET, method, **params)


def test_the_synthetic_flow_leaves_no_trade_ids_behind() -> None:
    engine = MatchingEngine(seed=7)
    srv = SpotRestServer(engine, Accounts([ApiAccount(KEY, SECRET, "FIXGW")]))
    try:
        flow = SyntheticFlow(engine, seed=7, symbols=(BTC,))
        flow.seed_books()
        traded = 0
        for _ in range(300):
            traded += sum(1 for ev in flow.step() if isinstance(ev, TradePrinted))
        assert traded > 10
        assert srv._trades == {}
    finally:
        srv.close()


def test_an_accounts_trade_ids_are_kept_for_as_many_orders_as_the_engine_keeps() -> None:
    engine = MatchingEngine(closed_order_retention=3)
    srv = SpotRestServer(engine, Accounts([ApiAccount(KEY, SECRET, "FIXGW")]))
    try:
        txids = []
        for i in range(5):
            engine.submit("SIM-MAKER", f"m{i}", BTC, Side.SELL, D("0.01"), D("45000.0"))
            placed = rest(srv, "AddOrder", pair="XBTUSD", type="buy", ordertype="market",
                          volume="0.01")
            txids += placed["result"]["txid"]
        assert len(srv._trades) == 3
        last = rest(srv, "QueryOrders", txid=txids[-1], trades="true")["result"][txids[-1]]
        assert len(last["trades"]) == 1
    finally:
        srv.close()
