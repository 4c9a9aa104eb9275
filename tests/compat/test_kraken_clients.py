"""Off-the-shelf Kraken clients against the simulator process, changed only in their base URLs:
python-kraken-sdk (spot REST, spot WS v2 with its ``SpotOrderBookClient``, futures REST) and
ccxt (``kraken``, ``krakenfutures``, and ``ccxt.pro`` ``kraken`` for ``watch_order_book``).

This is the "rehearse your bot against our UAT" promise of issue 6: every test drives a real
client over loopback and then checks the effect on the venue through the simulator's control
port (``submission_counts``, ``levels``), not just that the client parsed an answer.

The simulator process's futures face trades on its one matching engine: one order-entry round
trip here proves the wiring; ``test_kraken_futures_orders.py`` covers futures order entry in
depth against the same face built in-process.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.procs import Credentials, SimProcess

pytest.importorskip("kraken", reason="python-kraken-sdk not installed (dev extra)")
ccxt = pytest.importorskip("ccxt", reason="ccxt not installed (dev extra)")

OWNER = "FIXGW"  # the simulator's test API key trades as its first FIX client


def _start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimProcess, Credentials]]:
    creds = Credentials()
    s = SimProcess(tmp_path_factory.mktemp("compat") / "sim", creds, seed_books=True)
    try:
        yield s, creds
    finally:
        s.stop()


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimProcess, Credentials]]:
    """The simulator the python-kraken-sdk tests share."""
    yield from _start(tmp_path_factory)


@pytest.fixture(scope="module")
def ccxt_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimProcess, Credentials]]:
    """A second simulator (so a second API key) for ccxt: nonces are per key, as on Kraken, and
    python-kraken-sdk's (``time * 1e8``) are far above ccxt's, so once the SDK has used a key
    every ccxt private call would rightly answer ``EAPI:Invalid nonce``."""
    yield from _start(tmp_path_factory)


def _spot_url(s: SimProcess) -> str:
    return f"http://127.0.0.1:{s.spot_rest_port}"


def _ws_url(s: SimProcess) -> str:
    return f"ws://127.0.0.1:{s.spot_ws_port}"


def _fut_url(s: SimProcess) -> str:
    return f"http://127.0.0.1:{s.futures_rest_port}"


def _clid() -> str:
    """A fresh client order id (Kraken's 32-hex short UUID form)."""
    return uuid.uuid4().hex


def _count(s: SimProcess, cl_ord_id: str, owner: str = OWNER) -> int:
    counts = s.control(cmd="submission_counts")["counts"]
    assert isinstance(counts, dict)
    return int(counts.get(f"{owner} {cl_ord_id}", 0))


def _levels(s: SimProcess, symbol: str, depth: int) -> dict[str, list[tuple[Decimal, Decimal]]]:
    raw = s.control(cmd="levels", symbol=symbol, depth=depth)
    return {side: [(Decimal(p), Decimal(q)) for p, q in raw[side]]  # type: ignore[union-attr]
            for side in ("bids", "asks")}


def _resting(s: SimProcess, symbol: str, price: str) -> Decimal:
    """Aggregated bid size the engine holds at ``price`` (0 when no level)."""
    bids = _levels(s, symbol, 1000)["bids"]
    return sum((q for p, q in bids if p == Decimal(price)), Decimal(0))


def _ccxt_spot(s: SimProcess, creds: Credentials) -> Any:
    k = ccxt.kraken({"apiKey": creds.api_key, "secret": creds.api_secret,
                     "enableRateLimit": False})
    k.urls["api"]["public"] = _spot_url(s)
    k.urls["api"]["private"] = _spot_url(s)
    return k


def _ccxt_futures(s: SimProcess) -> Any:
    kf = ccxt.krakenfutures({"enableRateLimit": False})
    for key, url in list(kf.urls["api"].items()):
        if isinstance(url, str):
            kf.urls["api"][key] = url.replace("https://futures.kraken.com", _fut_url(s))
    return kf


# -- python-kraken-sdk, spot REST -----------------------------------------------------------------


def test_sdk_spot_limit_order_query_cancel(sim: tuple[SimProcess, Credentials]) -> None:
    from kraken.spot import Market, Trade, User

    s, creds = sim
    assert Market(url=_spot_url(s)).get_system_status()["status"] == "online"
    trade = Trade(key=creds.api_key, secret=creds.api_secret, url=_spot_url(s))
    user = User(key=creds.api_key, secret=creds.api_secret, url=_spot_url(s))
    clid = _clid()
    placed = trade.create_order(ordertype="limit", side="buy", pair="XBTUSD", volume="0.0123",
                                price="30001.0", cl_ord_id=clid)
    txid = placed["txid"][0]
    assert _count(s, clid) == 1
    assert _resting(s, "BTC/USD", "30001.0") == Decimal("0.0123")
    info = user.get_orders_info(txid=txid)[txid]
    assert (info["status"], info["vol"], info["cl_ord_id"]) == ("open", "0.01230000", clid)
    assert txid in user.get_open_orders()["open"]
    assert trade.cancel_order(txid=txid)["count"] == 1
    assert _resting(s, "BTC/USD", "30001.0") == 0
    assert user.get_closed_orders()["closed"][txid]["status"] == "canceled"
    assert _count(s, clid) == 1


def test_sdk_spot_userref_groups_orders(sim: tuple[SimProcess, Credentials]) -> None:
    """``userref`` tags orders: OpenOrders filters by it and CancelOrder with the userref as
    ``txid`` cancels every open order carrying it."""
    from kraken.spot import Trade, User

    s, creds = sim
    trade = Trade(key=creds.api_key, secret=creds.api_secret, url=_spot_url(s))
    user = User(key=creds.api_key, secret=creds.api_secret, url=_spot_url(s))
    ref = int(time.time()) % 1_000_000
    tagged = {trade.create_order(ordertype="limit", side="buy", pair="XBTUSD", volume="0.001",
                                 price=price, userref=ref)["txid"][0]
              for price in ("30010.0", "30011.0")}
    other = trade.create_order(ordertype="limit", side="buy", pair="XBTUSD", volume="0.001",
                               price="30012.0")["txid"][0]
    opened = user.get_open_orders(userref=ref)["open"]
    assert set(opened) == tagged and all(o["userref"] == ref for o in opened.values())
    assert trade.cancel_order(txid=ref)["count"] == 2
    assert _resting(s, "BTC/USD", "30010.0") == 0 and _resting(s, "BTC/USD", "30011.0") == 0
    assert _resting(s, "BTC/USD", "30012.0") == Decimal("0.001")
    assert trade.cancel_order(txid=other)["count"] == 1


def test_sdk_spot_ticker_and_depth_follow_the_engine(sim: tuple[SimProcess, Credentials]) -> None:
    from kraken.spot import Market, Trade

    s, creds = sim
    market = Market(url=_spot_url(s))
    best_ask = _levels(s, "ETH/USD", 1)["asks"][0]
    Trade(key=creds.api_key, secret=creds.api_secret, url=_spot_url(s)).create_order(
        ordertype="market", side="buy", pair="ETHUSD", volume="0.01")
    ticker = market.get_ticker(pair="ETHUSD")["ETHUSD"]
    # The market buy printed at the best ask: that is the ticker's last trade now.
    assert ticker["c"] == [f"{best_ask[0]:.2f}", "0.01000000"]
    assert ticker["t"][1] >= 1 and Decimal(ticker["v"][1]) >= Decimal("0.01")
    levels = _levels(s, "ETH/USD", 5)
    assert Decimal(ticker["b"][0]) == levels["bids"][0][0]
    assert Decimal(ticker["a"][0]) == levels["asks"][0][0]
    assert Decimal(ticker["a"][2]) == levels["asks"][0][1]
    book = market.get_order_book(pair="ETHUSD", count=5)["ETHUSD"]
    assert [(Decimal(p), Decimal(q)) for p, q, _ in book["bids"]] == levels["bids"]
    assert [(Decimal(p), Decimal(q)) for p, q, _ in book["asks"]] == levels["asks"]
    trades = market.get_recent_trades(pair="ETHUSD")["ETHUSD"]
    assert trades[-1][:2] == [f"{best_ask[0]:.2f}", "0.01000000"] and trades[-1][3] == "b"
    candle = market.get_ohlc(pair="ETHUSD", interval=1)["ETHUSD"][-1]
    assert candle[4] == f"{best_ask[0]:.2f}" and Decimal(candle[6]) >= Decimal("0.01")


def test_sdk_spot_balance_and_trades_history(sim: tuple[SimProcess, Credentials]) -> None:
    """A market sell moves the demo wallet by exactly the fill and shows in TradesHistory."""
    from kraken.spot import Trade, User

    s, creds = sim
    user = User(key=creds.api_key, secret=creds.api_secret, url=_spot_url(s))
    before = {k: Decimal(v) for k, v in user.get_account_balance().items()}
    best_bid = _levels(s, "BTC/USD", 1)["bids"][0][0]
    txid = Trade(key=creds.api_key, secret=creds.api_secret, url=_spot_url(s)).create_order(
        ordertype="market", side="sell", pair="XBTUSD", volume="0.002")["txid"][0]
    after = {k: Decimal(v) for k, v in user.get_account_balance().items()}
    assert after["XBT"] == before["XBT"] - Decimal("0.002")
    assert after["USD"] == before["USD"] + Decimal("0.002") * best_bid
    mine = [t for t in user.get_trades_history()["trades"].values() if t["ordertxid"] == txid]
    assert [(t["type"], t["vol"], Decimal(t["price"])) for t in mine] == [
        ("sell", "0.00200000", best_bid)]


def test_sdk_spot_assets(sim: tuple[SimProcess, Credentials]) -> None:
    from kraken.spot import Market

    s, _ = sim
    assets = Market(url=_spot_url(s)).get_assets()
    assert {"XBT", "ETH", "ARB", "USD"} <= set(assets)
    assert assets["XBT"]["altname"] == "XBT" and assets["XBT"]["status"] == "enabled"


# -- python-kraken-sdk, spot WS v2 ----------------------------------------------------------------


def test_sdk_order_book_client_streams_the_engine_book(
        sim: tuple[SimProcess, Credentials]) -> None:
    """``SpotOrderBookClient`` keeps its own book from our frames and checks every update's CRC32
    against it (resubscribing on a mismatch); after a burst of engine activity its book must be
    valid and equal to the simulator's top 10 levels."""
    from kraken.spot import Market, SpotOrderBookClient

    s, _ = sim
    messages: list[dict[str, Any]] = []

    class Book(SpotOrderBookClient):  # type: ignore[misc]
        WS_URL = _ws_url(s)  # the SDK appends /v2

        async def on_book_update(self, pair: str, message: dict[str, Any]) -> None:
            messages.append(message)

    async def run() -> dict[str, Any]:
        saved = Market.URL
        Market.URL = _spot_url(s)  # the book client reads pair decimals from REST AssetPairs
        client = Book(depth=10)
        try:
            await client.start()
            await client.add_book(pairs=["BTC/USD"])
            await _wait_for(lambda: bool(messages))
            for _ in range(10):
                await asyncio.to_thread(s.control, cmd="flow", steps=5)
            await asyncio.sleep(1.0)
            book = client.get("BTC/USD")
            assert book is not None
            return book
        finally:
            Market.URL = saved
            await client.close()

    book = asyncio.run(run())
    updates = [m for m in messages if m.get("type") == "update"]
    assert len(updates) >= 5, "the flow moved the book, so updates must have been streamed"
    assert not [m for m in messages if "error" in m], "checksum mismatch reported by the SDK"
    assert book["valid"] is True
    levels = _levels(s, "BTC/USD", 10)
    assert [(Decimal(p), Decimal(q)) for p, (q, _) in book["bid"].items()] == levels["bids"]
    assert [(Decimal(p), Decimal(q)) for p, (q, _) in book["ask"].items()] == levels["asks"]


def test_sdk_ws_private_executions_add_and_cancel(sim: tuple[SimProcess, Credentials]) -> None:
    """The SDK fetches a token over REST GetWebSocketsToken, subscribes to ``executions`` and
    places then cancels an order with ``add_order``/``cancel_order`` on the private socket."""
    from kraken.spot import SpotWSClient

    s, creds = sim
    clid = _clid()
    received: list[dict[str, Any]] = []

    class Client(SpotWSClient):  # type: ignore[misc]
        async def on_message(self, message: dict[str, Any]) -> None:
            received.append(message)

    def answer(method: str) -> dict[str, Any] | None:
        return next((m for m in received if m.get("method") == method), None)

    def execution(exec_type: str) -> dict[str, Any] | None:
        return next((d for m in received if m.get("channel") == "executions"
                     for d in m.get("data", []) if d.get("cl_ord_id") == clid
                     and d.get("exec_type") == exec_type), None)

    async def run() -> None:
        client = Client(key=creds.api_key, secret=creds.api_secret, rest_url=_spot_url(s),
                        ws_url=_ws_url(s), auth_ws_url=_ws_url(s), no_public=True)
        try:
            await client.start()
            await client.subscribe(params={"channel": "executions"})
            await _wait_for(lambda: any(m.get("channel") == "executions" for m in received))
            await client.send_message({"method": "add_order", "params": {
                "order_type": "limit", "side": "buy", "order_qty": 0.0042,
                "limit_price": 30002.0, "symbol": "BTC/USD", "cl_ord_id": clid}})
            await _wait_for(lambda: execution("new") is not None)
            assert _resting(s, "BTC/USD", "30002.0") == Decimal("0.0042")
            added = answer("add_order")
            assert added is not None and added["success"] is True
            await client.send_message({"method": "cancel_order", "params": {
                "order_id": [added["result"]["order_id"]]}})
            await _wait_for(lambda: execution("canceled") is not None)
        finally:
            await client.close()

    asyncio.run(run())
    assert _count(s, clid) == 1
    assert _resting(s, "BTC/USD", "30002.0") == 0
    new = execution("new")
    assert new is not None and new["order_status"] == "new" and new["symbol"] == "BTC/USD"


def test_sdk_ws_ticker_follows_trades(sim: tuple[SimProcess, Credentials]) -> None:
    """A public ``ticker`` subscription: snapshot of the top of book, then an update on the
    trade a REST market order makes, carrying that trade's price as ``last``."""
    from kraken.spot import SpotWSClient, Trade

    s, creds = sim
    received: list[dict[str, Any]] = []

    class Client(SpotWSClient):  # type: ignore[misc]
        async def on_message(self, message: dict[str, Any]) -> None:
            if message.get("channel") == "ticker":
                received.append(message)

    async def run() -> Decimal:
        client = Client(ws_url=_ws_url(s))
        try:
            await client.start()
            await client.subscribe(params={"channel": "ticker", "symbol": ["ARB/USD"]})
            await _wait_for(lambda: bool(received))
            best_ask = _levels(s, "ARB/USD", 1)["asks"][0][0]
            await asyncio.to_thread(
                Trade(key=creds.api_key, secret=creds.api_secret, url=_spot_url(s)).create_order,
                ordertype="market", side="buy", pair="ARBUSD", volume="7")
            await _wait_for(lambda: any(m["type"] == "update" for m in received))
            await asyncio.sleep(0.3)
            return best_ask
        finally:
            await client.close()

    best_ask = asyncio.run(run())
    assert received[0]["type"] == "snapshot"
    update = next(m for m in received if m["type"] == "update")["data"][0]
    assert update["symbol"] == "ARB/USD" and Decimal(str(update["last"])) == best_ask
    assert Decimal(str(update["volume"])) >= 7
    levels = _levels(s, "ARB/USD", 1)
    assert Decimal(str(update["bid"])) == levels["bids"][0][0]
    assert Decimal(str(update["ask"])) == levels["asks"][0][0]


async def _wait_for(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


# -- python-kraken-sdk, futures REST --------------------------------------------------------------


def test_sdk_futures_tickers(sim: tuple[SimProcess, Credentials]) -> None:
    from kraken.futures import Market

    s, _ = sim
    tickers = Market(url=_fut_url(s)).get_tickers()
    assert tickers["result"] == "success"
    assert "PF_ARBUSD" in {t["symbol"] for t in tickers["tickers"]}


def test_sdk_futures_funding_v4(sim: tuple[SimProcess, Credentials]) -> None:
    """v4 ``historicalfundingrates`` is the scenario's history, the same as v3's."""
    import requests
    from kraken.futures import Market

    s, _ = sim
    rates = Market(url=_fut_url(s)).get_historical_funding_rates(symbol="PF_ARBUSD")["rates"]
    v3 = requests.get(f"{_fut_url(s)}/derivatives/api/v3/historical-funding-rates",
                      params={"symbol": "PF_ARBUSD"}, timeout=10).json()["rates"]
    assert rates and rates == v3
    assert [r["timestamp"] for r in rates] == sorted(r["timestamp"] for r in rates)


# -- ccxt ----------------------------------------------------------------------------------------


def test_sdk_futures_order_rests_in_the_sim_process_engine_and_cancels(
        sim: tuple[SimProcess, Credentials]) -> None:
    from kraken.futures import Trade

    s, creds = sim
    trade = Trade(key=creds.api_key, secret=creds.api_secret, url=_fut_url(s))
    cli = str(uuid.uuid4())
    sent = trade.create_order(orderType="lmt", side="buy", size=17, symbol="PF_ARBUSD",
                              limitPrice=0.0901, cliOrdId=cli)["sendStatus"]
    assert sent["status"] == "placed"
    assert _resting(s, "PF_ARBUSD", "0.0901") == 17
    cancelled = trade.cancel_order(order_id=sent["order_id"])["cancelStatus"]
    assert cancelled["status"] == "cancelled"
    assert _resting(s, "PF_ARBUSD", "0.0901") == 0
    assert _count(s, cli, owner="FUTURES") == 1


def test_ccxt_kraken_limit_order_query_cancel(ccxt_sim: tuple[SimProcess, Credentials]) -> None:
    s, creds = ccxt_sim
    k = _ccxt_spot(s, creds)
    clid = _clid()
    order = k.create_order("BTC/USD", "limit", "buy", 0.0077, 30003,
                           {"clientOrderId": clid})
    assert _count(s, clid) == 1
    assert _resting(s, "BTC/USD", "30003.0") == Decimal("0.0077")
    fetched = k.fetch_order(order["id"], "BTC/USD")
    assert (fetched["status"], fetched["amount"], fetched["price"]) == ("open", 0.0077, 30003)
    assert fetched["clientOrderId"] == clid
    assert order["id"] in {o["id"] for o in k.fetch_open_orders("BTC/USD")}
    k.cancel_order(order["id"], "BTC/USD")
    assert k.fetch_order(order["id"], "BTC/USD")["status"] == "canceled"
    assert _resting(s, "BTC/USD", "30003.0") == 0
    assert _count(s, clid) == 1


def test_ccxt_kraken_edit_order_amends_in_place(ccxt_sim: tuple[SimProcess, Credentials]) -> None:
    """ccxt ``edit_order`` is Kraken's AmendOrder: same txid, new size and price on the book."""
    s, creds = ccxt_sim
    k = _ccxt_spot(s, creds)
    clid = _clid()
    order = k.create_order("BTC/USD", "limit", "buy", 0.004, 30005, {"clientOrderId": clid})
    k.edit_order(order["id"], "BTC/USD", "limit", "buy", 0.006, 30006)
    assert _resting(s, "BTC/USD", "30005.0") == 0
    assert _resting(s, "BTC/USD", "30006.0") == Decimal("0.006")
    fetched = k.fetch_order(order["id"], "BTC/USD")
    assert (fetched["amount"], fetched["price"], fetched["status"]) == (0.006, 30006, "open")
    k.cancel_order(order["id"])
    assert _resting(s, "BTC/USD", "30006.0") == 0


def test_ccxt_kraken_balance_and_my_trades(ccxt_sim: tuple[SimProcess, Credentials]) -> None:
    s, creds = ccxt_sim
    k = _ccxt_spot(s, creds)
    before = k.fetch_balance()
    best_ask = _levels(s, "ETH/USD", 1)["asks"][0][0]
    order = k.create_order("ETH/USD", "market", "buy", 0.05)
    resting = k.create_order("ETH/USD", "limit", "buy", 0.1, 1000)
    after = k.fetch_balance()
    assert Decimal(str(after["ETH"]["total"])) - Decimal(str(before["ETH"]["total"])) == Decimal(
        "0.05")
    spent = Decimal(str(before["USD"]["total"])) - Decimal(str(after["USD"]["total"]))
    assert spent == Decimal("0.05") * best_ask
    assert Decimal(str(after["USD"]["used"])) == Decimal("100")  # 0.1 ETH bid at 1000 rests
    trades = [t for t in k.fetch_my_trades("ETH/USD") if t["order"] == order["id"]]
    assert [(t["side"], t["amount"], Decimal(str(t["price"]))) for t in trades] == [
        ("buy", 0.05, best_ask)]
    k.cancel_order(resting["id"])
    assert k.fetch_balance()["USD"]["used"] == 0


def test_ccxt_kraken_markets_book_and_ticker(ccxt_sim: tuple[SimProcess, Credentials]) -> None:
    s, creds = ccxt_sim
    k = _ccxt_spot(s, creds)
    markets = k.load_markets()
    assert markets["BTC/USD"]["precision"] == {"amount": 1e-08, "price": 0.1}
    assert k.currencies["BTC"]["id"] == "XBT"
    book = k.fetch_order_book("ARB/USD", 10)
    levels = _levels(s, "ARB/USD", 10)
    assert [(Decimal(str(p)), Decimal(str(q))) for p, q, _ in book["bids"]] == levels["bids"]
    assert [(Decimal(str(p)), Decimal(str(q))) for p, q, _ in book["asks"]] == levels["asks"]
    ticker = k.fetch_ticker("ARB/USD")
    assert Decimal(str(ticker["bid"])) == levels["bids"][0][0]
    assert Decimal(str(ticker["ask"])) == levels["asks"][0][0]


def test_ccxt_pro_watch_order_book(ccxt_sim: tuple[SimProcess, Credentials]) -> None:
    """ccxt.pro ``watch_order_book`` over WS v2 (snapshot, then updates as the flow moves the
    book); the streamed book ends equal to the simulator's levels."""
    pro = pytest.importorskip("ccxt.pro", reason="ccxt has no pro module")
    s, _ = ccxt_sim

    async def run() -> Any:
        k = pro.kraken({"enableRateLimit": False})
        k.urls["api"]["public"] = _spot_url(s)
        k.urls["api"]["ws"]["publicV2"] = _ws_url(s) + "/v2"
        try:
            book = await asyncio.wait_for(k.watch_order_book("ETH/USD", 10), 10)
            first = [list(b) for b in book["bids"]]
            for _ in range(5):
                pending = asyncio.ensure_future(k.watch_order_book("ETH/USD", 10))
                await asyncio.sleep(0.05)
                await asyncio.to_thread(s.control, cmd="flow", steps=5)
                book = await asyncio.wait_for(pending, 10)
            await asyncio.sleep(0.5)  # let the last frames of the burst land
            return first, book
        finally:
            await k.close()

    first, book = asyncio.run(run())
    levels = _levels(s, "ETH/USD", 10)
    bids = [(Decimal(str(p)), Decimal(str(q))) for p, q in book["bids"]]
    asks = [(Decimal(str(p)), Decimal(str(q))) for p, q in book["asks"]]
    assert (bids, asks) == (levels["bids"], levels["asks"])
    assert first != [list(b) for b in book["bids"]], "the book should have moved"


def test_ccxt_pro_watch_ticker(ccxt_sim: tuple[SimProcess, Credentials]) -> None:
    pro = pytest.importorskip("ccxt.pro", reason="ccxt has no pro module")
    s, creds = ccxt_sim

    async def run() -> tuple[Any, Decimal]:
        k = pro.kraken({"enableRateLimit": False})
        k.urls["api"]["public"] = _spot_url(s)
        k.urls["api"]["ws"]["publicV2"] = _ws_url(s) + "/v2"
        try:
            await asyncio.wait_for(k.watch_ticker("BTC/USD"), 10)  # the snapshot
            best_bid = _levels(s, "BTC/USD", 1)["bids"][0][0]
            pending = asyncio.ensure_future(k.watch_ticker("BTC/USD"))
            await asyncio.sleep(0.1)
            await asyncio.to_thread(_ccxt_spot(s, creds).create_order, "BTC/USD", "market",
                                    "sell", 0.001)
            ticker = dict(await asyncio.wait_for(pending, 10))
            return ticker, best_bid
        finally:
            await k.close()

    ticker, best_bid = asyncio.run(run())
    assert Decimal(str(ticker["last"])) == best_bid
    levels = _levels(s, "BTC/USD", 1)
    assert Decimal(str(ticker["bid"])) == levels["bids"][0][0]
    assert Decimal(str(ticker["ask"])) == levels["asks"][0][0]


def test_ccxt_pro_watch_ohlcv(ccxt_sim: tuple[SimProcess, Credentials]) -> None:
    """``watch_ohlcv`` (WS v2 ``ohlc``): the current 1-minute candle closes at the price of the
    trade a market order just made, and matches REST ``OHLC``'s newest candle."""
    pro = pytest.importorskip("ccxt.pro", reason="ccxt has no pro module")
    s, creds = ccxt_sim
    rest = _ccxt_spot(s, creds)

    async def run() -> tuple[list[Any], Decimal]:
        k = pro.kraken({"enableRateLimit": False})
        k.urls["api"]["public"] = _spot_url(s)
        k.urls["api"]["ws"]["publicV2"] = _ws_url(s) + "/v2"
        try:
            await asyncio.to_thread(rest.create_order, "ARB/USD", "market", "buy", 20)
            await asyncio.wait_for(k.watch_ohlcv("ARB/USD", "1m"), 10)  # the snapshot
            best_bid = _levels(s, "ARB/USD", 1)["bids"][0][0]
            pending = asyncio.ensure_future(k.watch_ohlcv("ARB/USD", "1m"))
            await asyncio.sleep(0.1)
            await asyncio.to_thread(rest.create_order, "ARB/USD", "market", "sell", 30)
            candles = [list(c) for c in await asyncio.wait_for(pending, 10)]
            return candles, best_bid
        finally:
            await k.close()

    candles, best_bid = asyncio.run(run())
    assert Decimal(str(candles[-1][4])) == best_bid  # close = the sell's fill price
    assert candles[-1] == rest.fetch_ohlcv("ARB/USD", "1m")[-1]


def test_ccxt_pro_private_orders(ccxt_sim: tuple[SimProcess, Credentials]) -> None:
    """ccxt.pro over the private socket (token from REST GetWebSocketsToken): ``watch_orders``
    sees ``create_order_ws`` open and ``cancel_order_ws`` cancel the order it placed."""
    pro = pytest.importorskip("ccxt.pro", reason="ccxt has no pro module")
    s, creds = ccxt_sim
    clid = _clid()

    async def watched(k: Any, action: Any) -> list[tuple[str, str]]:
        pending = asyncio.ensure_future(k.watch_orders("BTC/USD"))
        await asyncio.sleep(0.2)  # watch first: ccxt resolves only waiting watchers
        await asyncio.wait_for(action, 10)
        # (id, status) now: ccxt updates its cached order dicts in place later.
        return [(o["id"], o["status"]) for o in await asyncio.wait_for(pending, 10)]

    async def run() -> tuple[Any, list[tuple[str, str]], list[tuple[str, str]], Decimal]:
        k = pro.kraken({"apiKey": creds.api_key, "secret": creds.api_secret,
                        "enableRateLimit": False})
        k.urls["api"]["public"] = k.urls["api"]["private"] = _spot_url(s)
        k.urls["api"]["ws"]["privateV2"] = _ws_url(s) + "/v2"
        try:
            created: list[Any] = []

            async def create() -> None:
                created.append(await k.create_order_ws("BTC/USD", "limit", "buy", 0.0031,
                                                       30004, {"clientOrderId": clid}))

            opened = await watched(k, create())
            resting = await asyncio.to_thread(_resting, s, "BTC/USD", "30004.0")
            closed = await watched(k, k.cancel_order_ws(created[0]["id"]))
            return created[0], opened, closed, resting
        finally:
            await k.close()

    created, opened, closed, resting = asyncio.run(run())
    assert created["clientOrderId"] == clid and resting == Decimal("0.0031")
    assert opened[-1] == (created["id"], "open")
    assert closed[-1] == (created["id"], "canceled")
    assert _resting(s, "BTC/USD", "30004.0") == 0 and _count(s, clid) == 1


def test_ccxt_krakenfutures_markets_and_tickers(ccxt_sim: tuple[SimProcess, Credentials]) -> None:
    s, _ = ccxt_sim
    kf = _ccxt_futures(s)
    markets = kf.load_markets()
    assert "ARB/USD:USD" in markets
    tickers = kf.fetch_tickers()
    assert tickers["ARB/USD:USD"]["bid"] > 0


def test_ccxt_krakenfutures_funding_history(ccxt_sim: tuple[SimProcess, Credentials]) -> None:
    import requests

    s, _ = ccxt_sim
    history = _ccxt_futures(s).fetch_funding_rate_history("ARB/USD:USD")
    v3 = requests.get(f"{_fut_url(s)}/derivatives/api/v3/historical-funding-rates",
                      params={"symbol": "PF_ARBUSD"}, timeout=10).json()["rates"]
    assert [h["fundingRate"] for h in history] == [r["relativeFundingRate"] for r in v3]
    assert history[-1]["symbol"] == "ARB/USD:USD"


def test_sim_process_serves_futures_orderbook(ccxt_sim: tuple[SimProcess, Credentials]) -> None:
    from kraken.futures import Market

    s, _ = ccxt_sim
    book = Market(url=_fut_url(s)).get_orderbook(symbol="PF_ARBUSD")["orderBook"]
    assert book["bids"] and book["asks"]
