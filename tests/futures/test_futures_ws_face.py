"""The simulator's Kraken Futures WebSocket v1 face over a real socket, with a plain `websockets`
client (not the gateway's): subscribe/snapshot/updates, unsubscribe, heartbeat, Kraken's error
events, and scenario changes reaching subscribers, in-process and through the control port of a
simulator process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from gateway.venue_sim.futures_rest import FuturesRestServer
from gateway.venue_sim.futures_ws import FuturesWsServer
from gateway.venue_sim.scenarios import get_scenario
from tests.procs import Credentials, SimProcess

ARB = "PF_ARBUSD"
XBT = "PF_XBTUSD"


def _loads(raw: str | bytes) -> dict[str, Any]:
    out = json.loads(raw, parse_float=Decimal)
    assert isinstance(out, dict)
    return out


def _next(ws: ClientConnection, pred: Any = None, timeout: float = 5.0) -> dict[str, Any]:
    """The next frame matching ``pred`` (skipping others) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no matching frame in time")
        msg = _loads(ws.recv(timeout=left))
        if pred is None or pred(msg):
            return msg


def _ticker(pid: str) -> Any:
    return lambda m: m.get("feed") == "ticker" and m.get("product_id") == pid


@pytest.fixture
def faces() -> Iterator[tuple[FuturesRestServer, FuturesWsServer]]:
    rest = FuturesRestServer("arb-crowded-long")
    ws = FuturesWsServer(lambda: rest.scenario, ticker_interval_s=0.2, heartbeat_interval_s=0.2)
    rest.start()
    ws.start()
    try:
        yield rest, ws
    finally:
        ws.stop()
        rest.stop()


@contextmanager
def _subscribe(url: str, *pids: str) -> Iterator[ClientConnection]:
    with connect(url, open_timeout=5) as ws:
        assert _next(ws) == {"event": "info", "version": 1}
        ws.send(json.dumps({"event": "subscribe", "feed": "ticker", "product_ids": list(pids)}))
        yield ws


def test_subscribe_gets_ack_snapshot_with_the_scenario_figures_then_updates(
        faces: tuple[FuturesRestServer, FuturesWsServer]) -> None:
    rest, face = faces
    fig = get_scenario("arb-crowded-long").perp(ARB)
    with _subscribe(face.url, ARB) as ws:
        ack = _next(ws)
        assert ack == {"event": "subscribed", "feed": "ticker", "product_ids": [ARB]}
        t0 = time.time()
        snap = _next(ws, _ticker(ARB), timeout=0.5)  # the snapshot follows the ack at once
        assert snap["markPrice"] == Decimal("0.11092563") == fig.mark_price
        assert snap["index"] == Decimal("0.111")
        assert snap["relative_funding_rate"] == Decimal("0.0000125")
        # Absolute = relative × mark for linear PF_ (kraken-api.md §5), exactly.
        assert snap["funding_rate"] == Decimal("0.0000125") * Decimal("0.11092563")
        assert snap["relative_funding_rate_prediction"] == Decimal("0.0000125")
        assert snap["openInterest"] == Decimal("800000000")
        assert snap["volume"] == Decimal("400000000")
        assert snap["tag"] == "perpetual" and snap["pair"] == "ARB:USD"
        assert snap["suspended"] is False and snap["post_only"] is False
        assert snap["premium"] == Decimal("-0.1")  # -6.7 bps as Kraken's 1-dp percent
        # Next settlement: the next whole hour, as an epoch in ms.
        assert snap["next_funding_rate_time"] % 3_600_000 == 0
        assert 0 < snap["next_funding_rate_time"] / 1000 - t0 <= 3600
        assert abs(snap["time"] / 1000 - t0) < 2
        # One book top for both faces: the WS ticker's bid/ask/last are the REST ticker's.
        rest_t = json.loads(rest.handle("GET", f"/derivatives/api/v3/tickers/{ARB}", {},
                                        "").body, parse_float=Decimal)["ticker"]
        assert (snap["bid"], snap["ask"], snap["last"]) == (rest_t["bid"], rest_t["ask"],
                                                            rest_t["last"])
        assert snap["bid"] < snap["markPrice"] < snap["ask"]
        # Updates: full tickers, again and again, with a later time.
        upd = _next(ws, _ticker(ARB), timeout=2)
        upd2 = _next(ws, _ticker(ARB), timeout=2)
        assert upd2["time"] > snap["time"]
        assert upd["markPrice"] == upd2["markPrice"] == snap["markPrice"]


def test_unknown_product_is_kraken_error_and_subscribes_nothing(
        faces: tuple[FuturesRestServer, FuturesWsServer]) -> None:
    _, face = faces
    with _subscribe(face.url, ARB, "PF_NOPEUSD") as ws:
        assert _next(ws) == {"event": "error", "message": "Invalid product id"}
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.6)  # three publish ticks: nothing was subscribed
        ws.send(json.dumps({"event": "subscribe", "feed": "book", "product_ids": [ARB]}))
        assert _next(ws) == {"event": "error", "message": "Invalid feed"}
        ws.send("{not json")
        assert _next(ws) == {"event": "error", "message": "Json Error"}
        ws.send(json.dumps({"event": "subscribe", "feed": "ticker"}))
        assert _next(ws) == {"event": "error", "message": "Json Error"}
        # The connection survives its errors: a good request still works.
        ws.send(json.dumps({"event": "subscribe", "feed": "ticker", "product_ids": ["pf_xbtusd"]}))
        assert _next(ws)["event"] == "subscribed"
        assert _next(ws, _ticker(XBT))["markPrice"] == Decimal("45005.4")


def test_unsubscribe_stops_the_product_and_heartbeat_feed(
        faces: tuple[FuturesRestServer, FuturesWsServer]) -> None:
    _, face = faces
    with _subscribe(face.url, ARB, XBT) as ws:
        _next(ws, _ticker(XBT))
        ws.send(json.dumps({"event": "unsubscribe", "feed": "ticker", "product_ids": [XBT]}))
        ack = _next(ws, lambda m: m.get("event") == "unsubscribed")
        assert ack["product_ids"] == [XBT]
        seen = set()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            m = _next(ws, lambda m: m.get("feed") == "ticker")
            seen.add(m["product_id"])
        assert seen == {ARB}
        ws.send(json.dumps({"event": "unsubscribe", "feed": "ticker", "product_ids": [XBT]}))
        assert _next(ws, lambda m: "event" in m)["event"] == "unsubscribed_failed"
        ws.send(json.dumps({"event": "subscribe", "feed": "heartbeat"}))
        assert _next(ws, lambda m: "event" in m) == {"event": "subscribed", "feed": "heartbeat"}
        hb = _next(ws, lambda m: m.get("feed") == "heartbeat")
        assert abs(hb["time"] / 1000 - time.time()) < 2


def test_zero_funding_is_omitted_as_kraken_does(
        faces: tuple[FuturesRestServer, FuturesWsServer]) -> None:
    rest, face = faces
    rest.set_figures(ARB, funding_rate_rel="0", funding_rate_prediction_rel="0",
                     funding_history_rel=())
    with _subscribe(face.url, ARB) as ws:
        snap = _next(ws, _ticker(ARB))
    for key in ("funding_rate", "funding_rate_prediction", "relative_funding_rate",
                "relative_funding_rate_prediction"):
        assert key not in snap
    assert "next_funding_rate_time" in snap and "markPrice" in snap


def test_scenario_change_is_pushed_at_once_on_notify() -> None:
    rest = FuturesRestServer("default")
    # A long tick: only notify() can make the change arrive quickly.
    face = FuturesWsServer(lambda: rest.scenario, ticker_interval_s=30.0)
    face.start()
    try:
        with _subscribe(face.url, ARB) as ws:
            assert _next(ws, _ticker(ARB))["markPrice"] == Decimal("0.11100999")
            rest.set_scenario("arb-crowded-long")
            t0 = time.monotonic()
            face.notify()
            upd = _next(ws, _ticker(ARB), timeout=2)
            assert time.monotonic() - t0 < 1.0
            assert upd["markPrice"] == Decimal("0.11092563")
            assert upd["relative_funding_rate"] == Decimal("0.0000125")
            assert upd["openInterest"] == Decimal("800000000")
    finally:
        face.stop()


def test_wrong_path_is_closed() -> None:
    rest = FuturesRestServer("default")
    face = FuturesWsServer(lambda: rest.scenario)
    face.start()
    try:
        with (connect(face.url.replace("/ws/v1", "/v2"), open_timeout=5) as ws,
              pytest.raises(ConnectionClosed)):
            ws.recv(timeout=5)
    finally:
        face.stop()


def test_control_port_scenario_change_reaches_the_ws_feed(tmp_path: Path) -> None:
    sim = SimProcess(tmp_path / "sim", Credentials(), scenario="default")
    try:
        assert sim.futures_ws_port > 0
        url = f"ws://127.0.0.1:{sim.futures_ws_port}/ws/v1"
        with _subscribe(url, ARB) as ws:
            first = _next(ws, _ticker(ARB))
            assert first["relative_funding_rate"] == Decimal("0.000001")
            sim.control(cmd="scenario", name="arb-crowded-long")
            t0 = time.monotonic()
            upd = _next(ws, lambda m: _ticker(ARB)(m) and m["markPrice"] != first["markPrice"],
                        timeout=3)
            assert time.monotonic() - t0 < 0.5  # pushed on the change, not on the next tick
            assert upd["markPrice"] == Decimal("0.11092563")
            assert upd["relative_funding_rate"] == Decimal("0.0000125")
            # A per-figure override through the control port too.
            sim.control(cmd="scenario", symbol=ARB, open_interest="900000000")
            upd = _next(ws, lambda m: _ticker(ARB)(m) and m["openInterest"] == 900000000,
                        timeout=3)
            assert upd["markPrice"] == Decimal("0.11092563")
    finally:
        sim.stop()
