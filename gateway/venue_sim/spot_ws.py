"""The venue simulator's Kraken spot WebSocket v2 face (public and private on one ``/v2`` path).

It speaks what kraken-api.md section 4 documents, so the gateway's fallback client
(``gateway.transports.kraken_ws``) is exercised against the same frames the real venue sends:

* ``book`` (depth 10/25/100/500/1000): snapshot then updates, each with Kraken's CRC32
  checksum. Like the FIX market-data face (``md_publisher``), every subscription keeps its own
  top-N :class:`TopView` of an L2 mirror of the engine, and every update is the diff of that
  view, so a level that slides into the top N is sent and the checksum always describes exactly
  the book the subscriber can hold (Kraken's "apply, truncate to depth, checksum top 10").
* ``ticker`` (level 1: best bid/ask from the mirror, last trade and 24 h volume, VWAP, low,
  high and change over the engine's trade tape; ``event_trigger`` ``trades``, the default, or
  ``bbo``), so ccxt.pro ``watch_ticker`` and SDK ticker subscribers get real numbers.
* ``ohlc`` (``interval`` minutes; snapshot of the candles on the engine's tape, then the current
  candle on every trade), for ccxt.pro ``watch_ohlcv`` and SDK subscribers.
* ``trade``, ``instrument`` (precisions from the engine's instrument table), ``heartbeat``
  (every ``heartbeat_interval`` s to every connection that subscribed to anything).
* private ``executions`` (token from :class:`Accounts`) and the ``add_order``,
  ``amend_order`` (in place, as REST ``AmendOrder``: same order_id and cl_ord_id) and
  ``cancel_order`` methods, mapping engine events to Kraken's field names.

Threading: the engine calls our listener under its lock on whatever thread traded; the
listener only enqueues onto this face's event loop (``call_soon_threadsafe``), which then owns
the mirror, the views and every socket, so no lock is needed and frames leave in engine order.
The mirror starts from a ``depth_snapshot`` taken after the listener was registered and skips
events with a seq at or below the snapshot's, so no event is lost or applied twice.
Engine calls from WS methods run in a worker thread (``asyncio.to_thread``) so a busy engine
lock never freezes the sockets.

Faults for tests: :meth:`SpotWsServer.stall` (no data and no heartbeats), and
:meth:`SpotWsServer.corrupt_next_checksum`, :meth:`SpotWsServer.drop_all`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from websockets.asyncio.server import ServerConnection

from gateway.marketdata.book import Book
from gateway.marketdata.fix_md import DELETE, OFFER, TopView
from gateway.transports.kraken_ws import loads
from gateway.venue_sim import engine as e
from gateway.venue_sim.accounts import Accounts
from gateway.venue_sim.deadline import DeadlineRefused, parse_deadline
from gateway.venue_sim.instruments import InstrumentKind
from gateway.venue_sim.ws_face import WsConn, WsFace

__all__ = ["BOOK_DEPTHS", "TEXT_INVALID_TOKEN", "SpotWsServer"]

_MIRRORED = (e.BookChanged, e.TradePrinted)  # the events the mirror and the tape follow

_log = logging.getLogger(__name__)

BOOK_DEPTHS = (10, 25, 100, 500, 1000)
TEXT_INVALID_TOKEN = "EAPI:Invalid key"
_TRADE_SNAPSHOT = 50
#: Trades kept per symbol for the ticker's 24 h figures: the engine's own tape length, so the
#: WS ticker and REST Ticker summarise the same trades.
_TAPE = 1000
_DAY_NS = 86_400 * 1_000_000_000
OHLC_INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
_CORRUPT_MASK = 0x5A5A5A5A

_SIDE = {e.Side.BUY: "buy", e.Side.SELL: "sell"}
_ORD_TYPE = {e.OrdType.LIMIT: "limit", e.OrdType.MARKET: "market"}
_TIF = {e.TimeInForce.GTC: "gtc", e.TimeInForce.IOC: "ioc", e.TimeInForce.FOK: "fok"}
_STATUS = {e.OrdStatus.NEW: "new", e.OrdStatus.PARTIALLY_FILLED: "partially_filled",
           e.OrdStatus.FILLED: "filled", e.OrdStatus.CANCELED: "canceled"}


def _rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now_rfc3339() -> str:
    return _rfc3339(time.time_ns())


@dataclass(eq=False)
class _Conn(WsConn):
    books: dict[str, TopView] = field(default_factory=dict)
    trades: set[str] = field(default_factory=set)
    #: symbol -> [event_trigger, last (bid, ask) prices sent] of ticker subscriptions
    tickers: dict[str, list[Any]] = field(default_factory=dict)
    ohlc: set[tuple[str, int]] = field(default_factory=set)  # (symbol, interval minutes)
    heartbeat: bool = False
    owner: str | None = None  # set by a valid executions subscription

    @property
    def active(self) -> bool:
        return (self.heartbeat or bool(self.books) or bool(self.trades) or bool(self.tickers)
                or bool(self.ohlc) or self.owner is not None)


class SpotWsServer(WsFace[_Conn]):
    """Kraken WS v2 face over a :class:`MatchingEngine`; ``start()`` binds, ``url`` to connect."""

    path = "/v2"
    label = "spot WS"
    max_size = 2**20

    def __init__(self, engine: e.MatchingEngine, accounts: Accounts, host: str = "127.0.0.1",
                 port: int = 0, *, heartbeat_interval: float = 1.0,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._init_ws(host, port)
        self._wall_clock = wall_clock  # epoch seconds, for Kraken's deadline (tests inject)
        self.engine = engine
        self.accounts = accounts
        self.heartbeat_interval = heartbeat_interval
        self.symbols = tuple(s for s, i in engine.instruments.items()
                             if i.kind is InstrumentKind.SPOT and s in engine.symbols)
        self._mirror: dict[str, Book] = {}
        self._mirror_seq: dict[str, int] = {}
        self._trades: dict[str, deque[dict[str, Any]]] = {
            s: deque(maxlen=_TRADE_SNAPSHOT) for s in self.symbols}
        self._tape: dict[str, deque[tuple[int, Decimal, Decimal]]] = {
            s: deque(maxlen=_TAPE) for s in self.symbols}
        self._clids = itertools.count(1)
        self._amends = 0  # amend_order answers so far (their amend_id)
        self._corrupt: dict[str, int] = {}

    # ---- the face -----------------------------------------------------------------------------

    def _new_conn(self, ws: ServerConnection) -> _Conn:
        return _Conn(ws)

    async def _on_start(self) -> None:
        self.engine.add_listener(self._on_engine_events)
        for sym in self.symbols:
            snap = self.engine.depth_snapshot(sym)
            book = Book(sym)
            book.apply_snapshot(snap.bids, snap.asks)
            self._mirror[sym] = book
            self._mirror_seq[sym] = snap.seq
            self._tape[sym].extend((t.time, t.price, t.qty)
                                   for t in self.engine.last_trades(sym, _TAPE)
                                   if t.seq <= snap.seq)

    def _on_stop(self) -> None:
        self.engine.remove_listener(self._on_engine_events)

    def _tasks(self) -> list[Coroutine[Any, Any, None]]:
        return [self._heartbeats()]

    async def _on_message(self, conn: _Conn, raw: str | bytes) -> None:
        await self._on_request(conn, raw)

    # ---- faults ---------------------------------------------------------------------------------

    def stall(self, symbol: str | None, seconds: float) -> None:
        """Send nothing for ``symbol`` (None: every symbol) and no heartbeats for ``seconds``.

        Book views are not advanced while stalled, so if the connection survives, the first
        update afterwards is the diff over the whole stall and stays checksum-correct.
        """
        self._stall(symbol, seconds)

    def corrupt_next_checksum(self, symbol: str, count: int = 1) -> None:
        """The next ``count`` book frames for ``symbol`` carry a wrong checksum."""
        self._post(lambda: self._corrupt.__setitem__(symbol, count))

    def subscription_counts(self) -> dict[str, int]:
        """Open connections and their book/trade subscriptions (control port, tests); read on
        the face's loop, which owns the connections."""
        out: dict[str, int] = {}

        def collect() -> None:
            conns = list(self._conns)
            out["connections"] = len(conns)
            out["book_subscriptions"] = sum(len(c.books) for c in conns)
            out["trade_subscriptions"] = sum(len(c.trades) for c in conns)

        self._post(collect)
        return out

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if self._stall_until:
                self._end_stalls()
            for c in list(self._conns):
                if not c.active or self._stalled(None):
                    continue
                if any(self._stalled(s) for s in (*c.books, *c.trades, *c.tickers)):
                    continue
                self._send(c, {"channel": "heartbeat"})

    def _end_stalls(self) -> None:
        """Once a stall is over, send each held-back view its catch-up diff right away rather
        than at the symbol's next engine event (which may never come in a quiet market)."""
        now = time.monotonic()
        ended = [k for k, until in self._stall_until.items() if until <= now]
        for k in ended:
            del self._stall_until[k]
        if not ended:
            return
        for c in list(self._conns):
            for sym in list(c.books):
                if (None in ended or sym in ended) and not self._stalled(sym):
                    self._send_book_update(c, sym, _now_rfc3339())

    # ---- requests -------------------------------------------------------------------------------

    async def _on_request(self, conn: _Conn, raw: str | bytes) -> None:
        time_in = _now_rfc3339()
        try:
            msg = loads(raw)
        except ValueError:
            self._send(conn, {"error": "EGeneral:Invalid arguments:malformed JSON",
                              "success": False, "time_in": time_in,
                              "time_out": _now_rfc3339()})
            return
        if not isinstance(msg, dict):
            return
        method = msg.get("method")
        req_id = msg.get("req_id")
        params = msg.get("params") or {}

        def reply(success: bool, result: Any = None, error: str | None = None,
                  **extra: Any) -> None:
            out: dict[str, Any] = {"method": method, "success": success}
            if success and result is not None:
                out["result"] = result
            if error is not None:
                out["error"] = error
            out.update(extra)
            out["time_in"] = time_in
            out["time_out"] = _now_rfc3339()
            if req_id is not None:
                out["req_id"] = req_id
            self._send(conn, out)

        if not isinstance(params, dict):
            reply(False, error="EGeneral:Invalid arguments:params")
            return
        if method == "ping":
            # Kraken answers a v2 ping with ``method: "pong"`` (docs: spot-websocket-v2/ping);
            # ccxt drops a connection whose pings are not answered that way.
            pong: dict[str, Any] = {"method": "pong", "success": True}
            if req_id is not None:
                pong["req_id"] = req_id
            pong["time_in"] = time_in
            pong["time_out"] = _now_rfc3339()
            self._send(conn, pong)
        elif method == "subscribe":
            self._subscribe(conn, params, reply)
        elif method == "unsubscribe":
            self._unsubscribe(conn, params, reply)
        elif method == "add_order":
            await self._add_order(params, reply)
        elif method == "cancel_order":
            await self._cancel_order(params, reply)
        elif method == "amend_order":
            await self._amend_order(params, reply)
        else:
            reply(False, error=f"EGeneral:Invalid arguments:unsupported method {method!r}")

    def _symbols_param(self, params: Mapping[str, Any], reply: Any) -> list[str] | None:
        syms = params.get("symbol")
        if not isinstance(syms, list) or not syms or not all(isinstance(s, str) for s in syms):
            reply(False, error="EGeneral:Invalid arguments:symbol must be a list of symbols")
            return None
        good = []
        for s in syms:
            if s in self._mirror:
                good.append(s)
            else:
                reply(False, error=f"Currency pair not supported {s}", symbol=s)
        return good

    def _subscribe(self, conn: _Conn, params: Mapping[str, Any], reply: Any) -> None:
        channel = params.get("channel")
        snapshot = params.get("snapshot", True) is not False
        if channel == "heartbeat":
            conn.heartbeat = True
            reply(True, {"channel": "heartbeat"})
        elif channel == "instrument":
            reply(True, {"channel": "instrument", "snapshot": snapshot})
            if snapshot:
                self._send(conn, {"channel": "instrument", "type": "snapshot",
                                  "data": self._instrument_data()})
        elif channel == "book":
            depth = params.get("depth", 10)
            if depth not in BOOK_DEPTHS:
                reply(False, error="EGeneral:Invalid arguments:depth")
                return
            syms = self._symbols_param(params, reply)
            for s in syms or []:
                if s in conn.books:
                    reply(False, error="Already subscribed", symbol=s)
                    continue
                view = TopView(int(depth))
                view.reset_from(self._mirror[s])
                conn.books[s] = view
                reply(True, {"channel": "book", "depth": depth, "snapshot": True, "symbol": s})
                self._send(conn, self._book_frame("snapshot", s, view, self._levels_of(view)))
        elif channel == "ticker":
            trigger = params.get("event_trigger", "trades")
            if trigger not in ("trades", "bbo"):
                reply(False, error="EGeneral:Invalid arguments:event_trigger")
                return
            for s in self._symbols_param(params, reply) or []:
                item = self._ticker_item(s)
                conn.tickers[s] = [trigger, (item["bid"], item["ask"])]
                reply(True, {"channel": "ticker", "symbol": s, "snapshot": snapshot,
                             "event_trigger": trigger})
                if snapshot:
                    self._send(conn, {"channel": "ticker", "type": "snapshot", "data": [item]})
        elif channel == "ohlc":
            interval = params.get("interval", 1)
            if interval not in OHLC_INTERVALS or isinstance(interval, bool):
                reply(False, error="EGeneral:Invalid arguments:interval")
                return
            for s in self._symbols_param(params, reply) or []:
                conn.ohlc.add((s, int(interval)))
                reply(True, {"channel": "ohlc", "symbol": s, "snapshot": snapshot,
                             "interval": interval})
                if snapshot:
                    self._send(conn, {"channel": "ohlc", "type": "snapshot",
                                      "timestamp": _now_rfc3339(),
                                      "data": self._candles(s, int(interval))})
        elif channel == "trade":
            syms = self._symbols_param(params, reply)
            for s in syms or []:
                conn.trades.add(s)
                reply(True, {"channel": "trade", "snapshot": snapshot, "symbol": s})
                if snapshot:
                    self._send(conn, {"channel": "trade", "type": "snapshot",
                                      "data": list(self._trades[s])})
        elif channel == "executions":
            owner = self._owner(params)
            if owner is None:
                reply(False, error=TEXT_INVALID_TOKEN)
                return
            conn.owner = owner
            reply(True, {"channel": "executions", "snapshot": True})
            if params.get("snap_orders", True) is not False:
                # Open orders now; later engine events queue behind this frame on our loop,
                # and an event already queued is a later state, so the view converges.
                orders = self.engine.open_orders(owner)
                self._send(conn, {"channel": "executions", "type": "snapshot",
                                  "data": [self._order_item(o, "new") for o in orders]})
        else:
            reply(False, error=f"EGeneral:Invalid arguments:unknown channel {channel!r}")

    def _unsubscribe(self, conn: _Conn, params: Mapping[str, Any], reply: Any) -> None:
        channel = params.get("channel")
        if channel == "book" or channel == "trade":
            for s in self._symbols_param(params, reply) or []:
                subs: Mapping[str, Any] | set[str] = (
                    conn.books if channel == "book" else conn.trades)
                if s not in subs:
                    reply(False, error="Subscription Not Found", symbol=s)
                    continue
                if channel == "book":
                    del conn.books[s]
                else:
                    conn.trades.discard(s)
                reply(True, {"channel": channel, "symbol": s})
        elif channel == "ohlc":
            interval = params.get("interval", 1)
            for s in self._symbols_param(params, reply) or []:
                key = (s, interval if isinstance(interval, int) else 1)
                if key not in conn.ohlc:
                    reply(False, error="Subscription Not Found", symbol=s)
                else:
                    conn.ohlc.discard(key)
                    reply(True, {"channel": "ohlc", "symbol": s, "interval": key[1]})
        elif channel == "ticker":
            for s in self._symbols_param(params, reply) or []:
                if conn.tickers.pop(s, None) is None:
                    reply(False, error="Subscription Not Found", symbol=s)
                else:
                    reply(True, {"channel": "ticker", "symbol": s})
        elif channel == "heartbeat":
            conn.heartbeat = False
            reply(True, {"channel": "heartbeat"})
        elif channel == "executions":
            conn.owner = None
            reply(True, {"channel": "executions"})
        else:
            reply(False, error="Subscription Not Found")

    def _owner(self, params: Mapping[str, Any]) -> str | None:
        token = params.get("token")
        return self.accounts.owner_of_token(token) if isinstance(token, str) else None

    def _instrument_data(self) -> dict[str, Any]:
        pairs = []
        assets: dict[str, dict[str, Any]] = {}
        for s in self.symbols:
            i = self.engine.instruments[s]
            pairs.append({
                "symbol": s, "base": i.base, "quote": i.quote, "status": "online",
                "price_precision": i.price_decimals, "price_increment": i.price_tick,
                "qty_precision": i.qty_decimals, "qty_increment": i.lot_size,
                "qty_min": i.min_qty, "marginable": False, "has_index": False,
                "execution_venue": "SIM",
            })
            for a in (i.base, i.quote):
                assets.setdefault(a, {"id": a, "status": "enabled", "precision": 8,
                                      "precision_display": 5, "borrowable": False,
                                      "collateral_value": Decimal(0), "margin_rate": Decimal(0)})
        return {"assets": list(assets.values()), "pairs": pairs}

    def _candles(self, symbol: str, interval: int, *, last_only: bool = False
                 ) -> list[dict[str, Any]]:
        """``ohlc`` items for the tape's trades grouped by ``interval`` minutes, oldest first
        (or only the newest candle, for updates)."""
        frame = interval * 60 * 1_000_000_000
        groups: dict[int, list[tuple[Decimal, Decimal]]] = {}
        for t, p, q in self._tape[symbol]:
            groups.setdefault(t - t % frame, []).append((p, q))
        starts = sorted(groups)[-1:] if last_only else sorted(groups)
        inst = self.engine.instruments[symbol]
        out = []
        for start in starts:
            g = groups[start]
            volume = sum((q for _, q in g), Decimal(0))
            out.append({
                "symbol": symbol, "open": g[0][0], "high": max(p for p, _ in g),
                "low": min(p for p, _ in g), "close": g[-1][0],
                "vwap": (sum((p * q for p, q in g), Decimal(0)) / volume).quantize(
                    inst.price_quantum),
                "trades": len(g), "volume": volume,
                "interval_begin": _rfc3339(start), "interval": interval,
                "timestamp": _rfc3339(start + frame),
            })
        return out

    def _ticker_item(self, symbol: str) -> dict[str, Any]:
        """One ``ticker`` data item: top of the mirror book and the last 24 h of the tape
        (window ending at the newest trade or now, whichever is later). ``change`` is last
        minus the window's first trade price; zeros when nothing traded in the window."""
        top = self._mirror[symbol].top()
        inst = self.engine.instruments[symbol]
        zero_px, zero_qty = Decimal(0).quantize(inst.price_quantum), Decimal(0)
        tape = self._tape[symbol]
        since = time.time_ns() - _DAY_NS
        window = [(p, q) for t, p, q in tape if t >= since]
        volume = sum((q for _, q in window), Decimal(0))
        vwap = (sum((p * q for p, q in window), Decimal(0)) / volume).quantize(
            inst.price_quantum) if volume else zero_px
        last = tape[-1][1] if tape else zero_px
        change = last - window[0][0] if window else zero_px
        pct = (change / window[0][0] * 100).quantize(Decimal("0.01")) if window else Decimal(0)
        return {
            "symbol": symbol,
            "bid": top.bid.price if top.bid else zero_px,
            "bid_qty": top.bid.qty if top.bid else zero_qty,
            "ask": top.ask.price if top.ask else zero_px,
            "ask_qty": top.ask.qty if top.ask else zero_qty,
            "last": last,
            "volume": volume,
            "vwap": vwap,
            "low": min((p for p, _ in window), default=zero_px),
            "high": max((p for p, _ in window), default=zero_px),
            "change": change,
            "change_pct": pct,
            "timestamp": _now_rfc3339(),
        }

    # ---- book frames ----------------------------------------------------------------------------

    @staticmethod
    def _levels_of(view: TopView) -> tuple[list[tuple[Decimal, Decimal]],
                                           list[tuple[Decimal, Decimal]]]:
        return sorted(view.bids.items(), reverse=True), sorted(view.asks.items())

    def _book_frame(self, kind: str, symbol: str, view: TopView,
                    levels: tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]],
                    ts: str | None = None) -> dict[str, Any]:
        inst = self.engine.instruments[symbol]
        checksum = view.checksum(inst.price_decimals, inst.qty_decimals)
        if self._corrupt.get(symbol, 0) > 0:
            self._corrupt[symbol] -= 1
            checksum ^= _CORRUPT_MASK
        bids, asks = levels
        return {"channel": "book", "type": kind, "data": [{
            "symbol": symbol,
            "bids": [{"price": p, "qty": q} for p, q in bids],
            "asks": [{"price": p, "qty": q} for p, q in asks],
            "checksum": checksum,
            "timestamp": ts or _now_rfc3339(),
        }]}

    # ---- engine events (listener under the engine lock -> our loop) -----------------------------

    def _on_engine_events(self, events: tuple[e.Event, ...]) -> None:
        loop = self._loop
        # Orders' own events are only for open connections; with none, only the book and trade
        # events (mirror, tape) need the loop, and a call per order would wake it for nothing
        # (a sixth of the simulator's time when only FIX clients trade). A connection that
        # opens meanwhile has subscribed to nothing yet, so it misses nothing.
        if not self._conns and not any(isinstance(ev, _MIRRORED) for ev in events):
            return
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._dispatch, events)

    def _dispatch(self, events: tuple[e.Event, ...]) -> None:
        touched: dict[str, str] = {}
        trades: dict[str, list[dict[str, Any]]] = {}
        private: list[e.Event] = []
        for ev in events:
            if isinstance(ev, e.BookChanged):
                book = self._mirror.get(ev.symbol)
                if book is None or ev.seq <= self._mirror_seq[ev.symbol]:
                    continue
                book.apply_update("bid" if ev.side is e.Side.BUY else "ask", ev.price,
                                  ev.new_level_qty)
                touched[ev.symbol] = _rfc3339(ev.time)
            elif isinstance(ev, e.TradePrinted):
                if ev.symbol not in self._trades or ev.seq <= self._mirror_seq[ev.symbol]:
                    continue
                t = {"symbol": ev.symbol, "side": _SIDE[ev.aggressor_side], "price": ev.price,
                     "qty": ev.qty, "ord_type": "limit", "trade_id": ev.trade_id,
                     "timestamp": _rfc3339(ev.time)}
                self._trades[ev.symbol].append(t)
                self._tape[ev.symbol].append((ev.time, ev.price, ev.qty))
                trades.setdefault(ev.symbol, []).append(t)
            elif isinstance(ev, e.Accepted | e.Filled | e.Canceled | e.Replaced):
                private.append(ev)
        for c in list(self._conns):
            for sym, ts in touched.items():
                if sym in c.books and not self._stalled(sym):
                    self._send_book_update(c, sym, ts)
            for sym, ts_list in trades.items():
                if sym in c.trades and not self._stalled(sym):
                    self._send(c, {"channel": "trade", "type": "update", "data": ts_list})
            for sym, interval in sorted(c.ohlc):
                if sym in trades and not self._stalled(sym):
                    self._send(c, {"channel": "ohlc", "type": "update",
                                   "timestamp": _now_rfc3339(),
                                   "data": self._candles(sym, interval, last_only=True)})
            for sym, sub in c.tickers.items():
                if self._stalled(sym) or (sym not in trades and sym not in touched):
                    continue
                item = self._ticker_item(sym)
                bbo = (item["bid"], item["ask"])
                if (sub[0] == "trades" and sym in trades) or (sub[0] == "bbo" and bbo != sub[1]):
                    sub[1] = bbo
                    self._send(c, {"channel": "ticker", "type": "update", "data": [item]})
            if c.owner is not None and private and not self._stalled(None):
                items = self._execution_items(c.owner, private)
                if items:
                    self._send(c, {"channel": "executions", "type": "update", "data": items})

    def _send_book_update(self, c: _Conn, sym: str, ts: str) -> None:
        """Advance the subscriber's top-N view to the mirror and send the diff, if any."""
        view = c.books[sym]
        entries = view.advance(self._mirror[sym])
        if not entries:
            return
        bids: list[tuple[Decimal, Decimal]] = []
        asks: list[tuple[Decimal, Decimal]] = []
        for en in entries:
            qty = Decimal(0) if en.action == DELETE else en.qty
            (asks if en.entry_type == OFFER else bids).append((en.price, qty))
        self._send(c, self._book_frame("update", sym, view, (bids, asks), ts))

    # ---- executions -----------------------------------------------------------------------------

    def _order_item(self, o: e.OrderSnapshot, exec_type: str, exec_id: str | None = None,
                    ts: int | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "order_id": o.order_id, "symbol": o.symbol,
            "exec_type": exec_type, "order_status": _STATUS.get(o.status, "new"),
            "side": _SIDE[o.side], "order_type": _ORD_TYPE[o.ord_type],
            "time_in_force": _TIF[o.tif], "order_qty": o.qty, "cum_qty": o.cum_qty,
            "leaves_qty": o.leaves_qty, "avg_price": o.avg_px,
            "timestamp": _rfc3339(o.transact_time if ts is None else ts),
        }
        if not e.is_made_up_cl_ord_id(o.cl_ord_id):  # as Kraken: only a client's own
            item["cl_ord_id"] = o.cl_ord_id
        if o.price is not None:
            item["limit_price"] = o.price
        if exec_id is not None:
            item["exec_id"] = exec_id
        return item

    def _execution_items(self, owner: str, events: list[e.Event]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for ev in events:
            if isinstance(ev, e.Accepted):
                if ev.order.owner != owner:
                    continue
                pending = self._order_item(ev.order, "pending_new", ev.exec_id, ev.time)
                pending["order_status"] = "pending_new"
                out.append(pending)
                new = self._order_item(ev.order, "new", ev.exec_id, ev.time)
                new["order_status"] = "new"  # later fills of this call report their own status
                out.append(new)
            elif isinstance(ev, e.Filled):
                if ev.order.owner != owner:
                    continue
                trade = self._order_item(ev.order, "trade", ev.exec_id, ev.time)
                trade.update({"last_qty": ev.last_qty, "last_price": ev.last_px,
                              "trade_id": ev.trade_id,
                              "liquidity_ind": "m" if ev.is_maker else "t"})
                out.append(trade)
                if ev.order.status is e.OrdStatus.FILLED:
                    out.append(self._order_item(ev.order, "filled", ev.exec_id, ev.time))
            elif isinstance(ev, e.Canceled):
                if ev.order.owner != owner:
                    continue
                item = self._order_item(ev.order, "canceled", ev.exec_id, ev.time)
                item["order_status"] = "canceled"
                item["reason"] = ev.text
                out.append(item)
            elif isinstance(ev, e.Replaced):
                if ev.order.owner != owner:
                    continue
                out.append(self._order_item(ev.order, "amended", ev.exec_id, ev.time))
        return out

    # ---- trading methods ------------------------------------------------------------------------

    async def _add_order(self, params: Mapping[str, Any], reply: Any) -> None:
        owner = self._owner(params)
        if owner is None:
            reply(False, error=TEXT_INVALID_TOKEN)
            return
        try:
            side = {"buy": e.Side.BUY, "sell": e.Side.SELL}[params["side"]]
            ord_type = {"limit": e.OrdType.LIMIT, "market": e.OrdType.MARKET}[
                params["order_type"]]
            tif = {"gtc": e.TimeInForce.GTC, "ioc": e.TimeInForce.IOC,
                   "fok": e.TimeInForce.FOK}[params.get("time_in_force", "gtc")]
        except KeyError as exc:
            reply(False, error=f"EGeneral:Invalid arguments:{exc.args[0]}")
            return
        symbol = params.get("symbol")
        if not isinstance(symbol, str) or symbol not in self._mirror:
            reply(False, error=e.TEXT_UNKNOWN_PAIR)
            return
        try:
            qty = _decimal(params.get("order_qty"))
            raw_px = params.get("limit_price")
            price = None if raw_px is None else _decimal(raw_px)
        except (TypeError, ValueError, InvalidOperation):
            reply(False, error="EGeneral:Invalid arguments:order_qty/limit_price")
            return
        if qty is None:
            reply(False, error=e.TEXT_INVALID_VOLUME)
            return
        clid = params.get("cl_ord_id")
        if clid is not None and (not isinstance(clid, str) or e.is_made_up_cl_ord_id(clid)):
            reply(False, error="EGeneral:Invalid arguments:cl_ord_id")
            return
        try:
            # Checked on arrival, and by the engine again once it holds its lock.
            deadline = parse_deadline(params.get("deadline"), self._wall_clock)
        except DeadlineRefused as exc:
            reply(False, error=exc.error)
            return
        engine_clid = clid if clid else f"{e.SPOT_WS_CL_ORD_ID_PREFIX}{next(self._clids)}"
        try:
            # post_only: refused if it would take, by the engine under its lock (see
            # PostOnlyRefused), so an order crossing meanwhile cannot make it a taker.
            events = await asyncio.to_thread(self.engine.submit, owner, engine_clid, symbol,
                                             side, qty, price, ord_type, tif,
                                             deadline=deadline,
                                             post_only=params.get("post_only") is True)
        except (DeadlineRefused, e.PostOnlyRefused) as exc:
            # DeadlineRefused: passed while the request waited for the engine.
            reply(False, error=exc.error)
            return
        first = events[0] if events else None
        if isinstance(first, e.Rejected):
            reply(False, error=first.text)
            return
        assert isinstance(first, e.Accepted)
        result: dict[str, Any] = {"order_id": first.order.order_id}
        if clid:
            result["cl_ord_id"] = clid
        reply(True, result)

    async def _cancel_order(self, params: Mapping[str, Any], reply: Any) -> None:
        owner = self._owner(params)
        if owner is None:
            reply(False, error=TEXT_INVALID_TOKEN)
            return
        ids = params.get("order_id") or []
        clids = params.get("cl_ord_id") or []
        if not isinstance(ids, list) or not isinstance(clids, list) or not (ids or clids):
            reply(False, error="EGeneral:Invalid arguments:order_id or cl_ord_id list required")
            return
        targets = [("order_id", str(i)) for i in ids] + [("cl_ord_id", str(c)) for c in clids]
        for key, value in targets:
            req_clid = f"{e.SPOT_WS_CL_ORD_ID_PREFIX}x{next(self._clids)}"
            if key == "order_id":
                events = await asyncio.to_thread(self.engine.cancel, owner, req_clid, None,
                                                 value)
            else:
                events = await asyncio.to_thread(self.engine.cancel, owner, req_clid, value)
            first = events[0] if events else None
            if isinstance(first, e.CancelRejected):
                reply(False, error=first.reason, **{key: value})
            elif isinstance(first, e.Canceled):
                result = {"order_id": first.order.order_id}
                if key == "cl_ord_id":
                    result["cl_ord_id"] = value
                reply(True, result)
            else:
                reply(False, error="EGeneral:Internal error", **{key: value})

    async def _amend_order(self, params: Mapping[str, Any], reply: Any) -> None:
        owner = self._owner(params)
        if owner is None:
            reply(False, error=TEXT_INVALID_TOKEN)
            return
        order_id, clid = params.get("order_id"), params.get("cl_ord_id")
        if not isinstance(order_id, str | None) or not isinstance(clid, str | None) or not (
                order_id or clid):
            reply(False, error="EGeneral:Invalid arguments:order_id or cl_ord_id required")
            return
        try:
            qty = _decimal(params.get("order_qty"))
            price = _decimal(params.get("limit_price"))
        except (TypeError, ValueError, InvalidOperation):
            reply(False, error="EGeneral:Invalid arguments:order_qty/limit_price")
            return
        if qty is None and price is None:
            reply(False, error="EGeneral:Invalid arguments:order_qty or limit_price required")
            return
        try:
            # As for add_order: on arrival, and by the engine once it holds its lock.
            deadline = parse_deadline(params.get("deadline"), self._wall_clock)
        except DeadlineRefused as exc:
            reply(False, error=exc.error)
            return
        snap = await asyncio.to_thread(self.engine.order_status, owner, clid, order_id)
        if snap is None or not snap.is_open:
            reply(False, error=e.TEXT_UNKNOWN_ORDER)
            return
        # In place: the engine's replace under the order's own ClOrdID (as REST AmendOrder);
        # below the filled quantity, the remainder is canceled (Kraken's amend docs).
        try:
            events = await asyncio.to_thread(self.engine.replace, owner, snap.cl_ord_id, None,
                                             qty, price, order_id=snap.order_id,
                                             deadline=deadline, cancel_below_filled=True)
        except DeadlineRefused as exc:  # passed while the request waited for the engine
            reply(False, error=exc.error)
            return
        first = events[0] if events else None
        if isinstance(first, e.CancelRejected):
            reason = first.reason
            reply(False, error=reason if reason.startswith("E") else e.TEXT_UNKNOWN_ORDER)
            return
        self._amends += 1
        result: dict[str, Any] = {"amend_id": f"TWSAMD{self._amends:06d}"}
        result.update({"order_id": order_id} if order_id else {"cl_ord_id": clid})
        reply(True, result)


def _decimal(value: object) -> Decimal | None:
    """A JSON number (parsed as Decimal/int) or a numeric string; None when missing."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("boolean is not a number")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int | str):
        d = Decimal(value)
    else:
        raise TypeError(f"not a number: {value!r}")
    if not d.is_finite():
        raise ValueError("non-finite number")
    return d
