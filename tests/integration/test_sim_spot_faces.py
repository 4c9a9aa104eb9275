"""The simulator process's spot REST and WebSocket v2 faces, with the gateway's own clients:
one account across FIX, REST and WS (a REST-issued token opens the WS private channel, an order
placed over WS is visible over REST), and the WS book equals the venue's book."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.kraken.auth import NonceSource
from gateway.transports.kraken_spot_rest import KrakenSpotRest
from gateway.transports.kraken_ws import KrakenWsPrivate, KrakenWsPublic
from tests.procs import Credentials, SimProcess


def test_rest_token_opens_ws_orders_are_one_account_and_ws_book_matches(tmp_path: Path) -> None:
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, seed_books=True)
    rest = KrakenSpotRest(f"http://127.0.0.1:{sim.spot_rest_port}", creds.api_key,
                          creds.api_secret, NonceSource())
    executions: list[dict[str, Any]] = []
    got = threading.Event()

    def on_execution(item: dict[str, Any]) -> None:
        executions.append(item)
        if item.get("cl_ord_id") == "WS-1" and item.get("exec_type") == "new":
            got.set()

    url = f"ws://127.0.0.1:{sim.spot_ws_port}/v2"
    private = KrakenWsPrivate(url, rest.get_ws_token, on_execution)
    public = KrakenWsPublic(url, ["BTC/USD"], depth=10)
    try:
        private.start()
        assert private.wait_connected(10)
        result = private.add_order(symbol="BTC/USD", side="buy", order_type="limit",
                                   order_qty=Decimal("0.01"), limit_price=Decimal("30000.0"),
                                   time_in_force="gtc", cl_ord_id="WS-1")
        assert result["order_id"].startswith("O")
        assert got.wait(10), executions
        open_over_rest = rest.open_orders(cl_ord_id="WS-1")
        assert [o.cl_ord_id for o in open_over_rest.values()] == ["WS-1"]

        public.start()
        assert public.wait_connected(10)
        sim.control(cmd="flow", steps=50)
        deadline = time.monotonic() + 10
        venue = None
        while time.monotonic() < deadline:
            lv = sim.control(cmd="levels", symbol="BTC/USD", depth=10)
            venue = ([(Decimal(p), Decimal(q)) for p, q in lv["bids"]],
                     [(Decimal(p), Decimal(q)) for p, q in lv["asks"]])
            book = public.books.get("BTC/USD")
            if book is not None:
                d = book.depth(10)
                if ([(x.price, x.qty) for x in d.bids], [(x.price, x.qty) for x in d.asks]) \
                        == venue:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError(f"WS book never matched the venue's: {venue}")
        assert public.resyncs == 0
    finally:
        public.stop()
        private.stop()
        sim.stop()
