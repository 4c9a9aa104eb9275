"""A malformed WS book frame (a negative size, a checksum that is no number, not JSON at all)
ends the WS connection, never the client's thread: the books are marked unsynced, the client
reconnects (backing off) and the feed's books are rebuilt from fresh snapshots. A small loopback
venue here, not the simulator's WS face: it sends exactly the frames a test asks for."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from gateway.kraken.checksum import book_checksum
from gateway.marketdata.feed import MarketDataFeed
from gateway.routing.md_failover import WsBookSource
from gateway.transports.kraken_ws import KrakenWsPublic
from tests.conftest import wait_until
from tests.marketdata.test_md_failover_unit import BTC, Recorder, make_feed

D = Decimal
Levels = list[tuple[Decimal, Decimal]]


def _levels(levels: Levels) -> list[dict[str, str]]:
    return [{"price": f"{p:.1f}", "qty": f"{q:.8f}"} for p, q in levels]


class LoopbackVenue:
    """Kraken WS v2 for BTC/USD (price 1 dp, qty 8 dp): instrument, a book snapshot with its
    checksum at each subscribe, and `send_raw` to push any frame to the connected client."""

    def __init__(self) -> None:
        self.bids: Levels = [(D("100.0"), D("1")), (D("99.9"), D("2"))]
        self.asks: Levels = [(D("100.1"), D("3")), (D("100.2"), D("4"))]
        self.connections = 0
        self._ws: ServerConnection | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._loop.run_until_complete,
                                        args=(self._serve(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v2"

    def levels(self) -> tuple[Levels, Levels]:
        return list(self.bids), list(self.asks)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", 0) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        self._ws = ws
        async for raw in ws:
            msg: dict[str, Any] = json.loads(raw)
            channel = msg.get("params", {}).get("channel")
            if msg.get("method") != "subscribe":
                continue
            if channel == "instrument":
                await ws.send(json.dumps({"channel": "instrument", "type": "snapshot", "data": {
                    "pairs": [{"symbol": BTC, "price_precision": 1, "qty_precision": 8}]}}))
            elif channel == "book":
                await ws.send(json.dumps({"channel": "book", "type": "snapshot", "data": [{
                    "symbol": BTC, "bids": _levels(self.bids), "asks": _levels(self.asks),
                    "checksum": book_checksum(self.bids, self.asks, 1, 8)}]}))

    def send_raw(self, frame: str) -> None:
        ws = self._ws
        assert ws is not None
        asyncio.run_coroutine_threadsafe(ws.send(frame), self._loop).result(5)

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


@pytest.fixture
def venue() -> Iterator[LoopbackVenue]:
    v = LoopbackVenue()
    try:
        yield v
    finally:
        v.close()


def fast_client(*args: object, **kw: object) -> KrakenWsPublic:
    return KrakenWsPublic(*args, backoff_initial=0.05, backoff_max=0.5,  # type: ignore[arg-type]
                          **kw)  # type: ignore[arg-type]


def _book_is(feed: MarketDataFeed, venue: LoopbackVenue) -> bool:
    d = feed.books[BTC].depth(10)
    return ([tuple(lv) for lv in d.bids], [tuple(lv) for lv in d.asks]) == venue.levels()


@pytest.mark.parametrize("bad", [
    # A negative size: Book refuses it (ValueError) halfway through the frame.
    '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD",'
    '"bids":[{"price":"100.0","qty":"-1"}],"asks":[],"checksum":0}]}',
    # A checksum that is no number (int() raises ValueError).
    '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD",'
    '"bids":[{"price":"100.0","qty":"5"}],"asks":[],"checksum":"x"}]}',
    # A level without its qty (KeyError) and a price that is no number (InvalidOperation).
    '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD",'
    '"bids":[{"price":"100.0"}],"asks":[],"checksum":1}]}',
    '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD",'
    '"bids":[{"price":"abc","qty":"1"}],"asks":[],"checksum":1}]}',
    "{not json",
], ids=["negative-qty", "checksum-not-a-number", "missing-qty", "bad-price", "not-json"])
def test_a_bad_ws_frame_reconnects_and_the_books_match_again(
        venue: LoopbackVenue, bad: str) -> None:
    feed = make_feed((BTC,))
    rec = Recorder()
    feed.listeners.append(rec)
    src = WsBookSource(feed, venue.url, heartbeat_timeout_s=5.0, client_factory=fast_client)
    feed.hand_over_books("ws")  # failed over to WS
    src.start()
    try:
        wait_until(lambda: _book_is(feed, venue), what="the first WS book")
        client = src.client
        assert client is not None and client.connects == 1
        # The venue moves on, then sends a frame the client cannot apply.
        venue.bids = [(D("101.0"), D("1.5")), (D("100.9"), D("2"))]
        venue.asks = [(D("101.1"), D("0.5"))]
        venue.send_raw(bad)
        wait_until(lambda: client.connects >= 2, what="the client to reconnect")
        assert client.alive and client.bad_frames >= 1
        wait_until(lambda: _book_is(feed, venue), what="the book rebuilt from a fresh snapshot")
        assert rec.count("integrity", BTC) >= 1  # marked unsynced in between
        assert src.up() and src.client is client  # the same client, not a replacement
    finally:
        src.stop()
        feed.stop()


def test_a_dead_ws_client_is_replaced(venue: LoopbackVenue) -> None:
    """Should the client's thread end all the same, the source starts a new client rather
    than own the books for good with one that feeds nothing."""
    feed = make_feed((BTC,))
    src = WsBookSource(feed, venue.url, client_factory=fast_client)
    feed.hand_over_books("ws")
    src.start()
    try:
        wait_until(lambda: _book_is(feed, venue), what="the first WS book")
        old = src.client
        assert old is not None
        old.stop()  # as if its thread had died
        assert not src.up() and src.revive()
        assert src.client is not None and src.client is not old
        wait_until(lambda: src.up(), what="the new client to connect")
    finally:
        src.stop()
        feed.stop()


def test_an_untried_ws_client_is_not_up() -> None:
    feed = make_feed((BTC,))
    try:
        src = WsBookSource(feed, "ws://127.0.0.1:9/v2", client_factory=fast_client)
        assert not src.up() and src.available()  # worth trying, not up
    finally:
        feed.stop()
