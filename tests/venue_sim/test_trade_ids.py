"""One trade has one id on every face: REST ``Trades``, both sides' ``TradesHistory`` and
``QueryOrders``, the WS v2 public ``trade`` channel and both sides' ``executions``, as one
trade does on Kraken (a client that joins them by id must find them joined)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from gateway.venue_sim.accounts import Accounts, ApiAccount
from gateway.venue_sim.engine import Event, MatchingEngine, TradePrinted
from gateway.venue_sim.spot_rest import SpotRestServer
from gateway.venue_sim.spot_ws import SpotWsServer
from tests.venue_sim.sim_rest import private_call

BTC = "BTC/USD"
MAKER = ApiAccount("km", base64.b64encode(b"maker secret for the trade id test").decode(),
                   "MAKER")
TAKER = ApiAccount("kt", base64.b64encode(b"taker secret for the trade id test").decode(),
                   "TAKER")


class Venue:
    def __init__(self) -> None:
        self.engine = MatchingEngine()
        self.accounts = Accounts([MAKER, TAKER])
        self.rest = SpotRestServer(self.engine, self.accounts)
        self.ws = SpotWsServer(self.engine, self.accounts, heartbeat_interval=5.0)
        self.ws.start()

    def private(self, account: ApiAccount, method: str, **params: str) -> Any:
        out = private_call(self.rest, account.api_key, account.api_secret, method, **params)
        assert out["error"] == [], out
        return out["result"]

    def public(self, method: str, query: str) -> Any:
        status, text = self.rest.handle("GET", f"/0/public/{method}?{query}", {}, "")
        assert status == 200, text
        return json.loads(text)["result"]


@pytest.fixture
def venue() -> Iterator[Venue]:
    v = Venue()
    yield v
    v.ws.stop()
    v.rest.close()


def subscribed(stack: ExitStack, url: str, params: dict[str, Any]) -> ClientConnection:
    """A WS connection (closed with ``stack``) whose subscription the face acknowledged."""
    ws = stack.enter_context(connect(url, open_timeout=5))
    ws.send(json.dumps({"method": "subscribe", "req_id": 1, "params": params}))
    while True:
        msg = json.loads(ws.recv(timeout=5))
        if msg.get("method") == "subscribe":
            assert msg["success"], msg
            return ws


def frames(ws: ClientConnection, channel: str, want: int) -> list[dict[str, Any]]:
    """The data items of ``channel`` updates until ``want`` of them carry a trade_id."""
    out: list[dict[str, Any]] = []
    while sum(1 for i in out if "trade_id" in i) < want:
        msg = json.loads(ws.recv(timeout=5))
        if msg.get("channel") == channel and msg.get("type") == "update":
            out += msg["data"]
    return [i for i in out if "trade_id" in i]


def test_one_trade_has_one_id_on_every_face(venue: Venue) -> None:
    prints: list[Event] = []
    venue.engine.add_listener(prints.extend)
    with ExitStack() as stack:
        public = subscribed(stack, venue.ws.url,
                            {"channel": "trade", "symbol": [BTC], "snapshot": False})
        execs = {a.owner: subscribed(stack, venue.ws.url, {
            "channel": "executions", "token": venue.accounts.issue_token(a.owner),
            "snap_orders": False}) for a in (MAKER, TAKER)}
        maker_txid = venue.private(MAKER, "AddOrder", pair="XBTUSD", type="sell",
                                   ordertype="limit", price="45000.0", volume="1")["txid"][0]
        taker_txid = venue.private(TAKER, "AddOrder", pair="XBTUSD", type="buy",
                                   ordertype="market", volume="0.5")["txid"][0]
        (tp,) = [ev for ev in prints if isinstance(ev, TradePrinted)]
        assert isinstance(tp.trade_id, int)

        assert venue.public("Trades", "pair=XBTUSD")["XBTUSD"][-1][6] == tp.trade_id
        for account, txid in ((MAKER, maker_txid), (TAKER, taker_txid)):
            history = venue.private(account, "TradesHistory")["trades"]
            assert list(history) == [tp.trade_txid]
            assert history[tp.trade_txid]["trade_id"] == tp.trade_id
            assert history[tp.trade_txid]["ordertxid"] == txid
            order = venue.private(account, "QueryOrders", txid=txid, trades="true")[txid]
            assert order["trades"] == [tp.trade_txid]

        assert [t["trade_id"] for t in frames(public, "trade", 1)] == [tp.trade_id]
        for owner, ws in execs.items():
            assert [i["trade_id"] for i in frames(ws, "executions", 1)] == [tp.trade_id], owner
