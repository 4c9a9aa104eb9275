"""The simulator's Kraken Futures WebSocket v1 face (``/ws/v1``): the public ``ticker`` and
``heartbeat`` feeds.

Why it exists: the gateway's perp inputs (mark, index, funding, open interest) come from this
feed when it is up, and REST polling alone cannot show a funding flip until the next poll. The
face reads the *same* scenario object the futures REST face serves (a ``scenario`` callable,
``FuturesRestServer.scenario`` in the simulator), so REST and WS never disagree, and a scenario
switch on the control port reaches subscribers at once (:meth:`FuturesWsServer.notify`) instead
of on the next tick.

Wire format (Kraken's Futures WebSocket docs, ``futures-websocket/ticker`` and ``heartbeat``;
``shared/kraken-api.md`` §5 has the REST side and the absolute/relative funding rule):

* on connect the server sends ``{"event":"info","version":1}``;
* ``{"event":"subscribe","feed":"ticker","product_ids":[...]}`` is answered with
  ``{"event":"subscribed","feed":"ticker","product_ids":[...]}`` and then, per product, a full
  ticker at once (the snapshot) and a full ticker every ``ticker_interval_s`` (Kraken throttles
  deltas to one a second and always sends every field) and whenever the scenario changes;
* ticker fields as Kraken sends them: ``time`` (server ms), ``product_id``, ``funding_rate`` and
  ``funding_rate_prediction`` (**absolute**), ``relative_funding_rate`` and
  ``relative_funding_rate_prediction`` (relative, the scenario's own figures), each *omitted when
  zero* as Kraken documents; ``next_funding_rate_time`` (epoch ms of the next settlement: Kraken's
  text says "time until", its examples carry an epoch, and we follow the examples), ``feed``,
  ``bid``/``ask``/``bid_size``/``ask_size``/``last`` (the same book top as the REST ticker),
  ``volume``, ``volumeQuote``, ``dtm``, ``leverage``, ``index``, ``premium`` (mark vs index, %),
  ``change``, ``open``/``high``/``low``, ``suspended``, ``tag``, ``pair``, ``openInterest``,
  ``markPrice``, ``maturityTime``, ``post_only``;
* ``{"event":"subscribe","feed":"heartbeat"}`` -> ``{"event":"subscribed","feed":"heartbeat"}``,
  then ``{"feed":"heartbeat","time":ms}`` every ``heartbeat_interval_s`` (Kraken does not state
  its interval);
* ``unsubscribe`` mirrors subscribe (``unsubscribed``; ``unsubscribed_failed`` when none of the
  products was subscribed);
* errors are Kraken's ``{"event":"error","message":...}`` with its messages: ``Invalid product
  id`` (any unknown product rejects the whole request: nothing is subscribed, so a client never
  half-succeeds silently), ``Invalid feed``, ``Json Error`` (unparsable or malformed request).

Threading: one asyncio loop on a daemon thread owns every socket; the publisher wakes on its
interval or on ``notify()`` (``call_soon_threadsafe``), computes each product's ticker once and
fans it out. Test faults: :meth:`stall` (no tickers, and for ``None`` no heartbeats either),
:meth:`drop_all`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from websockets.asyncio.server import ServerConnection

from gateway.venue_sim.futures_rest import dumps, ticker_json
from gateway.venue_sim.scenarios import PerpFigures, Scenario
from gateway.venue_sim.ws_face import WsConn, WsFace

__all__ = ["WS_PATH", "FuturesWsServer", "ws_ticker_json"]

log = logging.getLogger("fixgw.venue_sim.futures_ws")

#: The path Kraken serves the feed on (``wss://futures.kraken.com/ws/v1``).
WS_PATH = "/ws/v1"
#: ``instrument_json``'s first margin tier is 2 % initial margin, i.e. 50x.
_LEVERAGE = "50x"
_FEEDS = ("ticker", "heartbeat")


def _nonzero(d: Decimal) -> bool:
    return d != 0


def ws_ticker_json(fig: PerpFigures, now: float) -> dict[str, object]:
    """One perp's WS ``ticker`` message from the scenario figures (see module docstring).

    Built from the REST ticker so both faces show one book top, one ``last`` and one 24 h range.
    """
    rest = ticker_json(fig, now)
    step_s = fig.funding_interval_h * 3600
    next_funding_ms = (int(now // step_s) + 1) * step_s * 1000
    msg: dict[str, object] = {"time": int(now * 1000), "product_id": fig.symbol}
    # Kraken: "If zero, field is not populated" for the four funding figures.
    for key, value in (("funding_rate", fig.funding_rate_abs),
                       ("funding_rate_prediction", fig.funding_rate_prediction_abs),
                       ("relative_funding_rate", fig.funding_rate_rel),
                       ("relative_funding_rate_prediction", fig.prediction_rel)):
        if _nonzero(value):
            msg[key] = value
    premium = ((fig.mark_price - fig.index_price) / fig.index_price * 100).quantize(
        Decimal("0.1"))
    msg.update({
        "next_funding_rate_time": next_funding_ms,
        "feed": "ticker",
        "bid": rest["bid"],
        "ask": rest["ask"],
        "bid_size": rest["bidSize"],
        "ask_size": rest["askSize"],
        "volume": fig.vol24h,
        "dtm": 0,
        "leverage": _LEVERAGE,
        "index": fig.index_price,
        "premium": premium,
        "last": rest["last"],
        "change": rest["change24h"],
        "suspended": fig.suspended,
        "tag": "perpetual",
        "pair": rest["pair"],
        "openInterest": fig.open_interest,
        "markPrice": fig.mark_price,
        "maturityTime": 0,
        "post_only": False,
        "volumeQuote": rest["volumeQuote"],
        "open": rest["open24h"],
        "high": rest["high24h"],
        "low": rest["low24h"],
    })
    return msg


@dataclass(eq=False)
class _Conn(WsConn):
    tickers: set[str] = field(default_factory=set)
    heartbeat: bool = False


class FuturesWsServer(WsFace[_Conn]):
    """Kraken Futures WS v1 ``ticker``/``heartbeat`` over a scenario source; ``start()``, ``url``.

    ``scenario`` is called on the face's loop for every publish, so it must be cheap and
    thread-safe (``FuturesRestServer.scenario`` takes a lock and returns an immutable object).
    """

    def __init__(
        self,
        scenario: Callable[[], Scenario],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ticker_interval_s: float = 1.0,
        heartbeat_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ticker_interval_s <= 0 or heartbeat_interval_s <= 0:
            raise ValueError("ticker_interval_s and heartbeat_interval_s must be > 0")
        self._init_ws(host, port)
        self._scenario = scenario
        self.ticker_interval_s = ticker_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self._clock = clock
        self._wake: asyncio.Event | None = None
        self._last_scenario: Scenario | None = None
        self.tickers_sent = 0  #: ticker messages sent, all connections

    # ---- the face -----------------------------------------------------------------------------

    path = WS_PATH
    label = "Kraken Futures WS"

    def _new_conn(self, ws: ServerConnection) -> _Conn:
        return _Conn(ws)

    async def _on_start(self) -> None:
        self._wake = asyncio.Event()

    def _tasks(self) -> list[Coroutine[Any, Any, None]]:
        return [self._publisher(), self._heartbeats()]

    async def _on_open(self, conn: _Conn) -> None:
        conn.out.put_nowait(dumps({"event": "info", "version": 1}))

    async def _on_message(self, conn: _Conn, raw: str | bytes) -> None:
        self._on_request(conn, raw)

    # ---- hooks for the simulator and tests ------------------------------------------------------

    def notify(self) -> None:
        """The scenario changed: publish every subscribed ticker now (any thread)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    def stall(self, product_id: str | None, seconds: float) -> None:
        """Send no tickers for ``product_id`` for ``seconds``; ``None``: no tickers for any
        product *and* no heartbeats (a silent connection)."""
        self._stall(product_id.upper() if product_id is not None else None, seconds)

    def subscriptions(self) -> list[set[str]]:
        """Each open connection's subscribed tickers (diagnostics for tests)."""
        out: list[set[str]] = []
        self._post(lambda: out.extend(set(c.tickers) for c in self._conns))
        return out

    def _error(self, conn: _Conn, message: str) -> None:
        self._send(conn, {"event": "error", "message": message})

    def _on_request(self, conn: _Conn, raw: str | bytes) -> None:
        try:
            req = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self._error(conn, "Json Error")
            return
        if not isinstance(req, dict) or req.get("event") not in ("subscribe", "unsubscribe"):
            self._error(conn, "Json Error")
            return
        event, feed = str(req["event"]), req.get("feed")
        if feed not in _FEEDS:
            self._error(conn, "Invalid feed")
            return
        if feed == "heartbeat":
            conn.heartbeat = event == "subscribe"
            self._send(conn, {"event": f"{event}d", "feed": "heartbeat"})
            return
        ids = req.get("product_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(p, str) for p in ids):
            self._error(conn, "Json Error")
            return
        scenario = self._scenario()
        known = {s.upper() for s in scenario.perps}
        wanted = list(dict.fromkeys(p.upper() for p in ids))
        if any(p not in known for p in wanted):
            self._error(conn, "Invalid product id")
            return
        if event == "subscribe":
            conn.tickers.update(wanted)
            self._send(conn, {"event": "subscribed", "feed": "ticker", "product_ids": wanted})
            now = self._clock()
            for p in wanted:  # the snapshot: a full ticker right after the ack
                if not self._stalled(p):
                    self._send(conn, ws_ticker_json(scenario.perp(p), now))
                    self.tickers_sent += 1
            return
        had = [p for p in wanted if p in conn.tickers]
        conn.tickers.difference_update(wanted)
        self._send(conn, {"event": "unsubscribed" if had else "unsubscribed_failed",
                          "feed": "ticker", "product_ids": wanted})

    # ---- publishing -----------------------------------------------------------------------------

    async def _publisher(self) -> None:
        assert self._wake is not None
        wake = self._wake
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.ticker_interval_s)
            wake.clear()
            try:
                self._publish()
            except Exception:  # a bad scenario must not end the feed for good
                log.exception("futures WS: publishing tickers failed")

    def _publish(self) -> None:
        subscribed = {p for c in self._conns for p in c.tickers}
        if not subscribed:
            return
        scenario = self._scenario()
        if scenario is not self._last_scenario:
            if self._last_scenario is not None:
                log.info("futures WS: scenario %s now on the ticker feed", scenario.name)
            self._last_scenario = scenario
        now = self._clock()
        frames: dict[str, str] = {}
        for p in subscribed:
            if self._stalled(p):
                continue
            try:
                fig = scenario.perp(p)
            except KeyError:  # the new scenario dropped a perp: its subscribers hear nothing
                continue
            frames[p] = dumps(ws_ticker_json(fig, now))
        for c in self._conns:
            for p in c.tickers:
                text = frames.get(p)
                if text is not None:
                    c.out.put_nowait(text)
                    self.tickers_sent += 1

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            if self._stalled(None):
                continue
            msg = dumps({"feed": "heartbeat", "time": int(self._clock() * 1000)})
            for c in self._conns:
                if c.heartbeat:
                    c.out.put_nowait(msg)
