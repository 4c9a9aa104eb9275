"""Two bots on one simulator, each with its own API key from `--accounts`: python-kraken-sdk
and ccxt (whose nonces differ, so they could not share a key) trade side by side, and each
account sees only its own orders, on spot REST and on futures REST. An account also logs on
over FIX as its owner's CompID, signed with its own key, and its FIX orders are its REST
orders."""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Oms, make_client, refused_logon
from tests.procs import Credentials, SimProcess

pytest.importorskip("kraken", reason="python-kraken-sdk not installed (dev extra)")
ccxt = pytest.importorskip("ccxt", reason="ccxt not installed (dev extra)")

from tests.compat.test_kraken_clients import (  # noqa: E402 - after the skips
    _count,
    _fut_url,
    _spot_url,
    _wait_for,
    _ws_url,
)

SDK_KEY, CCXT_KEY = "sdk-bot", "ccxt-bot"


def _secret() -> str:
    return base64.b64encode(secrets.token_bytes(64)).decode()


@pytest.fixture(scope="module")
def bots(tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[SimProcess, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("accounts")
    sdk_secret, ccxt_secret = _secret(), _secret()
    (tmp / "ccxt.secret").write_text(ccxt_secret + "\n")
    accounts = tmp / "accounts.toml"
    accounts.write_text(f'[[accounts]]\napi_key = "{SDK_KEY}"\n'
                        'api_secret = { env = "SDK_SECRET" }\nowner = "SDKBOT"\n\n'
                        f'[[accounts]]\napi_key = "{CCXT_KEY}"\n'
                        f'api_secret = {{ file = "{tmp / "ccxt.secret"}" }}\nowner = "CCXTBOT"\n')
    s = SimProcess(tmp / "sim", Credentials(), seed_books=True, accounts_file=accounts,
                   env={"SDK_SECRET": sdk_secret})
    try:
        yield s, {SDK_KEY: sdk_secret, CCXT_KEY: ccxt_secret}
    finally:
        s.stop()


def _sdk(api: Any, url: str, key: str, secret: str) -> tuple[Any, Any]:
    """python-kraken-sdk's ``Trade`` and ``User`` of ``api`` (kraken.spot or kraken.futures)
    for one key."""
    return api.Trade(key=key, secret=secret, url=url), api.User(key=key, secret=secret, url=url)


def _ccxt(s: SimProcess, secret: str) -> Any:
    k = ccxt.kraken({"apiKey": CCXT_KEY, "secret": secret, "enableRateLimit": False})
    k.urls["api"]["public"] = k.urls["api"]["private"] = _spot_url(s)
    return k


def test_sdk_and_ccxt_bots_trade_side_by_side_each_seeing_its_own_orders(
        bots: tuple[SimProcess, dict[str, str]]) -> None:
    import kraken.spot

    s, secret = bots
    sdk_trade, sdk_user = _sdk(kraken.spot, _spot_url(s), SDK_KEY, secret[SDK_KEY])
    k = _ccxt(s, secret[CCXT_KEY])
    sdk_cl, ccxt_cl = uuid.uuid4().hex, uuid.uuid4().hex
    # Interleaved: the SDK's nonces (time x 10^8) are far above ccxt's; per key, both are fine.
    sdk_txid = sdk_trade.create_order(ordertype="limit", side="buy", pair="XBTUSD",
                                      volume="0.0021", price="30011.0",
                                      cl_ord_id=sdk_cl)["txid"][0]
    ccxt_order = k.create_order("BTC/USD", "limit", "buy", 0.0031, 30012,
                                {"clientOrderId": ccxt_cl})
    sdk_open = sdk_user.get_open_orders()["open"]
    ccxt_open = {o["id"] for o in k.fetch_open_orders("BTC/USD")}
    assert sdk_txid in sdk_open and ccxt_order["id"] not in sdk_open
    assert ccxt_order["id"] in ccxt_open and sdk_txid not in ccxt_open
    assert _count(s, sdk_cl, "SDKBOT") == 1 and _count(s, ccxt_cl, "CCXTBOT") == 1
    # One account cannot cancel the other's order.
    with pytest.raises(Exception, match=r"Unknown order"):
        sdk_trade.cancel_order(txid=ccxt_order["id"])
    k.cancel_order(ccxt_order["id"])
    assert sdk_trade.cancel_order(txid=sdk_txid)["count"] == 1
    levels = s.control(cmd="levels", symbol="BTC/USD", depth=1000)["bids"]
    assert isinstance(levels, list)
    assert not [p for p, _ in levels if Decimal(p) in (Decimal("30011"), Decimal("30012"))]


def test_futures_orders_belong_to_the_account_that_sent_them(
        bots: tuple[SimProcess, dict[str, str]]) -> None:
    import kraken.futures

    s, secret = bots
    sdk, sdk_user = _sdk(kraken.futures, _fut_url(s), SDK_KEY, secret[SDK_KEY])
    other, other_user = _sdk(kraken.futures, _fut_url(s), CCXT_KEY, secret[CCXT_KEY])
    cli = str(uuid.uuid4())
    sent = sdk.create_order(orderType="lmt", side="buy", size=13, symbol="PF_ARBUSD",
                            limitPrice=0.0903, cliOrdId=cli)["sendStatus"]
    assert sent["status"] == "placed"
    assert [o["order_id"] for o in sdk_user.get_open_orders()["openOrders"]] == [
        sent["order_id"]]
    assert other_user.get_open_orders()["openOrders"] == []
    assert other.cancel_order(order_id=sent["order_id"])["cancelStatus"]["status"] == "notFound"
    assert sdk.cancel_order(order_id=sent["order_id"])["cancelStatus"]["status"] == "cancelled"
    assert _count(s, cli, "SDKBOT") == 1
    _, wrong = _sdk(kraken.futures, _fut_url(s), SDK_KEY, secret[CCXT_KEY])
    with pytest.raises(Exception, match="authenticationError"):
        wrong.get_open_orders()


def test_ws_executions_show_only_the_accounts_own_orders(
        bots: tuple[SimProcess, dict[str, str]]) -> None:
    """The SDK bot's private socket (token from REST with its own key) reports the order it
    adds, and not the ccxt bot's order placed just before it."""
    from kraken.spot import SpotWSClient, Trade

    s, secret = bots
    k = _ccxt(s, secret[CCXT_KEY])
    mine, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    received: list[dict[str, Any]] = []

    class Client(SpotWSClient):  # type: ignore[misc]
        async def on_message(self, message: dict[str, Any]) -> None:
            received.append(message)

    def seen(clid: str) -> bool:
        return any(d.get("cl_ord_id") == clid for m in received
                   if m.get("channel") == "executions" for d in m.get("data", []))

    async def run() -> None:
        client = Client(key=SDK_KEY, secret=secret[SDK_KEY], rest_url=_spot_url(s),
                        ws_url=_ws_url(s), auth_ws_url=_ws_url(s), no_public=True)
        try:
            await client.start()
            await client.subscribe(params={"channel": "executions"})
            await _wait_for(lambda: any(m.get("channel") == "executions" for m in received))
            await asyncio.to_thread(k.create_order, "BTC/USD", "limit", "buy", 0.0017, 30013,
                                    {"clientOrderId": theirs})
            await client.send_message({"method": "add_order", "params": {
                "order_type": "limit", "side": "buy", "order_qty": 0.0016,
                "limit_price": 30014.0, "symbol": "BTC/USD", "cl_ord_id": mine}})
            await _wait_for(lambda: seen(mine))
        finally:
            await client.close()

    asyncio.run(run())
    # Executions reach a socket in the engine's order: had the ccxt bot's been sent to this
    # one, it would have come before the SDK bot's own.
    assert not seen(theirs)
    assert _count(s, mine, "SDKBOT") == 1 and _count(s, theirs, "CCXTBOT") == 1
    assert Trade(key=SDK_KEY, secret=secret[SDK_KEY], url=_spot_url(s)).cancel_all_orders() == {
        "count": 1}
    k.cancel_all_orders()


def test_an_account_logs_on_over_fix_as_its_owner_and_its_fix_orders_are_its_rest_orders(
        bots: tuple[SimProcess, dict[str, str]], tmp_path: Path) -> None:
    """`SDKBOT` is not a `--client` of the simulator: its FIX sessions come from the accounts
    file. Its key signs its logon; another account's key does not, even with a good
    signature."""
    import kraken.spot

    s, secret = bots
    sdk_creds = Credentials(api_key=SDK_KEY, api_secret=secret[SDK_KEY])
    fix_bot = Oms(make_client(tmp_path, s.trading_port, "SDKBOT", "KRAKEN-TRD", sdk_creds))
    impostor = make_client(tmp_path, s.trading_port, "CCXTBOT", "KRAKEN-TRD", sdk_creds)
    try:
        fix_bot.c.start()
        cl = fix_bot.buy("0.0041", "30013.0")
        txid = fix_bot.report(cl, "0").fields[37]
        _, sdk_user = _sdk(kraken.spot, _spot_url(s), SDK_KEY, secret[SDK_KEY])
        assert txid in sdk_user.get_open_orders()["open"]
        assert _count(s, cl, "SDKBOT") == 1

        assert "not the key of CompID CCXTBOT" in refused_logon(impostor)
    finally:
        fix_bot.c.stop()
        impostor.stop()
