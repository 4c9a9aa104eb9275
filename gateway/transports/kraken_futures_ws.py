"""Kraken Futures WebSocket v1 ``ticker`` client: perp mark, index, funding and open interest as
they change, for the signal runner.

Why a feed next to the REST poller: a poll every few seconds (and, at Kraken's REST rate limits,
no faster) leaves the carry and gravity figures up to one interval behind a funding flip or an OI
jump; the ticker feed pushes every product about once a second. Funding *history* (which the
carry signal needs to infer the settlement interval) is REST-only, so the poller stays, and the
split is (see ``gateway.transports.perp_poller``):

* while this feed is live for a symbol (connected, and a ticker within ``stale_after_s``), the
  poller fetches only that symbol's funding history and delivers no REST ticker for it; every
  WS ticker is delivered with the poller's latest history (``funding_history`` provider);
* when the feed is down or a symbol silent, the poller delivers REST tickers again (and is woken
  at once on a disconnect through ``on_down``), so the inputs keep flowing at the REST rate.

What it does on the wire (Kraken's ``futures-websocket/ticker`` and ``heartbeat`` docs):

* subscribes ``heartbeat`` and ``ticker`` for each configured perp, one request per product so
  that a product the venue does not know fails alone
  (``{"event":"subscribe","feed":"ticker","product_ids":["PF_XBTUSD"]}``); the venue answers
  ``subscribed`` and then sends a full ticker per product, first at once and then about every
  second;
* a product silent for more than ``stale_after_s`` is resubscribed (unsubscribe + subscribe: a
  fresh snapshot), and a connection silent that long (no ticker, no heartbeat) is dropped and
  reopened; reconnects back off exponentially with jitter (``backoff_initial_s`` ..
  ``backoff_max_s``, reset once a connection delivered a ticker), so a dead venue is not hammered;
* ``{"event":"error","message":...}`` (``Invalid product id``, ``Invalid feed``, ``Json Error``)
  is logged and kept in ``last_error``; the other products keep streaming;
* Kraken closes a connection without a ping for 60 s: the ``websockets`` client pings every
  20 s on its own (its default ``ping_interval``), which also notices a half-open socket.

Parsing (:func:`parse_ws_ticker`) gives the *same* :class:`PerpTicker` the REST client gives, with
every number a ``Decimal`` read from the JSON text (``loads`` uses ``parse_float=Decimal``):
``markPrice``, ``index``, ``openInterest``, ``volume`` (24 h, contracts), ``bid``/``ask``/
``last``; funding is Kraken's **absolute** ``funding_rate`` and ``funding_rate_prediction``, which
Kraken *omits when zero* (so absent means 0 for a perpetual, never "unknown"); the current
relative rate is the venue's ``relative_funding_rate`` when sent (the venue divides by the spot
price of the calculation time, which we cannot), else derived exactly as the REST client derives
it (kraken-api.md §5: linear ``absolute / mark``, inverse ``absolute × mark``). The prediction's
relative form stays ``PerpTicker.funding_rate_prediction_rel`` (derived from the absolute, like
REST), so a REST and a WS ticker of one state give the signal runner the same funding records.
``next_funding_rate_time`` is kept per symbol (:meth:`KrakenFuturesWs.next_funding_time`): Kraken's
examples carry an epoch in ms, its text says "time until" in ms; a value before 2001 is read as
the latter.

Updates are delivered as ``on_update(ticker, funding_history, source="ws")`` on the client's own
event-loop thread (the gateway's consumers are thread-safe and fast: the signal runner only
stores the input and marks the symbol dirty).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from gateway.transports.kraken_futures_rest import (
    FundingRate,
    PerpTicker,
    contract_type,
    relative_from_absolute,
)
from gateway.transports.kraken_ws import LoopThread, dumps, loads

__all__ = ["WS_SOURCE", "KrakenFuturesWs", "PerpUpdateSink", "parse_ws_ticker"]

log = logging.getLogger("fixgw.transports.kraken_futures_ws")

#: The ``source`` this client marks its updates with (the poller's are ``"rest"``).
WS_SOURCE = "ws"
#: Below this, ``next_funding_rate_time`` is a duration in ms, not an epoch (2001-09-09).
_EPOCH_MS_FLOOR = 1_000_000_000_000


class PerpUpdateSink(Protocol):
    """Where parsed tickers go (``SignalRunner.on_perp_update`` satisfies it)."""

    def __call__(self, ticker: PerpTicker, funding: Sequence[FundingRate], *,
                 source: str) -> None: ...


def _dec(obj: Mapping[str, Any], key: str) -> Decimal:
    value = obj.get(key)
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{key}: missing or not a number ({value!r})")
    try:
        if isinstance(value, Decimal):
            out = value
        elif isinstance(value, int):
            out = Decimal(value)
        elif isinstance(value, float):  # only from a hand-built dict; the wire gives Decimal
            out = Decimal(repr(value))
        elif isinstance(value, str):
            out = Decimal(value)
        else:
            raise ValueError(f"{key}: not a number ({value!r})")
    except InvalidOperation:
        raise ValueError(f"{key}: {value!r} is not a number") from None
    if not out.is_finite():
        raise ValueError(f"{key}: not finite ({value!r})")
    return out


def _dec_or_zero(obj: Mapping[str, Any], key: str) -> Decimal:
    """Kraken omits a zero funding figure: absent is 0, not unknown."""
    return Decimal(0) if obj.get(key) is None else _dec(obj, key)


def _opt_dec(obj: Mapping[str, Any], key: str) -> Decimal | None:
    return None if obj.get(key) is None else _dec(obj, key)


def parse_ws_ticker(msg: Mapping[str, Any]) -> PerpTicker:
    """One ``ticker`` feed message of a perpetual; ``ValueError`` if it is not one or is
    malformed (see the module docstring for each field's meaning)."""
    pid = msg.get("product_id")
    if not isinstance(pid, str) or not pid:
        raise ValueError("ticker without a product_id")
    symbol = pid.upper()
    tag = msg.get("tag")
    if tag is not None and tag != "perpetual":
        raise ValueError(f"{symbol}: not a perpetual (tag {tag!r})")
    mark = _dec(msg, "markPrice")
    if mark <= 0:
        raise ValueError(f"{symbol}: markPrice must be > 0, got {mark}")
    funding_abs = _dec_or_zero(msg, "funding_rate")
    rel = _opt_dec(msg, "relative_funding_rate")
    if rel is None:
        rel = (Decimal(0) if funding_abs == 0
               else relative_from_absolute(funding_abs, mark, contract_type(symbol)))
    return PerpTicker(
        symbol=symbol,
        mark_price=mark,
        index_price=_dec(msg, "index"),
        funding_rate_abs=funding_abs,
        funding_rate_rel=rel,
        funding_rate_prediction_abs=_dec_or_zero(msg, "funding_rate_prediction"),
        open_interest=_dec(msg, "openInterest"),
        vol24h=_dec(msg, "volume"),
        last_time=None,  # the feed carries no last-trade time (``time`` is the server's clock)
        bid=_opt_dec(msg, "bid"),
        ask=_opt_dec(msg, "ask"),
        last=_opt_dec(msg, "last"),
        suspended=bool(msg.get("suspended", False)),
        pair=str(msg.get("pair", "")),
    )


@dataclass(slots=True)
class _Sym:
    last_update: float | None = None  # wall clock of the last accepted ticker
    last_tick_m: float = 0.0  # monotonic: last ticker, or (re)subscription as a grace start
    ticker: PerpTicker | None = None
    next_funding: float | None = None
    updates: int = 0


class KrakenFuturesWs(LoopThread):
    """Ticker feed for ``symbols`` on its own event-loop thread (see module docstring).

    ``funding_history(symbol)`` supplies the history delivered with each ticker (the poller's
    :meth:`~gateway.transports.perp_poller.PerpPoller.funding_history`); ``on_down`` is called
    (loop thread) whenever a connection ends, so a REST fallback can poll at once.
    """

    def __init__(
        self,
        url: str,
        symbols: Sequence[str],
        on_update: PerpUpdateSink,
        *,
        funding_history: Callable[[str], Sequence[FundingRate]] | None = None,
        stale_after_s: float = 10.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        open_timeout_s: float = 5.0,
        on_down: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        name: str = "kraken-futures-ws",
    ) -> None:
        if not symbols:
            raise ValueError("KrakenFuturesWs needs at least one symbol")
        if stale_after_s <= 0 or backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("need stale_after_s > 0 and 0 < backoff_initial_s <= backoff_max_s")
        super().__init__()
        self.url = url
        self.symbols: tuple[str, ...] = tuple(dict.fromkeys(s.upper() for s in symbols))
        self.on_update = on_update
        self._funding_history = funding_history
        self.stale_after_s = float(stale_after_s)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.open_timeout_s = float(open_timeout_s)
        self._on_down = on_down
        self._clock = clock
        self._name = name
        self._lock = threading.Lock()
        self._syms = {s: _Sym() for s in self.symbols}
        self._connected = threading.Event()
        self.connects = 0  #: connections opened (1 + reconnects)
        self.stale_disconnects = 0  #: connections dropped for silence
        self.resubscribes = 0  #: single products resubscribed for silence
        self.parse_errors = 0  #: ticker frames that could not be parsed
        self.last_error: str | None = None  #: the venue's last error event, or a transport error

    # start() connects and streams on a daemon thread (returns at once); stop() closes the
    # connection and ends the thread: LoopThread.

    # -- observations (any thread) -----------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def is_live(self, symbol: str) -> bool:
        """Connected and a ticker of ``symbol`` accepted within ``stale_after_s``: the REST
        poller need not deliver this symbol's ticker."""
        if not self._connected.is_set():
            return False
        with self._lock:
            st = self._syms.get(symbol.upper())
            last = st.last_update if st is not None else None
        return last is not None and self._clock() - last <= self.stale_after_s

    def last_update(self, symbol: str) -> float | None:
        """Wall-clock time of the last ticker of ``symbol`` accepted by ``on_update``."""
        with self._lock:
            st = self._syms.get(symbol.upper())
            return st.last_update if st is not None else None

    def latest(self, symbol: str) -> PerpTicker | None:
        """The last parsed ticker of ``symbol``."""
        with self._lock:
            st = self._syms.get(symbol.upper())
            return st.ticker if st is not None else None

    def next_funding_time(self, symbol: str) -> float | None:
        """Epoch seconds of the next settlement, as the last ticker said."""
        with self._lock:
            st = self._syms.get(symbol.upper())
            return st.next_funding if st is not None else None

    def updates(self, symbol: str) -> int:
        """Tickers of ``symbol`` accepted so far."""
        with self._lock:
            st = self._syms.get(symbol.upper())
            return st.updates if st is not None else 0

    # -- the connection loop -----------------------------------------------------------------

    async def _main(self) -> None:
        delay = self.backoff_initial_s
        while not self._stopping:
            healthy = False
            try:
                async with connect(self.url, open_timeout=self.open_timeout_s,
                                   max_size=2**20) as ws:
                    self.connects += 1
                    healthy = await self._session(ws)
            except (OSError, TimeoutError, ConnectionClosed, WebSocketException) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("futures WS %s: connection failed: %s", self.url, exc)
            finally:
                was_up = self._connected.is_set()
                self._connected.clear()
                if was_up and self._on_down is not None and not self._stopping:
                    try:
                        self._on_down()
                    except Exception:
                        log.exception("futures WS: on_down hook failed")
            if self._stopping:
                break
            if healthy:
                delay = self.backoff_initial_s
            await asyncio.sleep(delay * (0.5 + 0.5 * random.random()))  # jitter
            delay = min(self.backoff_max_s, delay * 2)

    async def _session(self, ws: ClientConnection) -> bool:
        """Subscribe and read until the connection ends or goes silent; True if it delivered
        at least one ticker (the backoff then restarts from its minimum)."""
        await ws.send(dumps({"event": "subscribe", "feed": "heartbeat"}))
        for sym in self.symbols:  # one request each: an unknown product blocks only itself
            await ws.send(dumps({"event": "subscribe", "feed": "ticker", "product_ids": [sym]}))
        now_m = time.monotonic()
        with self._lock:
            for st in self._syms.values():
                st.last_tick_m = now_m  # grace: the snapshot is on its way
        self._connected.set()
        log.info("futures WS %s: connected, ticker subscribed for %s", self.url,
                 ", ".join(self.symbols))
        healthy = False
        last_any = now_m
        check_s = min(1.0, self.stale_after_s / 4)
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), check_s)
            except TimeoutError:
                pass
            else:
                last_any = time.monotonic()
                if self._on_frame(raw):
                    healthy = True
            now_m = time.monotonic()
            if now_m - last_any > self.stale_after_s:
                self.stale_disconnects += 1
                log.warning("futures WS %s: nothing for %.1fs, reconnecting", self.url,
                            self.stale_after_s)
                return healthy
            await self._resubscribe_silent(ws, now_m)

    async def _resubscribe_silent(self, ws: ClientConnection, now_m: float) -> None:
        with self._lock:
            silent = [s for s, st in self._syms.items()
                      if now_m - st.last_tick_m > self.stale_after_s]
            for s in silent:
                self._syms[s].last_tick_m = now_m  # another full window before the next try
        if not silent:
            return
        self.resubscribes += len(silent)
        log.warning("futures WS %s: no ticker for %s in %.1fs, resubscribing", self.url,
                    ", ".join(silent), self.stale_after_s)
        for sym in silent:
            await ws.send(dumps({"event": "unsubscribe", "feed": "ticker", "product_ids": [sym]}))
            await ws.send(dumps({"event": "subscribe", "feed": "ticker", "product_ids": [sym]}))

    def _on_frame(self, raw: str | bytes) -> bool:
        """Handle one frame; True when it was an accepted ticker."""
        try:
            msg = loads(raw)
        except ValueError:
            self.parse_errors += 1
            log.warning("futures WS: unparsable frame %r", raw[:200])
            return False
        if not isinstance(msg, dict):
            return False
        event = msg.get("event")
        if event is not None:
            if event == "error" or str(event).endswith("_failed"):
                self.last_error = f"{event}: {msg.get('message', msg)}"
                log.warning("futures WS %s: venue says %s", self.url, self.last_error)
            return False
        if msg.get("feed") != "ticker":
            return False  # heartbeat (its arrival already counted as life)
        try:
            ticker = parse_ws_ticker(msg)
        except ValueError as exc:
            self.parse_errors += 1
            log.warning("futures WS: bad ticker: %s", exc)
            return False
        if ticker.symbol not in self._syms:
            return False
        history = (list(self._funding_history(ticker.symbol))
                   if self._funding_history is not None else [])
        try:
            self.on_update(ticker, history, source=WS_SOURCE)
        except Exception:
            log.exception("futures WS: on_update failed for %s", ticker.symbol)
            return False
        nft = msg.get("next_funding_rate_time")
        now = self._clock()
        next_funding: float | None = None
        if isinstance(nft, int | Decimal) and not isinstance(nft, bool):
            ms = float(nft)
            next_funding = ms / 1000 if ms >= _EPOCH_MS_FLOOR else now + ms / 1000
        with self._lock:
            st = self._syms[ticker.symbol]
            st.last_update = now
            st.last_tick_m = time.monotonic()
            st.ticker = ticker
            st.next_funding = next_funding
            st.updates += 1
        return True
