"""python-kraken-sdk's ``SpotOrderBookClient`` really checks the simulator's book checksums:
one corrupted checksum (the WS face's fault hook) makes it report the mismatch and resubscribe,
and the book it rebuilds from the new snapshot is valid and equal to the engine's top 10.

In-process venue (engine, synthetic flow, spot REST for ``AssetPairs``, spot WS v2) over
loopback, because the fault hook is not on the simulator process's control port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from gateway.venue_sim.accounts import Accounts
from gateway.venue_sim.engine import MatchingEngine
from gateway.venue_sim.flow import SyntheticFlow
from gateway.venue_sim.spot_rest import SpotRestServer
from gateway.venue_sim.spot_ws import SpotWsServer

pytest.importorskip("kraken", reason="python-kraken-sdk not installed (dev extra)")

BTC = "BTC/USD"


@dataclass
class Venue:
    engine: MatchingEngine
    flow: SyntheticFlow
    rest: SpotRestServer
    ws: SpotWsServer


@pytest.fixture
def venue() -> Iterator[Venue]:
    engine = MatchingEngine(seed=5)
    flow = SyntheticFlow(engine, seed=5, symbols=(BTC,))
    flow.seed_books()
    accounts = Accounts()
    rest = SpotRestServer(engine, accounts)
    ws = SpotWsServer(engine, accounts, heartbeat_interval=0.5)
    rest.start()
    ws.start()
    try:
        yield Venue(engine, flow, rest, ws)
    finally:
        ws.stop()
        rest.close()


def test_corrupted_checksum_is_caught_and_the_sdk_resubscribes(venue: Venue) -> None:
    from kraken.spot import Market, SpotOrderBookClient

    messages: list[dict[str, Any]] = []

    class Book(SpotOrderBookClient):  # type: ignore[misc]
        WS_URL = f"ws://127.0.0.1:{venue.ws.port}"

        async def on_book_update(self, pair: str, message: dict[str, Any]) -> None:
            messages.append(message)

    def snapshots() -> int:
        return sum(1 for m in messages if m.get("type") == "snapshot")

    async def until(cond: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.to_thread(venue.flow.step)
            await asyncio.sleep(0.05)

    async def run() -> dict[str, Any]:
        saved = Market.URL
        Market.URL = venue.rest.base_url
        client = Book(depth=10)
        try:
            await client.start()
            await client.add_book(pairs=[BTC])
            await until(lambda: any(m.get("type") == "update" for m in messages), 10)
            venue.ws.corrupt_next_checksum(BTC)
            await until(lambda: any("error" in m for m in messages), 10)
            # The SDK waits 3 s, then subscribes again and rebuilds from a fresh snapshot.
            await until(lambda: snapshots() >= 2, 15)
            await until(lambda: sum(1 for m in messages[-5:] if m.get("type") == "update") >= 3,
                        10)
            await asyncio.sleep(0.5)
            book = client.get(BTC)
            assert book is not None
            return book
        finally:
            Market.URL = saved
            await client.close()

    book = asyncio.run(run())
    errors = [m["error"] for m in messages if "error" in m]
    assert errors and all("Checksum mismatch" in e for e in errors)
    assert book["valid"] is True
    bids, asks = venue.engine.levels(BTC, 10)
    assert [(Decimal(p), Decimal(q)) for p, (q, _) in book["bid"].items()] == bids
    assert [(Decimal(p), Decimal(q)) for p, (q, _) in book["ask"].items()] == asks
