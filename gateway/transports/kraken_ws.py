"""Kraken spot WebSocket v2 client: the gateway's fallback transport for market data and orders.

Why it looks the way it does (kraken-api.md section 4):

* v2 ``book`` frames carry no sequence number; the CRC32 ``checksum`` on the snapshot and on
  every update is the only way to notice a missed or misapplied update. So every frame is
  verified, and a mismatch throws the symbol's book away and resubscribes for a fresh snapshot
  (unsubscribe + subscribe, since the venue refuses a second subscription), telling the owner
  through ``on_integrity`` so stale prices are never used silently.
* The checksum is over fixed-decimal text at the pair's precision, which only the
  ``instrument`` channel tells us; the book is therefore subscribed only after the instrument
  snapshot arrived, and prices are parsed as ``Decimal`` (``parse_float=Decimal``) because a
  float has already lost the digits the CRC covers.
* Kraken sends a heartbeat about every second and recommends reconnecting after 5 s of silence;
  the deadline is a constructor argument so tests can use a shorter one. Reconnects back off
  exponentially so a dead venue is not hammered, reset only by a connection that delivered data
  *and* outlived that deadline: a venue that acknowledges a subscription and drops the socket
  at once reconnected every ~0.2 s for as long as it did so, and each private connection costs
  a REST ``GetWebSocketsToken`` call, which filled the REST counter the order lookups and the
  reconciliation before failback wait on.
* An endpoint that stays unreachable is one outage in the log, not a warning per attempt
  (every <=10 s, for as long as it lasts): one warning with the error, reminders of how long
  on the market-data ``Episode`` schedule (after a minute, then doubling up to 15 min), one
  line when it connects again saying how long it was down; each failed attempt at debug.
* A frame that cannot be applied (not JSON, a negative size, a missing field, a checksum that
  is no number: ``FRAME_ERRORS``) ends its connection, never the client's thread: the books
  it may have half-changed are marked unsynced (``on_integrity``) and the reconnect rebuilds
  them from fresh snapshots, backing off as for a failed connection (the bad frame does not
  count as the connection being healthy), so a venue that keeps sending it is not hammered.
  Whoever owns the client would otherwise hold a client that is alive to it and dead inside.
* Private sockets authenticate with a short-lived token from REST GetWebSocketsToken, so a
  token is fetched per connection (``token_provider`` runs in a worker thread: it usually does
  blocking HTTP).
* The gateway's order path is threads, not asyncio: each client runs its own event loop on a
  daemon thread (``start``/``stop``) and offers blocking ``add_order``/``cancel_order`` that
  wait for the response with the matching ``req_id`` (timeout -> :class:`KrakenWsTimeout`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from gateway.marketdata.book import Book
from gateway.marketdata.episode import Episode

__all__ = [
    "BookHandler",
    "ExecutionHandler",
    "IntegrityHandler",
    "KrakenWsError",
    "KrakenWsPrivate",
    "KrakenWsPublic",
    "KrakenWsRejected",
    "KrakenWsTimeout",
    "TradeHandler",
    "WsTrade",
    "dumps",
    "loads",
]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

BookHandler = Callable[[str, Book], None]
IntegrityHandler = Callable[[str, str], None]
ExecutionHandler = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class WsTrade:
    """One public trade print (``trade`` channel)."""

    symbol: str
    price: Decimal
    qty: Decimal
    side: str  # aggressor: "buy" | "sell"
    trade_id: int | str
    timestamp: str


TradeHandler = Callable[[WsTrade], None]


class KrakenWsError(RuntimeError):
    """Transport-level failure (not connected, connection lost while waiting)."""


class KrakenWsTimeout(KrakenWsError):
    """No response with our ``req_id`` arrived in time; the request's outcome is unknown."""


class KrakenWsRejected(KrakenWsError):
    """The venue answered ``success: false``; ``error`` is Kraken's text (``EOrder:...``)."""

    def __init__(self, error: str, response: Mapping[str, Any]) -> None:
        super().__init__(error)
        self.error = error
        self.response = dict(response)


# --------------------------------------------------------------------------------------------
# JSON with Decimal numbers. Kraken sends prices/quantities as JSON numbers at full precision;
# the stdlib encoder would turn a Decimal into a float (or refuse it), so encode by hand.
# --------------------------------------------------------------------------------------------


def _encode(obj: object, out: list[str]) -> None:
    if isinstance(obj, str):
        out.append(json.dumps(obj))
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError(f"non-finite Decimal {obj} cannot be a JSON number")
        out.append(format(obj, "f"))
    elif isinstance(obj, int):
        out.append(str(obj))
    elif isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError("non-finite float")
        out.append(repr(obj))
    elif isinstance(obj, Mapping):
        out.append("{")
        first = True
        for k, v in obj.items():
            if not first:
                out.append(",")
            first = False
            out.append(json.dumps(str(k)))
            out.append(":")
            _encode(v, out)
        out.append("}")
    elif isinstance(obj, list | tuple):
        out.append("[")
        for i, v in enumerate(obj):
            if i:
                out.append(",")
            _encode(v, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def dumps(obj: object) -> str:
    """Compact JSON where ``Decimal`` becomes a JSON number with all its digits."""
    out: list[str] = []
    _encode(obj, out)
    return "".join(out)


def loads(text: str | bytes) -> Any:
    """JSON with every non-integer number as ``Decimal`` (never a float)."""
    return json.loads(text, parse_float=Decimal)


# What a frame that cannot be applied raises while being parsed or applied: JSONDecodeError and
# UnicodeDecodeError are ValueErrors, as are Book's refusals (negative size, non-positive
# price) and int() of a bad checksum; decimal.InvalidOperation is an ArithmeticError; a field
# missing or of the wrong shape is a KeyError, IndexError, TypeError or AttributeError.
FRAME_ERRORS = (ValueError, ArithmeticError, LookupError, TypeError, AttributeError)
_REASON_MAX = 200  # characters of an exception's text in a log line
BAD_FRAME = "frame could not be applied"  #: on_integrity's reason after such a frame


def _dec(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str):
        return Decimal(value)
    raise TypeError(f"expected a number, got {value!r}")


def _levels(raw: Iterable[Mapping[str, Any]]) -> list[tuple[Decimal, Decimal]]:
    return [(_dec(lv["price"]), _dec(lv["qty"])) for lv in raw]


# --------------------------------------------------------------------------------------------
# Event loop on a thread.
# --------------------------------------------------------------------------------------------


class LoopThread:
    """Runs ``_main()`` on a private event loop in a daemon thread; ``stop`` cancels it (also
    from the loop's own thread, e.g. a callback that decides to stop). Shared by the spot and
    futures WebSocket clients."""

    _name = "kraken-ws"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def _main(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self) -> None:
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._stopping = False
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._task = loop.create_task(self._main())
            loop.call_soon(started.set)
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._task)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self._thread.start()
        started.wait(5.0)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        loop, task, thread = self._loop, self._task, self._thread
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None
        self._task = None

    def _call(self, coro: Awaitable[_T], timeout: float) -> _T:
        """Run ``coro`` on our loop from another thread and wait for it."""
        loop = self._loop
        if loop is None or self._thread is None or loop.is_closed():
            raise KrakenWsError("client is not started")

        async def wrap() -> _T:
            return await coro

        fut = asyncio.run_coroutine_threadsafe(wrap(), loop)
        try:
            return fut.result(timeout)
        except TimeoutError as exc:
            fut.cancel()
            raise KrakenWsTimeout("no response from the venue in time") from exc
        except concurrent.futures.CancelledError as exc:  # the client stopped meanwhile
            raise KrakenWsError("client stopped before the venue answered") from exc


class _Connector(LoopThread):
    """Reconnect loop with exponential backoff and a silence deadline shared by both clients."""

    def __init__(self, url: str, heartbeat_timeout: float, backoff_initial: float,
                 backoff_max: float, open_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`clock`: monotonic seconds, for how long an outage has lasted (a test's fake clock
        makes an hour of failed attempts take no time)."""
        super().__init__()
        self._clock = clock
        self.url = url
        self.heartbeat_timeout = heartbeat_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.open_timeout = open_timeout
        self.connects = 0  #: successful connections so far (1 + reconnects)
        self.stale_disconnects = 0  #: connections dropped for silence
        self.bad_frames = 0  #: connections dropped for a frame that could not be applied
        self._drop_reason = "disconnected"  # why the connection ended, for _on_close
        self._ws: ClientConnection | None = None
        self._req_ids = itertools.count(1)
        self._connected = threading.Event()
        self.failed_attempts = 0  #: connection attempts (or connections) that failed
        self.backoff_s = backoff_initial  #: the wait before the next reconnect (before jitter)
        # The outage in progress (None: connected, or not tried yet), its failed attempts,
        # and when the last connection ended (see _attempt_failed).
        self._outage: Episode | None = None
        self._outage_failures = 0
        self._ended_at: float | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def alive(self) -> bool:
        """Started and its thread still runs (it ends only at ``stop``)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    async def _send(self, msg: Mapping[str, Any]) -> None:
        """Send one frame. A connection that closed since the caller looked at `connected`
        makes websockets raise its own exceptions; they become :class:`KrakenWsError`, the one
        transport failure callers handle (an order request's outcome is then unknown)."""
        ws = self._ws
        if ws is None:
            raise KrakenWsError("not connected")
        try:
            await ws.send(dumps(msg))
        except (ConnectionClosed, WebSocketException, OSError) as exc:
            raise KrakenWsError(f"send failed: {exc}") from exc

    async def _on_open(self, ws: ClientConnection) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _attempt_failed(self, exc: BaseException) -> None:
        """A connection attempt failed, or a connection failed: the first of an outage is a
        warning with the error, the others are debug lines, with a reminder of how long now
        and then (`Episode`). A warning per attempt, every <=`backoff_max` seconds for as long
        as the endpoint is down, was hundreds of lines an hour saying the same thing."""
        self.failed_attempts += 1
        now = self._clock()
        outage = self._outage
        if outage is None:
            since, self._ended_at = self._ended_at, None
            outage = self._outage = Episode(now if since is None else since, first_at=now)
            outage.due(now)  # this warning is the outage's first line
            self._outage_failures = 1
            _log.warning("%s: connection failed: %s; retrying with backoff (at most %gs "
                         "apart), each failed attempt logged at debug level, a reminder now "
                         "and then", self.url, exc, self.backoff_max)
            return
        self._outage_failures += 1
        _log.debug("%s: connection failed again (attempt %d of this outage): %s", self.url,
                   self._outage_failures, exc)
        if outage.due(now):
            _log.warning("%s: still no connection after %s (%d attempts failed, the last: %s)",
                         self.url, outage.lasted(now), self._outage_failures, exc)

    def _connected_again(self) -> None:
        """The outage's closing line, with how long it lasted."""
        outage, self._outage = self._outage, None
        self._ended_at = None
        if outage is not None:
            _log.warning("%s: connected again after %s without a connection (%d attempts "
                         "failed)", self.url, outage.lasted(self._clock()),
                         self._outage_failures)

    async def _on_message(self, msg: Any) -> bool:  # pragma: no cover - overridden
        """Handle one frame; True when the frame proves the feed is healthy (resets backoff)."""
        raise NotImplementedError

    def _on_close(self) -> None:
        """Hook: the connection is gone (fail waiters, mark books stale)."""

    async def _main(self) -> None:
        self.backoff_s = self.backoff_initial
        while not self._stopping:
            healthy = False
            opened: float | None = None
            try:
                async with connect(self.url, open_timeout=self.open_timeout,
                                   max_size=2**24) as ws:
                    self._ws = ws
                    self.connects += 1
                    await self._on_open(ws)
                    opened = self._clock()
                    self._connected.set()
                    self._connected_again()
                    # Not `while True`: on Python 3.11 wait_for can swallow stop()'s cancel
                    # when a frame arrives at the same moment, and the socket stayed open.
                    while not self._stopping:
                        try:
                            raw = await asyncio.wait_for(ws.recv(), self.heartbeat_timeout)
                        except TimeoutError:
                            self.stale_disconnects += 1
                            _log.warning("%s: no message for %.1fs, reconnecting", self.url,
                                         self.heartbeat_timeout)
                            break
                        try:
                            if await self._on_message(loads(raw)):
                                healthy = True
                        except FRAME_ERRORS as exc:
                            self.bad_frames += 1
                            self._drop_reason = BAD_FRAME
                            healthy = False  # back off: the venue may send it again
                            # The exception's type and text, never the frame (a private one
                            # may carry account data); the text is cut short all the same.
                            _log.warning("%s: a frame could not be applied (%s: %.*s); "
                                         "reconnecting for fresh snapshots", self.url,
                                         type(exc).__name__, _REASON_MAX, exc)
                            break
            except (OSError, TimeoutError, ConnectionClosed, WebSocketException,
                    KrakenWsError) as exc:
                self._attempt_failed(exc)
            except Exception:  # a bug of ours: this connection ends, the client goes on
                _log.exception("%s: connection ended by an unexpected error", self.url)
            finally:
                self._ws = None
                if self._connected.is_set():
                    self._ended_at = self._clock()
                self._connected.clear()
                self._on_close()
                self._drop_reason = "disconnected"
            if self._stopping:
                break
            if (healthy and opened is not None
                    and self._clock() - opened >= self.heartbeat_timeout):
                self.backoff_s = self.backoff_initial  # a connection that lasted: start over
            await asyncio.sleep(self.backoff_s * (0.8 + 0.4 * random.random()))
            self.backoff_s = min(self.backoff_max, self.backoff_s * 2)


# --------------------------------------------------------------------------------------------
# Public: instrument + book + trade + heartbeat.
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _BookState:
    book: Book
    live: bool = False  # a snapshot was applied and every update since verified


class KrakenWsPublic(_Connector):
    """Checksum-verified L2 books (and trades) for ``symbols`` over WS v2.

    ``on_book(symbol, book)`` runs on the client thread after every verified snapshot/update;
    ``on_integrity(symbol, reason)`` when a book becomes untrustworthy (``"checksum"``,
    ``"stale"``, ``"disconnected"``, ``BAD_FRAME``) before it is rebuilt. Books live in
    :attr:`books`.
    """

    _name = "kraken-ws-public"

    def __init__(
        self,
        url: str,
        symbols: Sequence[str],
        depth: int = 10,
        on_book: BookHandler | None = None,
        on_trade: TradeHandler | None = None,
        on_integrity: IntegrityHandler | None = None,
        *,
        heartbeat_timeout: float = 5.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        open_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if depth not in (10, 25, 100, 500, 1000):
            raise ValueError(f"Kraken book depth must be 10, 25, 100, 500 or 1000, not {depth}")
        super().__init__(url, heartbeat_timeout, backoff_initial, backoff_max, open_timeout,
                         clock)
        self.symbols = tuple(symbols)
        self.depth = depth
        self.on_book = on_book
        self.on_trade = on_trade
        self.on_integrity = on_integrity
        self.books: dict[str, Book] = {s: Book(s, max_depth=depth) for s in self.symbols}
        self._state = {s: _BookState(self.books[s]) for s in self.symbols}
        self.precision: dict[str, tuple[int, int]] = {}  # symbol -> (price dp, qty dp)
        self.resyncs = 0  #: resubscriptions after a checksum mismatch
        self.book_updates = 0  #: verified book frames (snapshots and updates)
        self._book_subscribed = False

    def is_live(self, symbol: str) -> bool:
        """True while the symbol's book is a verified copy of the venue's."""
        return self._state[symbol].live

    def unsubscribe_all(self, timeout: float = 2.0) -> bool:
        """Unsubscribe ``book`` and ``trade`` for every subscribed symbol, before ``stop`` when
        the feed is no longer wanted (the venue counts subscriptions against a rate limit, so
        a client that is done releases them rather than just dropping the socket). False when
        not connected or the frames could not be sent in time; ``stop`` still closes."""

        async def send() -> None:
            syms = [s for s in self.symbols if s in self.precision]
            if not self._book_subscribed or not syms:
                return
            self._book_subscribed = False
            for st in self._state.values():
                st.live = False  # frames still in flight are not a verified book any more
            await self._send({"method": "unsubscribe", "req_id": next(self._req_ids),
                              "params": {"channel": "book", "symbol": syms,
                                         "depth": self.depth}})
            await self._send({"method": "unsubscribe", "req_id": next(self._req_ids),
                              "params": {"channel": "trade", "symbol": syms}})

        try:
            self._call(send(), timeout)
        except (KrakenWsError, ConnectionClosed, OSError) as exc:
            _log.info("%s: unsubscribe not sent (%s); closing anyway", self.url, exc)
            return False
        return True

    def _integrity(self, symbol: str, reason: str) -> None:
        st = self._state[symbol]
        st.live = False
        st.book.clear()
        if self.on_integrity is not None:
            try:
                self.on_integrity(symbol, reason)
            except Exception:
                _log.exception("on_integrity callback failed")

    async def _on_open(self, ws: ClientConnection) -> None:
        self._book_subscribed = False
        await self._send({"method": "subscribe", "req_id": next(self._req_ids),
                          "params": {"channel": "heartbeat"}})
        await self._send({"method": "subscribe", "req_id": next(self._req_ids),
                          "params": {"channel": "instrument", "snapshot": True}})

    def _on_close(self) -> None:
        for sym, st in self._state.items():
            if st.live:
                self._integrity(sym, self._drop_reason)

    async def _subscribe_books(self, symbols: Sequence[str]) -> None:
        await self._send({"method": "subscribe", "req_id": next(self._req_ids),
                          "params": {"channel": "book", "symbol": list(symbols),
                                     "depth": self.depth, "snapshot": True}})

    async def _on_message(self, msg: Any) -> bool:
        if not isinstance(msg, dict):
            return False
        channel = msg.get("channel")
        if channel == "book":
            return await self._on_book(msg)
        if channel == "heartbeat":
            return False
        if channel == "trade":
            self._on_trades(msg.get("data") or [])
            return True
        if channel == "instrument":
            await self._on_instrument(msg.get("data") or {})
            return False
        if msg.get("success") is False:
            _log.warning("venue refused %s: %s", msg.get("method"), msg.get("error"))
        return False

    async def _on_instrument(self, data: Mapping[str, Any]) -> None:
        for pair in data.get("pairs") or []:
            sym = pair.get("symbol")
            if sym in self._state:
                self.precision[sym] = (int(pair["price_precision"]), int(pair["qty_precision"]))
        if not self._book_subscribed:
            missing = [s for s in self.symbols if s not in self.precision]
            if missing:
                _log.error("instrument snapshot lacks %s; not subscribing those", missing)
            ready = [s for s in self.symbols if s in self.precision]
            if ready:
                self._book_subscribed = True
                await self._subscribe_books(ready)
                await self._send({"method": "subscribe", "req_id": next(self._req_ids),
                                  "params": {"channel": "trade", "symbol": ready,
                                             "snapshot": False}})

    async def _on_book(self, msg: Mapping[str, Any]) -> bool:
        snapshot = msg.get("type") == "snapshot"
        ok = False
        for item in msg.get("data") or []:
            sym = item.get("symbol")
            st = self._state.get(sym)
            if st is None or sym not in self.precision:
                continue
            if not snapshot and not st.live:
                continue  # waiting for the snapshot of a resubscription
            bids, asks = _levels(item.get("bids") or []), _levels(item.get("asks") or [])
            if snapshot:
                st.book.apply_snapshot(bids, asks)
            else:
                st.book.apply_updates([*(("bid", p, q) for p, q in bids),
                                       *(("ask", p, q) for p, q in asks)])
            pd, qd = self.precision[sym]
            expected = item.get("checksum")
            try:
                ours = st.book.checksum(pd, qd)
            except ValueError:  # a level with more decimals than the instrument allows
                ours = -1
            if expected is None or int(expected) != ours:
                _log.warning("%s: book checksum mismatch (venue %s, ours %s); resubscribing",
                             sym, expected, ours)
                self.resyncs += 1
                self._integrity(sym, "checksum")
                await self._send({"method": "unsubscribe", "req_id": next(self._req_ids),
                                  "params": {"channel": "book", "symbol": [sym],
                                             "depth": self.depth}})
                await self._subscribe_books([sym])
                continue
            st.live = True
            ok = True
            self.book_updates += 1
            if self.on_book is not None:
                try:
                    self.on_book(sym, st.book)
                except Exception:
                    _log.exception("on_book callback failed")
        return ok

    def _on_trades(self, data: Iterable[Mapping[str, Any]]) -> None:
        for t in data:
            sym = str(t.get("symbol"))
            st = self._state.get(sym)
            if st is None:
                continue
            trade = WsTrade(sym, _dec(t["price"]), _dec(t["qty"]), str(t["side"]),
                            t.get("trade_id", ""), str(t.get("timestamp", "")))
            st.book.record_trade(trade.price, trade.qty, trade.side)
            if self.on_trade is not None:
                try:
                    self.on_trade(trade)
                except Exception:
                    _log.exception("on_trade callback failed")


# --------------------------------------------------------------------------------------------
# Private: executions + trading methods.
# --------------------------------------------------------------------------------------------


class KrakenWsPrivate(_Connector):
    """Order entry and the ``executions`` feed over the authenticated WS v2 socket.

    ``on_execution(item)`` runs on the client thread for every executions item (snapshot items
    carry ``"snapshot": True`` added by this client). Responses are matched by ``req_id``.
    """

    _name = "kraken-ws-private"

    def __init__(
        self,
        url: str,
        token_provider: Callable[[], str],
        on_execution: ExecutionHandler | None = None,
        *,
        request_timeout: float = 5.0,
        heartbeat_timeout: float = 5.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        open_timeout: float = 5.0,
        snap_orders: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(url, heartbeat_timeout, backoff_initial, backoff_max, open_timeout,
                         clock)
        self.token_provider = token_provider
        self.on_execution = on_execution
        self.request_timeout = request_timeout
        self.snap_orders = snap_orders
        self.last_error: str | None = None  #: last ``success: false`` of a subscription
        self._token: str | None = None
        self._exec_sub_req: int | None = None  # req_id of this connection's executions subscribe
        self._pending: dict[int, tuple[asyncio.Future[list[dict[str, Any]]], int,
                                       list[dict[str, Any]]]] = {}

    async def _on_open(self, ws: ClientConnection) -> None:
        # A fresh token per connection: they are short-lived and tied to a session. A failed
        # token request (REST down or busy) fails this connection attempt only: the reconnect
        # loop tries again with backoff. Raised as is, it ended that loop, and the client
        # stayed dead (and its owner, seeing a client, never made another).
        try:
            self._token = await asyncio.to_thread(self.token_provider)
        except Exception as exc:
            raise KrakenWsError(f"WebSocket token request failed: {exc}") from exc
        await self._send({"method": "subscribe", "req_id": next(self._req_ids),
                          "params": {"channel": "heartbeat"}})
        self._exec_sub_req = next(self._req_ids)
        await self._send({"method": "subscribe", "req_id": self._exec_sub_req,
                          "params": {"channel": "executions", "token": self._token,
                                     "snap_orders": self.snap_orders, "snap_trades": False}})

    def _on_close(self) -> None:
        pending, self._pending = self._pending, {}
        for fut, _, _ in pending.values():
            if not fut.done():
                fut.set_exception(KrakenWsError("connection lost before the venue answered"))

    async def _on_message(self, msg: Any) -> bool:
        if not isinstance(msg, dict):
            return False
        channel = msg.get("channel")
        if channel == "executions":
            snap = msg.get("type") == "snapshot"
            for item in msg.get("data") or []:
                if snap:
                    item = {**item, "snapshot": True}
                if self.on_execution is not None:
                    try:
                        self.on_execution(item)
                    except Exception:
                        _log.exception("on_execution callback failed")
            return True
        if channel is not None:
            return False  # heartbeats prove the socket, not that executions flow
        req_id = msg.get("req_id")
        if req_id is not None and req_id == self._exec_sub_req:
            if msg.get("success") is False:
                # A refused token (expired, revoked) leaves a socket that looks connected but
                # carries no executions: drop it, and the next connection fetches a new token
                # (backing off: this connection does not count as healthy).
                self.last_error = str(msg.get("error"))
                raise KrakenWsError(f"executions subscription refused: {self.last_error}")
            return bool(msg.get("success"))
        entry = self._pending.get(req_id) if isinstance(req_id, int) else None
        if entry is not None:
            fut, expected, got = entry
            got.append(msg)
            if len(got) >= expected:
                del self._pending[req_id]  # type: ignore[arg-type]
                if not fut.done():
                    fut.set_result(got)
        elif msg.get("success") is False:
            self.last_error = str(msg.get("error"))
            _log.warning("venue refused %s: %s", msg.get("method"), msg.get("error"))
        return False

    async def _request(self, method: str, params: dict[str, Any],
                       responses: int = 1) -> list[dict[str, Any]]:
        if self._ws is None or self._token is None:
            raise KrakenWsError("private WebSocket is not connected")
        req_id = next(self._req_ids)
        fut: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = (fut, responses, [])
        try:
            await self._send({"method": method, "req_id": req_id,
                              "params": {**params, "token": self._token}})
            return await asyncio.wait_for(fut, self.request_timeout)
        except TimeoutError as exc:
            raise KrakenWsTimeout(
                f"{method} req_id={req_id}: no response within {self.request_timeout}s; "
                "the order state is unknown, reconcile before retrying") from exc
        finally:
            self._pending.pop(req_id, None)

    async def _one_result(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One request, one answer: its ``result`` on success, else KrakenWsRejected."""
        (resp,) = await self._request(method, params)
        if not resp.get("success"):
            raise KrakenWsRejected(str(resp.get("error")), resp)
        result: dict[str, Any] = resp.get("result") or {}
        return result

    async def add_order_async(
        self, *, symbol: str, side: str, order_type: str, order_qty: Decimal,
        limit_price: Decimal | None = None, time_in_force: str | None = None,
        cl_ord_id: str | None = None, **extra: Any,
    ) -> dict[str, Any]:
        """Place an order; the ``result`` dict (``order_id``, ``cl_ord_id``) on success."""
        params: dict[str, Any] = {"order_type": order_type, "side": side,
                                  "order_qty": order_qty, "symbol": symbol, **extra}
        if limit_price is not None:
            params["limit_price"] = limit_price
        if time_in_force is not None:
            params["time_in_force"] = time_in_force
        if cl_ord_id is not None:
            params["cl_ord_id"] = cl_ord_id
        return await self._one_result("add_order", params)

    async def cancel_order_async(
        self, *, order_id: Sequence[str] = (), cl_ord_id: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Cancel orders; one ``result`` per id. Raises on the first refused id."""
        if not order_id and not cl_ord_id:
            raise ValueError("give order_id and/or cl_ord_id")
        params: dict[str, Any] = {}
        if order_id:
            params["order_id"] = list(order_id)
        if cl_ord_id:
            params["cl_ord_id"] = list(cl_ord_id)
        resps = await self._request("cancel_order", params, len(order_id) + len(cl_ord_id))
        for r in resps:
            if not r.get("success"):
                raise KrakenWsRejected(str(r.get("error")), r)
        return [r.get("result") or {} for r in resps]

    async def amend_order_async(
        self, *, order_id: str | None = None, cl_ord_id: str | None = None,
        order_qty: Decimal | None = None, limit_price: Decimal | None = None,
        deadline: str | None = None,
    ) -> dict[str, Any]:
        """Amend an order in place (Kraken keeps its order_id and cl_ord_id); the ``result``
        dict (``amend_id``, and the id it was named by) on success. `deadline` (RFC 3339), as
        for ``add_order``: past it the venue will not apply the amend, so an answer lost on
        the way is settled by the order's state once it has passed."""
        if not order_id and not cl_ord_id:
            raise ValueError("give order_id or cl_ord_id")
        if order_qty is None and limit_price is None:
            raise ValueError("give order_qty and/or limit_price")
        params: dict[str, Any] = {"order_id": order_id} if order_id else {"cl_ord_id": cl_ord_id}
        if order_qty is not None:
            params["order_qty"] = order_qty
        if limit_price is not None:
            params["limit_price"] = limit_price
        if deadline is not None:
            params["deadline"] = deadline
        return await self._one_result("amend_order", params)

    # ---- blocking facade for the (threaded) order path -----------------------------------------

    def add_order(
        self, *, symbol: str, side: str, order_type: str, order_qty: Decimal,
        limit_price: Decimal | None = None, time_in_force: str | None = None,
        cl_ord_id: str | None = None, **extra: Any,
    ) -> dict[str, Any]:
        """Blocking :meth:`add_order_async` for callers on other threads."""
        return self._call(self.add_order_async(
            symbol=symbol, side=side, order_type=order_type, order_qty=order_qty,
            limit_price=limit_price, time_in_force=time_in_force, cl_ord_id=cl_ord_id,
            **extra), self.request_timeout + 1.0)

    def cancel_order(self, *, order_id: Sequence[str] = (),
                     cl_ord_id: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Blocking :meth:`cancel_order_async` for callers on other threads."""
        return self._call(self.cancel_order_async(order_id=order_id, cl_ord_id=cl_ord_id),
                          self.request_timeout + 1.0)

    def amend_order(self, *, order_id: str | None = None, cl_ord_id: str | None = None,
                    order_qty: Decimal | None = None, limit_price: Decimal | None = None,
                    deadline: str | None = None) -> dict[str, Any]:
        """Blocking :meth:`amend_order_async` for callers on other threads."""
        return self._call(self.amend_order_async(order_id=order_id, cl_ord_id=cl_ord_id,
                                                 order_qty=order_qty, limit_price=limit_price,
                                                 deadline=deadline),
                          self.request_timeout + 1.0)
