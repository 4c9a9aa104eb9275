"""Futures order entry with off-the-shelf clients (python-kraken-sdk ``kraken.futures``, ccxt
``krakenfutures``), changed only in their base URL, against the simulator's futures REST face
serving a matching engine over loopback.

The face is built here around its own engine (seeded by the synthetic flow, as the simulator
process seeds its books), so that each test reads the engine directly; the simulator process
wires the same face to its engine (one round trip in ``test_kraken_clients.py``). Every test
checks the engine:
the order rests at its price, leaves on cancel, trades at the book's price, and is counted once.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from gateway.venue_sim.engine import MatchingEngine
from gateway.venue_sim.flow import SyntheticFlow
from gateway.venue_sim.futures_rest import FuturesRestServer

pytest.importorskip("kraken", reason="python-kraken-sdk not installed (dev extra)")
ccxt = pytest.importorskip("ccxt", reason="ccxt not installed (dev extra)")

OWNER = "FUTURES"
SYMBOL = "PF_ARBUSD"


@dataclass
class Venue:
    engine: MatchingEngine
    server: FuturesRestServer
    key: str
    secret: str

    @property
    def url(self) -> str:
        return self.server.base_url

    def resting(self, side: str, price: str) -> Decimal:
        bids, asks = self.engine.levels(SYMBOL)
        levels = bids if side == "buy" else asks
        return sum((q for p, q in levels if p == Decimal(price)), Decimal(0))

    def count(self, cl_ord_id: str) -> int:
        return self.engine.submission_count(OWNER, cl_ord_id)


def _venue() -> Iterator[Venue]:
    key = "FUT" + secrets.token_hex(6)
    secret = base64.b64encode(secrets.token_bytes(64)).decode()
    engine = MatchingEngine(seed=11)
    SyntheticFlow(engine, seed=11, symbols=engine.symbols, rate_hz=1.0).seed_books()
    server = FuturesRestServer("default", api_key=key, api_secret=secret, engine=engine,
                               owner=OWNER)
    server.start()
    try:
        yield Venue(engine, server, key, secret)
    finally:
        server.close()


@pytest.fixture(scope="module")
def venue() -> Iterator[Venue]:
    yield from _venue()


@pytest.fixture
def fresh_venue() -> Iterator[Venue]:
    """A venue of its own, for tests whose assertions depend on every fill the account made."""
    yield from _venue()


def _ccxt(v: Venue) -> Any:
    kf = ccxt.krakenfutures({"apiKey": v.key, "secret": v.secret, "enableRateLimit": False})
    for key, url in list(kf.urls["api"].items()):
        if isinstance(url, str):
            kf.urls["api"][key] = url.replace("https://futures.kraken.com", v.url)
    return kf


# -- python-kraken-sdk ---------------------------------------------------------------------------


def test_sdk_limit_order_status_cancel(venue: Venue) -> None:
    from kraken.futures import Trade, User

    trade = Trade(key=venue.key, secret=venue.secret, url=venue.url)
    user = User(key=venue.key, secret=venue.secret, url=venue.url)
    cli = str(uuid.uuid4())
    sent = trade.create_order(orderType="lmt", side="buy", size=17, symbol=SYMBOL,
                              limitPrice=0.0901, cliOrdId=cli)
    status = sent["sendStatus"]
    assert (sent["result"], status["status"], status["cliOrdId"]) == ("success", "placed", cli)
    assert [ev["type"] for ev in status["orderEvents"]] == ["PLACE"]
    oid = status["order_id"]
    assert str(uuid.UUID(oid)) == oid  # Kraken Futures order ids are UUIDs
    assert venue.resting("buy", "0.0901") == 17 and venue.count(cli) == 1

    open_orders = {o["order_id"]: o for o in user.get_open_orders()["openOrders"]}
    assert open_orders[oid]["unfilledSize"] == 17 and open_orders[oid]["status"] == "untouched"
    (entry,) = trade.get_orders_status(orderIds=[oid])["orders"]
    assert (entry["status"], entry["order"]["cliOrdId"]) == ("ENTERED_BOOK", cli)

    cancelled = trade.cancel_order(order_id=oid)["cancelStatus"]
    assert (cancelled["status"], cancelled["order_id"]) == ("cancelled", oid)
    assert venue.resting("buy", "0.0901") == 0
    (entry,) = trade.get_orders_status(cliOrdIds=[cli])["orders"]
    assert entry["status"] == "CANCELLED"
    assert trade.cancel_order(order_id=oid)["cancelStatus"]["status"] == "notFound"
    assert venue.count(cli) == 1


def test_sdk_orderbook_is_the_engine_book(venue: Venue) -> None:
    from kraken.futures import Market

    book = Market(url=venue.url).get_orderbook(symbol=SYMBOL)["orderBook"]
    bids, asks = venue.engine.levels(SYMBOL)
    assert [(Decimal(str(p)), Decimal(str(q))) for p, q in book["bids"]] == bids
    assert [(Decimal(str(p)), Decimal(str(q))) for p, q in book["asks"]] == asks


def test_sdk_market_order_trades_at_the_best_ask(venue: Venue) -> None:
    from kraken.futures import Trade

    best_ask = venue.engine.top_of_book(SYMBOL)[1]
    assert best_ask is not None
    before = len(venue.engine.last_trades(SYMBOL, 1000))
    sent = Trade(key=venue.key, secret=venue.secret, url=venue.url).create_order(
        orderType="mkt", side="buy", size=3, symbol=SYMBOL)["sendStatus"]
    assert sent["status"] == "placed"
    (execution,) = sent["orderEvents"]
    assert execution["type"] == "EXECUTION" and execution["amount"] == 3
    assert Decimal(str(execution["price"])) == best_ask
    trades = venue.engine.last_trades(SYMBOL, 1000)
    assert len(trades) == before + 1 and trades[-1].price == best_ask


def test_sdk_wrong_secret_is_refused(venue: Venue) -> None:
    """The face answers a bad ``Authent`` as the live venue does, ``authenticationError``
    inside an HTTP 200: the SDK raises its own ``KrakenAuthenticationError`` for it (it does
    only for an error body in a 200), as it did against the live venue (its issue #303)."""
    from kraken.exceptions import KrakenAuthenticationError
    from kraken.futures import Trade

    wrong = base64.b64encode(secrets.token_bytes(64)).decode()
    cli = str(uuid.uuid4())
    with pytest.raises(KrakenAuthenticationError):
        Trade(key=venue.key, secret=wrong, url=venue.url).create_order(
            orderType="lmt", side="buy", size=1, symbol=SYMBOL, limitPrice=0.05, cliOrdId=cli)
    assert venue.count(cli) == 0


# -- ccxt krakenfutures --------------------------------------------------------------------------


def test_ccxt_limit_order_fetch_cancel(venue: Venue) -> None:
    kf = _ccxt(venue)
    cli = str(uuid.uuid4())
    order = kf.create_order("ARB/USD:USD", "limit", "sell", 9, 0.1302, {"clientOrderId": cli})
    assert (order["status"], order["clientOrderId"]) == ("open", cli)
    assert venue.resting("sell", "0.1302") == 9 and venue.count(cli) == 1
    fetched = kf.fetch_order(order["id"])
    assert (fetched["status"], fetched["amount"], fetched["symbol"]) == ("open", 9, "ARB/USD:USD")
    assert order["id"] in {o["id"] for o in kf.fetch_open_orders("ARB/USD:USD")}
    assert kf.cancel_order(order["id"])["status"] == "canceled"
    assert kf.fetch_order(order["id"])["status"] == "canceled"
    assert venue.resting("sell", "0.1302") == 0 and venue.count(cli) == 1
    with pytest.raises(ccxt.OrderNotFound):
        kf.cancel_order(order["id"])


def test_ccxt_order_book_and_market_order(venue: Venue) -> None:
    kf = _ccxt(venue)
    book = kf.fetch_order_book("ARB/USD:USD")
    bids, asks = venue.engine.levels(SYMBOL)
    assert [(Decimal(str(p)), Decimal(str(q))) for p, q in book["bids"]] == bids
    assert [(Decimal(str(p)), Decimal(str(q))) for p, q in book["asks"]] == asks
    filled = kf.create_order("ARB/USD:USD", "market", "sell", 4)
    assert (filled["status"], filled["filled"]) == ("closed", 4)
    assert Decimal(str(filled["average"])) == bids[0][0]


def test_ccxt_post_only_that_would_cross_is_refused(venue: Venue) -> None:
    kf = _ccxt(venue)
    best_ask = venue.engine.top_of_book(SYMBOL)[1]
    assert best_ask is not None
    cli = str(uuid.uuid4())
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        kf.create_order("ARB/USD:USD", "limit", "buy", 5, float(best_ask),
                        {"postOnly": True, "clientOrderId": cli})
    assert venue.count(cli) == 0 and venue.engine.top_of_book(SYMBOL)[1] == best_ask


def test_fills_and_positions_follow_the_account_trades(fresh_venue: Venue) -> None:
    """ccxt ``fetch_my_trades``/``fetch_positions`` and the SDK's ``Trade.get_fills``/
    ``get_open_positions`` report the account's own fills and its net position: adding moves
    the entry price, reducing keeps it, flipping starts the new side at the fill price."""
    from kraken.futures import Trade, User

    v = fresh_venue
    kf = _ccxt(v)
    trade = Trade(key=v.key, secret=v.secret, url=v.url)
    user = User(key=v.key, secret=v.secret, url=v.url)
    ask = v.engine.top_of_book(SYMBOL)[1]
    assert ask is not None
    bought = kf.create_order("ARB/USD:USD", "market", "buy", 10)
    (position,) = kf.fetch_positions(["ARB/USD:USD"])
    assert (position["side"], position["contracts"]) == ("long", 10)
    assert Decimal(str(position["entryPrice"])) == ask
    (mine,) = kf.fetch_my_trades("ARB/USD:USD")
    assert (mine["order"], mine["side"], mine["amount"]) == (bought["id"], "buy", 10)
    assert Decimal(str(mine["price"])) == ask

    trade.create_order(orderType="mkt", side="sell", size=4, symbol=SYMBOL)
    (pos,) = user.get_open_positions()["openPositions"]
    assert (pos["side"], pos["size"], Decimal(str(pos["price"]))) == ("long", 6, ask)
    bid = v.engine.top_of_book(SYMBOL)[0]
    assert bid is not None
    trade.create_order(orderType="mkt", side="sell", size=10, symbol=SYMBOL)
    (pos,) = user.get_open_positions()["openPositions"]
    assert (pos["side"], pos["size"], Decimal(str(pos["price"]))) == ("short", 4, bid)
    fills = trade.get_fills()["fills"]
    assert [(f["side"], f["size"]) for f in fills] == [("sell", 10), ("sell", 4), ("buy", 10)]
    assert all(f["fillType"] == "taker" for f in fills)


def test_sdk_cancel_all_orders(fresh_venue: Venue) -> None:
    from kraken.futures import Trade

    v = fresh_venue
    trade = Trade(key=v.key, secret=v.secret, url=v.url)
    ids = {trade.create_order(orderType="lmt", side="buy", size=2, symbol=SYMBOL,
                              limitPrice=price)["sendStatus"]["order_id"]
           for price in ("0.0801", "0.0802")}
    status = trade.cancel_all_orders(symbol=SYMBOL)["cancelStatus"]
    assert status["status"] == "cancelled"
    assert {o["order_id"] for o in status["cancelledOrders"]} == ids
    assert v.resting("buy", "0.0801") == 0 and v.resting("buy", "0.0802") == 0
    assert trade.cancel_all_orders()["cancelStatus"]["status"] == "noOrdersToCancel"
