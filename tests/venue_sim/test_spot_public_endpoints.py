"""The spot REST face's public market data, exactly: ``Ticker`` (today vs last-24-hours windows,
VWAP, counts, low/high/open), ``Depth`` (levels and each level's last-change time), ``Trades``
(rows and the ``since`` cursor), ``OHLC`` candles, ``Assets`` and ``AssetPairs`` keyed the way
Kraken keys them, from hand-placed orders and trades on an engine whose clock the test sets.
Over loopback HTTP.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from gateway.venue_sim.accounts import Accounts
from gateway.venue_sim.engine import MatchingEngine, Side, TimeInForce
from gateway.venue_sim.spot_rest import SpotRestServer

NOW = int(datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp()) * 1_000_000_000
HOUR = 3600 * 1_000_000_000
MIN = 60 * 1_000_000_000
BTC = "BTC/USD"


class Clock:
    def __init__(self) -> None:
        self.ns = NOW - 30 * HOUR

    def __call__(self) -> int:
        return self.ns


@pytest.fixture(scope="module")
def venue() -> Iterator[tuple[SpotRestServer, MatchingEngine]]:
    clock = Clock()
    engine = MatchingEngine(time_source=clock)
    n = 0

    def trade(at: int, price: str, qty: str) -> None:
        nonlocal n
        n += 1
        clock.ns = at
        engine.submit("M", f"m{n}", BTC, Side.SELL, Decimal(qty), Decimal(price))
        engine.submit("T", f"t{n}", BTC, Side.BUY, Decimal(qty), Decimal(price),
                      tif=TimeInForce.IOC)

    server = SpotRestServer(engine, Accounts(), wall_clock_ns=lambda: NOW)
    trade(NOW - 25 * HOUR, "44000.0", "1")      # older than 24 h: in no window
    trade(NOW - 20 * HOUR, "44500.0", "0.5")    # last 24 h, but yesterday (UTC)
    trade(NOW - 2 * HOUR, "45000.0", "0.2")     # today
    trade(NOW - 1 * HOUR, "45100.0", "0.3")     # today, the last trade
    clock.ns = NOW - 30 * MIN
    engine.submit("M", "ask", BTC, Side.SELL, Decimal("0.7"), Decimal("45200.0"))
    clock.ns = NOW - 10 * MIN
    engine.submit("M", "bid", BTC, Side.BUY, Decimal("0.4"), Decimal("44900.0"))
    server.start()
    try:
        yield server, engine
    finally:
        server.close()


def get(server: SpotRestServer, method: str, **params: str) -> Any:
    url = f"{server.base_url}/0/public/{method}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    if body["error"]:
        return body["error"]
    return body["result"]


def test_ticker_windows(venue: tuple[SpotRestServer, MatchingEngine]) -> None:
    server, _ = venue
    assert get(server, "Ticker", pair="XBTUSD") == {"XBTUSD": {
        "a": ["45200.0", "0", "0.70000000"],
        "b": ["44900.0", "0", "0.40000000"],
        "c": ["45100.0", "0.30000000"],
        "v": ["0.50000000", "1.00000000"],
        "p": ["45060.0", "44780.0"],   # (45000*.2 + 45100*.3)/.5 ; (+ 44500*.5)/1
        "t": [2, 3],
        "l": ["45000.0", "44500.0"],
        "h": ["45100.0", "45100.0"],
        "o": "45000.0",
    }}


def test_ticker_all_pairs_and_idle_pair(venue: tuple[SpotRestServer, MatchingEngine]) -> None:
    server, _ = venue
    tickers = get(server, "Ticker")
    assert set(tickers) == {"XBTUSD", "ETHUSD", "ARBUSD"}
    assert tickers["ETHUSD"]["c"] == ["0.00", "0.00000000"] and tickers["ETHUSD"]["t"] == [0, 0]
    assert get(server, "Ticker", pair="NOPEUSD") == ["EQuery:Unknown asset pair"]


def test_depth_levels_and_times(venue: tuple[SpotRestServer, MatchingEngine]) -> None:
    server, _ = venue
    book = get(server, "Depth", pair="BTC/USD", count="5")["XBTUSD"]
    assert book == {"asks": [["45200.0", "0.70000000", (NOW - 30 * MIN) // 10**9]],
                    "bids": [["44900.0", "0.40000000", (NOW - 10 * MIN) // 10**9]]}
    assert get(server, "Depth", pair="XBTUSD", count="x") == ["EGeneral:Invalid arguments:count"]


def test_depth_time_of_levels_older_than_the_face(
        venue: tuple[SpotRestServer, MatchingEngine]) -> None:
    """A face attached after the book was built cannot know when its levels last changed; it
    says "when I started watching" (never a later, made-up time)."""
    _, engine = venue
    late = SpotRestServer(engine, Accounts(), wall_clock_ns=lambda: NOW + HOUR)
    late.start()
    try:
        book = get(late, "Depth", pair="XBTUSD")["XBTUSD"]
    finally:
        late.close()
    assert [r[2] for r in book["asks"] + book["bids"]] == [(NOW + HOUR) // 10**9] * 2


def test_trades_rows_and_since(venue: tuple[SpotRestServer, MatchingEngine]) -> None:
    server, engine = venue
    tape = engine.last_trades(BTC, 10)
    result = get(server, "Trades", pair="XBTUSD")
    rows = result["XBTUSD"]
    assert [r[:2] for r in rows] == [["44000.0", "1.00000000"], ["44500.0", "0.50000000"],
                                     ["45000.0", "0.20000000"], ["45100.0", "0.30000000"]]
    assert all(r[3:6] == ["b", "l", ""] for r in rows)
    assert rows[-1][2] == float(Decimal(NOW - HOUR) / 10**9)
    assert result["last"] == str(tape[-1].time)
    later = get(server, "Trades", pair="XBTUSD", since=str(tape[1].time))["XBTUSD"]
    assert [r[0] for r in later] == ["45000.0", "45100.0"]


def test_ohlc_candles(venue: tuple[SpotRestServer, MatchingEngine]) -> None:
    server, _ = venue
    day = 86_400
    today = NOW // 10**9 - (NOW // 10**9) % day
    daily = get(server, "OHLC", pair="XBTUSD", interval="1440")
    assert daily == {"XBTUSD": [
        [today - day, "44000.0", "44500.0", "44000.0", "44500.0", "44166.7", "1.50000000", 2],
        [today, "45000.0", "45100.0", "45000.0", "45100.0", "45060.0", "0.50000000", 2],
    ], "last": today - day}
    assert get(server, "OHLC", pair="XBTUSD", interval="1440",
               since=str(today - day))["XBTUSD"] == daily["XBTUSD"][1:]
    hourly = get(server, "OHLC", pair="XBTUSD", interval="60")["XBTUSD"]
    assert [(r[0], r[4], r[7]) for r in hourly] == [
        ((NOW - 25 * HOUR) // 10**9, "44000.0", 1), ((NOW - 20 * HOUR) // 10**9, "44500.0", 1),
        ((NOW - 2 * HOUR) // 10**9, "45000.0", 1), ((NOW - HOUR) // 10**9, "45100.0", 1)]
    assert get(server, "OHLC", pair="XBTUSD", interval="7") == [
        "EGeneral:Invalid arguments:interval"]


def test_assets_and_asset_pairs_keys(venue: tuple[SpotRestServer, MatchingEngine]) -> None:
    server, _ = venue
    assets = get(server, "Assets")
    assert set(assets) == {"XBT", "ETH", "ARB", "USD"}
    assert assets["XBT"] == {"aclass": "currency", "altname": "XBT", "decimals": 10,
                             "display_decimals": 5, "status": "enabled"}
    assert assets["USD"]["decimals"] == 4
    assert set(get(server, "Assets", asset="XBT,USD")) == {"XBT", "USD"}
    assert get(server, "Assets", asset="DOGE") == ["EQuery:Unknown asset"]
    # Asked by WS name, Kraken keys the answer by that name (python-kraken-sdk relies on it).
    assert set(get(server, "AssetPairs", pair="BTC/USD")) == {"BTC/USD"}
    assert set(get(server, "AssetPairs", pair="XBTUSD,ETH/USD")) == {"XBTUSD", "ETH/USD"}
