"""The simulator's Kraken **spot REST** face over the shared :class:`MatchingEngine`.

Why it exists: the gateway fails over from FIX to REST (and back) without losing or duplicating
an order, and that can only be proven against a venue that (a) shares one book and one order
store with the FIX face, (b) verifies what the client signs, and (c) can be made slow or broken
on demand. Same server pattern as :mod:`gateway.venue_sim.futures_rest` (stdlib
``ThreadingHTTPServer`` on loopback, port 0 -> ``.port``, ``start``/``stop``, ``fail_next``).

Wire format (``shared/kraken-api.md`` §1, §3, §7):

* every answer is ``{"error": [...], "result": {...}}`` with HTTP 200, also for errors (only the
  injected faults and unknown paths use other statuses);
* public ``/0/public/SystemStatus``, ``/0/public/Time``, ``/0/public/AssetPairs`` (keyed by the
  name asked for when it is a WS name, as Kraken does), ``Assets``, and from the engine's real
  book and tape ``Ticker``, ``Depth``, ``Trades`` and ``OHLC`` (GET or POST), so that
  off-the-shelf clients (python-kraken-sdk, ccxt ``kraken``) work with only their base URL
  changed;
* private ``POST /0/private/<Method>``, form-encoded, ``API-Key`` + ``API-Sign`` verified with
  :func:`spot_api_sign` over the exact body received; the nonce must be strictly greater than the
  last one accepted *for that key* (a rejected request does not move it, as on Kraken);
* methods: ``AddOrder`` (with Kraken's ``deadline``: processed after it -> ``EService:Deadline
  elapsed``, never booked; checked again by the engine under its lock, so a request that waited
  for the engine past it does not land either), ``CancelOrder``, ``CancelAll``, ``OpenOrders``,
  ``ClosedOrders`` (``cl_ord_id``/``start`` filters; what a client needs to look an order up
  after a timeout), ``QueryOrders``, ``GetWebSocketsToken``, and
  ``Balance``/``BalanceEx``/``TradesHistory`` over a demo wallet
  (:data:`~gateway.venue_sim.accounts.DEMO_BALANCES`) moved by the account's fills (no fees;
  funds are reported, not enforced). Order objects carry every number as a decimal
  string except the times (JSON numbers, as Kraken sends them).

Who owns what: the API key maps to the engine owner through :class:`Accounts`; that owner is the
account's FIX CompID, so an order placed over FIX is listed and cancellable here.

Rate limits (§7), modelled so the gateway's client model can be tested against a venue that
really refuses:

* the REST call counter per API key (tier max/decay), +1 per private call except ``AddOrder`` and
  ``CancelOrder``; a call that would take it above the max is refused with
  ``EAPI:Rate limit exceeded`` and not charged;
* the matching-engine counter per (owner, pair): ``AddOrder`` +1 (charged even when the order is
  then rejected, as Kraken does), ``CancelOrder`` by order age (+8 under 5 s ... +1 under 300 s),
  ``AmendOrder`` +1 and by age (+3 under 5 s ... ); the age counts from the order's creation
  or its last amend, as Kraken's does (a fill does not reset it);
  over the threshold the request is refused with ``EOrder:Rate limit exceeded``. The counter is
  only fed by this face (FIX traffic is not charged here), a known simplification.

Test hooks: ``fail_next(n, status, error)`` (503 body or a 200 carrying ``EService:Busy``; the
fault is answered *before* anything reaches the engine), ``set_delay(seconds, n, after)``
(``after=True``: the request is processed, then the answer is held back, i.e. the order lands but
the client times out), ``request_count(path)``, ``last_request``, ``rest_counter(key)`` and
``engine_counter(owner, pair)``.
"""

from __future__ import annotations

import base64
import hmac
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from gateway.kraken.auth import spot_api_sign
from gateway.kraken.ratelimits import (
    CANCEL_AGE_COST,
    ENGINE_COUNTED,
    ENGINE_TIERS,
    REST_TIERS,
    DecayingCounter,
    RateTier,
    amend_cost,
    cancel_cost,
)
from gateway.kraken.symbols import parse_spot_pair, rest_altname, to_kraken_asset, ws_v1_name
from gateway.venue_sim.accounts import Accounts, ApiAccount
from gateway.venue_sim.deadline import Deadline, DeadlineRefused, parse_deadline
from gateway.venue_sim.engine import (
    SPOT_REST_CL_ORD_ID_PREFIX,
    Accepted,
    BookChanged,
    Canceled,
    CancelRejected,
    Event,
    Filled,
    MatchingEngine,
    OrderSnapshot,
    OrdStatus,
    OrdType,
    PostOnlyRefused,
    Rejected,
    Side,
    TimeInForce,
    TradePrinted,
    is_made_up_cl_ord_id,
)
from gateway.venue_sim.futures_rest import _Headers, dumps
from gateway.venue_sim.http_face import HttpFace
from gateway.venue_sim.instruments import Instrument, InstrumentKind

__all__ = [
    "CANCEL_AGE_COST",
    "ENGINE_TIERS",
    "REST_TIERS",
    "DecayingCounter",
    "RateTier",
    "SpotRestServer",
    "cancel_cost",
]

log = logging.getLogger("fixgw.venue_sim.spot_rest")




# --------------------------------------------------------------------------------------------


_STATUS = {
    OrdStatus.NEW: "open", OrdStatus.PARTIALLY_FILLED: "open", OrdStatus.FILLED: "closed",
    OrdStatus.CANCELED: "canceled", OrdStatus.REJECTED: "canceled",
}
_TIF = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
_TYPES = {"market": OrdType.MARKET, "limit": OrdType.LIMIT}
_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
#: Prefix of the engine ClOrdID the face invents when a REST request has none (never shown).
_SYNTH = SPOT_REST_CL_ORD_ID_PREFIX

E_INVALID_KEY = "EAPI:Invalid key"
E_INVALID_SIGNATURE = "EAPI:Invalid signature"
E_INVALID_NONCE = "EAPI:Invalid nonce"
E_REST_RATE = "EAPI:Rate limit exceeded"
E_ENGINE_RATE = "EOrder:Rate limit exceeded"
E_UNKNOWN_ORDER = "EOrder:Unknown order"
E_UNKNOWN_PAIR = "EQuery:Unknown asset pair"
E_UNKNOWN_METHOD = "EGeneral:Unknown method"
E_UNKNOWN_ASSET = "EQuery:Unknown asset"

#: Decimals Kraken's ``Assets`` gives crypto (``XXBT``: 10) and fiat (``ZUSD``: 4) assets.
_ASSET_DECIMALS = 10
_FIAT_DECIMALS = 4
#: Trades read back from the engine's tape for Ticker/Trades (the engine keeps up to its
#: ``trade_history``, 1000 per book by default: a busy simulated day is summarised from the
#: most recent ones only, which a rehearsal client cannot tell apart).
_TAPE = 1000
_DAY_NS = 86_400 * 1_000_000_000
#: Kraken's OHLC intervals, in minutes.
_OHLC_INTERVALS = frozenset({1, 5, 15, 30, 60, 240, 1440, 10080, 21600})
#: Fiat assets (4 decimals in Balance, as Kraken prints ``ZUSD``).
_FIAT = frozenset({"USD", "EUR", "GBP", "CAD", "JPY", "CHF", "AUD"})
#: Calls that cost 2 on the REST counter (kraken-api.md section 7).
_HISTORY_CALLS = frozenset({"TradesHistory", "Ledgers", "QueryTrades", "QueryLedgers"})
#: Own fills kept per account for TradesHistory.
_FILLS_KEPT = 10_000
#: Engine owners of the synthetic flow (never an API account; skipped before any lookup).
_FLOW_PREFIX = "SIM-"


def _f(d: Decimal) -> str:
    return format(d, "f")


def _secs(ns: int) -> Decimal:
    """Engine epoch-ns to Kraken's float seconds, exactly (4 decimals as Kraken prints)."""
    return (Decimal(ns) / Decimal(1_000_000_000)).quantize(Decimal("0.0001"))


class _Err(Exception):
    """A Kraken error answer (HTTP 200 with ``error: [text]``), raised inside the handlers."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int
    error: str
    path_prefix: str | None


@dataclass(frozen=True, slots=True)
class _Delay:
    seconds: float
    after: bool
    path_prefix: str | None
    queued: bool = False


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """The last request received, byte for byte, for signature tests (header names lower-case,
    since HTTP clients re-case them: urllib sends ``Api-sign``)."""

    path: str
    headers: dict[str, str]
    body: str


class SpotRestServer(HttpFace):
    """Kraken spot REST on loopback over ``engine``; ``start()``/``stop()``, ``.port``.

    ``tier`` picks both rate-limit tables (§7); a :class:`RateTier` pair may be passed instead
    through ``rest_tier``/``engine_tier`` for fast tests. ``clock`` (monotonic seconds) drives
    the counters; ``wall_clock_ns`` the order ages (engine times are epoch ns by default).
    """

    def __init__(
        self,
        engine: MatchingEngine,
        accounts: Accounts,
        host: str = "127.0.0.1",
        port: int = 0,
        tier: str = "starter",
        *,
        rest_tier: RateTier | None = None,
        engine_tier: RateTier | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if tier not in REST_TIERS:
            raise ValueError(f"unknown tier {tier!r}; expected one of {sorted(REST_TIERS)}")
        self.engine = engine
        self.accounts = accounts
        self.tier = tier
        self._rest_tier = rest_tier or REST_TIERS[tier]
        self._engine_tier = engine_tier or ENGINE_TIERS[tier]
        self._clock = clock
        self._wall_ns = wall_clock_ns
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._delays: deque[_Delay] = deque()
        self._sticky_delay: _Delay | None = None
        self._counts: dict[str, int] = {}
        self._nonces: dict[str, int] = {}
        self._rest_counters: dict[str, DecayingCounter] = {}
        self._engine_counters: dict[tuple[str, str], DecayingCounter] = {}
        self._synth_n = 0
        # Trade ids of the accounts' orders (QueryOrders trades=true), by order in the order of
        # its first fill; as many orders as the engine keeps closed ones for status queries.
        # Not the synthetic flow's, nor any owner without an account: nobody can ask for those,
        # and at the flow's pace they grew without bound.
        self._trades: dict[str, list[str]] = {}
        self._trades_kept = engine.closed_order_retention
        self._userrefs: dict[str, int] = {}  # txid -> AddOrder userref
        self._level_times: dict[str, dict[tuple[str, Decimal], int]] = defaultdict(dict)
        self._wallets: dict[str, dict[str, Decimal]] = {}
        self._fills: dict[str, deque[Filled]] = defaultdict(lambda: deque(maxlen=_FILLS_KEPT))
        # A level unchanged since this face attached last changed at or before this instant,
        # which is the closest Depth can say without a per-level time in the engine.
        self._attached_s = wall_clock_ns() // 1_000_000_000
        self.last_request: RecordedRequest | None = None
        self.status = "online"
        engine.add_listener(self._on_events)
        self._init_http(host, port)

    face_name = "spot-rest"

    # -- lifecycle ---------------------------------------------------------------------------

    def _on_start(self) -> None:
        log.info("Kraken spot REST simulator on %s (tier %s)", self.base_url, self.tier)

    def close(self) -> None:
        """Stop and detach from the engine (the engine outlives faces in tests)."""
        self.stop()
        self.engine.remove_listener(self._on_events)

    # -- test hooks --------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 503, error: str = "EService:Busy", *,
                  path_prefix: str | None = None) -> None:
        """Answer the next ``n`` requests (under ``path_prefix`` if given) with a fault before
        anything reaches auth or the engine: ``status`` 503 (a proxy/outage body) or 200 with
        ``{"error":[error]}`` (Kraken's own way of saying busy)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._faults.extend(_Fault(status, error, path_prefix) for _ in range(n))

    def set_delay(self, seconds: float, n: int | None = None, *, after: bool = True,
                  path_prefix: str | None = None, queued: bool = False) -> None:
        """Hold answers back by ``seconds``: the next ``n`` requests, or all (``n=None``) until
        ``set_delay(0)``. ``after=True`` processes first and delays the answer (the order lands
        while the client times out); ``after=False`` delays before processing. ``queued=True``
        delays between authentication (the nonce is taken) and the engine, as a request waits
        in the venue's own queue: it can then land after later requests were answered, which
        is what Kraken's ``deadline`` bounds."""
        d = _Delay(seconds, after and not queued, path_prefix, queued)
        with self._lock:
            if n is None:
                self._sticky_delay = d if seconds > 0 else None
                if seconds <= 0:
                    self._delays.clear()
            else:
                self._delays.extend(d for _ in range(n))

    def set_status(self, status: str) -> None:
        """Venue state for SystemStatus and order entry: ``online``, ``maintenance`` (private
        calls answer ``EService:Unavailable``), ``cancel_only`` or ``post_only`` (AddOrder
        refused with Kraken's market-mode errors; cancels and queries still work)."""
        if status not in ("online", "maintenance", "cancel_only", "post_only"):
            raise ValueError(f"unknown system status {status!r}")
        self.status = status

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._delays.clear()
            self._sticky_delay = None

    def request_count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(self._counts.values()) if path is None else self._counts.get(path, 0)

    def rest_counter(self, api_key: str) -> float:
        with self._lock:
            c = self._rest_counters.get(api_key)
            return 0.0 if c is None else c.value()

    def engine_counter(self, owner: str, pair: str) -> float:
        with self._lock:
            c = self._engine_counters.get((owner, parse_spot_pair(pair).pair))
            return 0.0 if c is None else c.value()

    # -- engine listener (under the engine lock: enqueue only) -------------------------------

    def _on_events(self, events: tuple[Event, ...]) -> None:
        for ev in events:
            if isinstance(ev, Filled):
                if not ev.order.owner.startswith(_FLOW_PREFIX):
                    account = self.accounts.by_owner(ev.order.owner)
                    if account is not None:
                        self._book_fill(account, ev)
            elif isinstance(ev, BookChanged):
                # Depth's per-level timestamp is the level's last change (Kraken's meaning).
                key = ("b" if ev.side is Side.BUY else "a", ev.price)
                with self._lock:
                    times = self._level_times[ev.symbol]
                    if ev.new_level_qty:
                        times[key] = ev.time // 1_000_000_000
                    else:
                        times.pop(key, None)

    # -- request handling --------------------------------------------------------------------

    def _take(self, path: str) -> tuple[_Fault | None, _Delay | None]:
        with self._lock:
            self._counts[path] = self._counts.get(path, 0) + 1
            fault = delay = None
            for i, f in enumerate(self._faults):
                if f.path_prefix is None or path.startswith(f.path_prefix):
                    del self._faults[i]
                    fault = f
                    break
            for i, d in enumerate(self._delays):
                if d.path_prefix is None or path.startswith(d.path_prefix):
                    del self._delays[i]
                    delay = d
                    break
            if delay is None and self._sticky_delay is not None:
                sd = self._sticky_delay
                if sd.path_prefix is None or path.startswith(sd.path_prefix):
                    delay = sd
            return fault, delay

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str],
               body: str) -> tuple[int, str]:
        """Route one request to ``(status, json body)``; public so tests can skip the socket."""
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        with self._lock:
            self.last_request = RecordedRequest(path, {k.lower(): v for k, v in headers.items()},
                                                body)
        fault, delay = self._take(path)
        if delay is not None and not delay.after and not delay.queued:
            time.sleep(delay.seconds)
        if fault is not None:
            if fault.status == 200:
                reply = (200, dumps({"error": [fault.error], "result": {}}))
            else:
                reply = (fault.status, dumps({"error": [fault.error]}))
        else:
            queued_s = delay.seconds if delay is not None and delay.queued else 0.0
            reply = self._route(method, path, parts.query, headers, body, queued_s)
        if delay is not None and delay.after:
            time.sleep(delay.seconds)
        return reply

    def _route(self, method: str, path: str, query: str, headers: Mapping[str, str],
               body: str, queued_s: float = 0.0) -> tuple[int, str]:
        try:
            if path.startswith("/0/public/"):
                params = _form(query if method == "GET" else body or query)
                result = self._public(path.removeprefix("/0/public/"), params)
            elif path.startswith("/0/private/"):
                if method != "POST":
                    raise _Err("EGeneral:Invalid arguments:private methods are POST only")
                name = path.removeprefix("/0/private/")
                account = self._authenticate(path, headers, body)
                if queued_s:
                    time.sleep(queued_s)
                params = _form(body)
                result = self._private(name, account, params)
            else:
                return 404, dumps({"error": [E_UNKNOWN_METHOD], "result": {}})
        except _Err as exc:
            return 200, dumps({"error": [exc.text], "result": {}})
        return 200, dumps({"error": [], "result": result})

    def _authenticate(self, path: str, headers: Mapping[str, str], body: str) -> ApiAccount:
        key = headers.get("API-Key") or ""
        sign = headers.get("API-Sign") or ""
        account = self.accounts.by_key(key) if key else None
        if account is None:
            raise _Err(E_INVALID_KEY)
        nonce_text = _form(body).get("nonce", "")
        if not nonce_text.isdigit():
            raise _Err(E_INVALID_NONCE)
        try:
            base64.b64decode(sign, validate=True)
        except ValueError:
            raise _Err(E_INVALID_SIGNATURE) from None
        expected = spot_api_sign(account.api_secret, path, nonce_text, body)
        if not hmac.compare_digest(expected.encode(), sign.encode()):
            raise _Err(E_INVALID_SIGNATURE)
        nonce = int(nonce_text)
        with self._lock:
            if nonce <= self._nonces.get(key, 0):
                raise _Err(E_INVALID_NONCE)
            self._nonces[key] = nonce
        return account

    # -- public --------------------------------------------------------------------------------

    def _spot_instruments(self) -> list[Instrument]:
        return [i for i in self.engine.instruments.values() if i.kind is InstrumentKind.SPOT]

    def _instrument(self, pair: str) -> Instrument:
        try:
            symbol = parse_spot_pair(pair).pair
        except ValueError:
            raise _Err(E_UNKNOWN_PAIR) from None
        inst = self.engine.instruments.get(symbol)
        if inst is None or inst.kind is not InstrumentKind.SPOT:
            raise _Err(E_UNKNOWN_PAIR)
        return inst

    def _public(self, name: str, params: Mapping[str, str]) -> dict[str, object]:
        if name == "Time":
            now = time.time()
            return {"unixtime": int(now), "rfc1123": formatdate(now, usegmt=True)}
        if name == "SystemStatus":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            return {"status": self.status, "timestamp": stamp}
        if name == "AssetPairs":
            wanted = params.get("pair")
            if not wanted:
                return {rest_altname(i.symbol): _asset_pair(i)
                        for i in self._spot_instruments()}
            # Asked by its WS name (``BTC/USD``), Kraken keys the answer by that name, and
            # python-kraken-sdk's SpotOrderBookClient looks the pair's decimals up that way.
            return {(p if "/" in p else rest_altname(inst.symbol)): _asset_pair(inst)
                    for p in wanted.split(",") if p and (inst := self._instrument(p))}
        if name == "Assets":
            return self._assets(params)
        if name == "Ticker":
            return self._ticker(params)
        if name == "Depth":
            return self._depth(params)
        if name == "Trades":
            return self._recent_trades(params)
        if name == "OHLC":
            return self._ohlc(params)
        raise _Err(E_UNKNOWN_METHOD)

    def _ohlc(self, params: Mapping[str, str]) -> dict[str, object]:
        """Kraken's ``OHLC``: ``[time, open, high, low, close, vwap, volume, count]`` per
        ``interval`` minutes (Kraken's set), oldest first, at most 720, for the intervals the
        engine's tape has trades in (the tape is the engine's last ``trade_history`` trades, so
        history starts when the simulator did); the last candle is the current, uncommitted one
        and ``last`` is the start of the newest committed frame, the ``since`` to poll with."""
        pairs = params.get("pair")
        if not pairs or "," in pairs:
            raise _Err("EGeneral:Invalid arguments:pair")
        inst = self._instrument(pairs)
        interval_text = params.get("interval") or "1"
        if not interval_text.isdigit() or int(interval_text) not in _OHLC_INTERVALS:
            raise _Err("EGeneral:Invalid arguments:interval")
        frame_ns = int(interval_text) * 60 * 1_000_000_000
        since = _decimal(params.get("since"), "since")
        candles: dict[int, list[TradePrinted]] = {}
        for t in self.engine.last_trades(inst.symbol, _TAPE):
            candles.setdefault(t.time - t.time % frame_ns, []).append(t)
        now_frame = self._wall_ns() - self._wall_ns() % frame_ns

        def px(d: Decimal) -> str:
            return _f(d.quantize(inst.price_quantum))

        rows: list[list[object]] = []
        for start, ts in sorted(candles.items()):
            if since is not None and start // 1_000_000_000 <= since:
                continue
            vol = sum((t.qty for t in ts), Decimal(0))
            vwap = sum((t.qty * t.price for t in ts), Decimal(0)) / vol
            rows.append([start // 1_000_000_000, px(ts[0].price),
                         px(max(t.price for t in ts)), px(min(t.price for t in ts)),
                         px(ts[-1].price), px(vwap), _f(vol.quantize(inst.qty_quantum)),
                         len(ts)])
        return {rest_altname(inst.symbol): rows[-720:],
                "last": (now_frame - frame_ns) // 1_000_000_000}

    def _pairs_param(self, params: Mapping[str, str]) -> list[Instrument]:
        """``pair=`` as a comma list (any spelling), or every spot pair when absent."""
        wanted = params.get("pair")
        if not wanted:
            return self._spot_instruments()
        return [self._instrument(p) for p in wanted.split(",") if p]

    def _assets(self, params: Mapping[str, str]) -> dict[str, object]:
        """Kraken's ``Assets``: every asset of a tradable pair, keyed as ``AssetPairs`` names
        them in ``base``/``quote`` (ccxt maps pair currencies through this table, so the keys
        must agree, and it reads ``altname`` to turn ``XBT`` into ``BTC``)."""
        assets: dict[str, dict[str, object]] = {}
        for inst in self._spot_instruments():
            for code in (inst.base, inst.quote):
                key = to_kraken_asset(code)
                if key not in assets:
                    assets[key] = {
                        "aclass": "currency",
                        "altname": key,
                        "decimals": self._asset_decimals(code),
                        "display_decimals": 2 if code in _FIAT else 5,
                        "status": "enabled",
                    }
        wanted = params.get("asset")
        if wanted:
            out: dict[str, object] = {}
            for a in wanted.split(","):
                key = to_kraken_asset(a)
                if key not in assets:
                    raise _Err(E_UNKNOWN_ASSET)
                out[key] = assets[key]
            return out
        return dict(assets)

    def _ticker(self, params: Mapping[str, str]) -> dict[str, object]:
        """Kraken's ``Ticker`` from the engine's real book and trade tape (see :func:`_ticker`)."""
        now_ns = self._wall_ns()
        out: dict[str, object] = {}
        for inst in self._pairs_param(params):
            bids, asks = self.engine.levels(inst.symbol, 1)
            trades = self.engine.last_trades(inst.symbol, _TAPE)
            out[rest_altname(inst.symbol)] = _ticker_json(inst, bids, asks, trades, now_ns)
        return out

    def _depth(self, params: Mapping[str, str]) -> dict[str, object]:
        """Kraken's ``Depth`` (``count`` 1..500, default 100): the engine's aggregated levels as
        ``[price, volume, timestamp]``, the timestamp being the level's last change as seen by
        this face (the face's start for levels untouched since, e.g. the seeded book)."""
        pairs = params.get("pair")
        if not pairs or "," in pairs:
            raise _Err("EGeneral:Invalid arguments:pair")
        inst = self._instrument(pairs)
        count_text = params.get("count") or "100"
        if not count_text.isdigit():
            raise _Err("EGeneral:Invalid arguments:count")
        count = min(max(int(count_text), 1), 500)
        bids, asks = self.engine.levels(inst.symbol, count)
        with self._lock:
            stamps = dict(self._level_times.get(inst.symbol, {}))

        def rows(side: str, levels: list[tuple[Decimal, Decimal]]) -> list[list[object]]:
            return [[_f(p.quantize(inst.price_quantum)), _f(q.quantize(inst.qty_quantum)),
                     stamps.get((side, p), self._attached_s)] for p, q in levels]

        return {rest_altname(inst.symbol): {"asks": rows("a", asks), "bids": rows("b", bids)}}

    def _recent_trades(self, params: Mapping[str, str]) -> dict[str, object]:
        """Kraken's ``Trades``: ``[price, volume, time, b|s, l|m, misc, trade_id]`` oldest
        first, plus ``last`` (the ``since`` cursor, in ns as Kraken gives it)."""
        pairs = params.get("pair")
        if not pairs or "," in pairs:
            raise _Err("EGeneral:Invalid arguments:pair")
        inst = self._instrument(pairs)
        since = _decimal(params.get("since"), "since")
        trades = self.engine.last_trades(inst.symbol, _TAPE)
        if since is not None:
            trades = [t for t in trades if t.time > since]
        count_text = params.get("count")
        if count_text and count_text.isdigit():
            trades = trades[-max(int(count_text), 1):]
        rows: list[list[object]] = [
            [_f(t.price.quantize(inst.price_quantum)), _f(t.qty.quantize(inst.qty_quantum)),
             _secs(t.time), "b" if t.aggressor_side is Side.BUY else "s", "l", "",
             t.trade_id] for t in trades]
        last = str(trades[-1].time) if trades else str(self._wall_ns())
        return {rest_altname(inst.symbol): rows, "last": last}

    # -- private -------------------------------------------------------------------------------

    def _charge_rest(self, key: str, cost: int = 1) -> None:
        with self._lock:
            c = self._rest_counters.get(key)
            if c is None:
                c = self._rest_counters[key] = DecayingCounter(self._rest_tier, self._clock)
            if not c.try_add(cost):
                raise _Err(E_REST_RATE)

    def _engine_counter(self, owner: str, symbol: str) -> DecayingCounter:
        c = self._engine_counters.get((owner, symbol))
        if c is None:
            c = self._engine_counters[(owner, symbol)] = DecayingCounter(self._engine_tier,
                                                                         self._clock)
        return c

    def _private(self, name: str, account: ApiAccount,
                 params: Mapping[str, str]) -> dict[str, object]:
        handlers: dict[str, Callable[[ApiAccount, Mapping[str, str]], dict[str, object]]] = {
            "AddOrder": self._add_order,
            "CancelOrder": self._cancel_order,
            "CancelAll": self._cancel_all,
            "AmendOrder": self._amend_order,
            "OpenOrders": self._open_orders,
            "ClosedOrders": self._closed_orders,
            "QueryOrders": self._query_orders,
            "GetWebSocketsToken": self._ws_token,
            "Balance": self._balance,
            "BalanceEx": self._balance_ex,
            "TradesHistory": self._trades_history,
        }
        handler = handlers.get(name)
        if handler is None:
            raise _Err(E_UNKNOWN_METHOD)
        if self.status == "maintenance":
            raise _Err("EService:Unavailable")
        if name not in ENGINE_COUNTED:
            self._charge_rest(account.api_key, 2 if name in _HISTORY_CALLS else 1)
        return handler(account, params)

    def _add_order(self, account: ApiAccount, p: Mapping[str, str]) -> dict[str, object]:
        inst = self._instrument(p.get("pair", ""))
        owner = account.owner
        validate = p.get("validate", "").lower() in ("true", "1")
        deadline = self._deadline(p.get("deadline"))
        if self.status == "cancel_only":
            raise _Err("EService:Market in cancel_only mode")
        if self.status == "post_only" and "post" not in p.get("oflags", "").split(","):
            raise _Err("EService:Market in post_only mode")
        if not validate:
            with self._lock:
                # The fixed +1 is taken before validation: Kraken charges it even for rejects.
                if not self._engine_counter(owner, inst.symbol).try_add(1):
                    raise _Err(E_ENGINE_RATE)
        ord_type = _TYPES.get(p.get("ordertype", ""))
        if ord_type is None:
            raise _Err("EGeneral:Invalid arguments:ordertype")
        side = _SIDES.get(p.get("type", ""))
        if side is None:
            raise _Err("EGeneral:Invalid arguments:type")
        tif = _TIF.get(p.get("timeinforce", "GTC").upper())
        if tif is None:
            raise _Err("EGeneral:Invalid arguments:timeinforce")
        volume = _decimal(p.get("volume"), "volume")
        if volume is None:
            raise _Err("EGeneral:Invalid arguments:volume")
        price = _decimal(p.get("price"), "price")
        cl_ord_id = p.get("cl_ord_id")
        if cl_ord_id is not None and "userref" in p:
            raise _Err("EGeneral:Invalid arguments:cl_ord_id and userref are exclusive")
        if cl_ord_id is not None and (not cl_ord_id or is_made_up_cl_ord_id(cl_ord_id)):
            raise _Err("EGeneral:Invalid arguments:cl_ord_id")
        userref = _userref(p.get("userref"))
        descr = _descr_order(inst, p.get("type", ""), p.get("ordertype", ""), volume, price)
        if validate:
            return {"descr": {"order": descr}}
        if cl_ord_id is None:
            with self._lock:
                self._synth_n += 1
                cl_ord_id = f"{_SYNTH}{self._synth_n}"
        # oflags=post: refused if it would take, checked by the engine under its lock, so an
        # order crossing meanwhile (the synthetic flow) cannot make it a taker.
        post_only = "post" in p.get("oflags", "").split(",")
        try:
            events = self.engine.submit(owner, cl_ord_id, inst.symbol, side, volume, price,
                                        ord_type, tif, deadline=deadline, post_only=post_only)
        except DeadlineRefused as exc:  # passed while the request waited for the engine
            raise _Err(exc.error) from None
        except PostOnlyRefused as exc:
            raise _Err(exc.error) from None
        first = events[0]
        if isinstance(first, Rejected):
            raise _Err(first.text)
        assert isinstance(first, Accepted)
        txid = first.order.order_id
        if userref is not None:
            with self._lock:
                self._userrefs[txid] = userref
        return {"descr": {"order": descr}, "txid": [txid]}

    def _deadline(self, text: str | None) -> Deadline | None:
        """The request's deadline, refused at once if malformed or passed; the engine checks
        it again under its lock (see :mod:`gateway.venue_sim.deadline`)."""
        try:
            return parse_deadline(text, self._wall_s)
        except DeadlineRefused as exc:
            raise _Err(exc.error) from None

    def _wall_s(self) -> float:
        return self._wall_ns() / 1e9

    def _find(self, owner: str, p: Mapping[str, str]) -> OrderSnapshot | None:
        txid, clid = p.get("txid"), p.get("cl_ord_id")
        if txid:
            return self.engine.order_status(owner, order_id=txid)
        if clid:
            return self.engine.order_status(owner, cl_ord_id=clid)
        raise _Err("EGeneral:Invalid arguments:txid or cl_ord_id required")

    def _userref_of(self, txid: str) -> int:
        with self._lock:
            return self._userrefs.get(txid, 0)

    def _cancel_order(self, account: ApiAccount, p: Mapping[str, str]) -> dict[str, object]:
        """CancelOrder by ``txid``, ``cl_ord_id``, or (an integer ``txid``) by ``userref``:
        every open order carrying it, as Kraken does."""
        owner = account.owner
        txid = p.get("txid") or ""
        if txid.lstrip("-").isdigit():
            ref = int(txid)
            count = 0
            for open_snap in self.engine.open_orders(owner):
                if self._userref_of(open_snap.order_id) == ref:
                    count += self._cancel_one(owner, open_snap)
            if not count:
                raise _Err(E_UNKNOWN_ORDER)
            return {"count": count}
        snap = self._find(owner, p)
        if snap is None or not snap.is_open:
            raise _Err(E_UNKNOWN_ORDER)
        count = self._cancel_one(owner, snap)
        if not count:
            raise _Err(E_UNKNOWN_ORDER)  # closed between the lookup and the cancel
        return {"count": count}

    def _cancel_one(self, owner: str, snap: OrderSnapshot) -> int:
        """Cancel one open order, charging the engine counter by its age; 1 if canceled, 0 if
        it closed between the lookup and the cancel."""
        age_s = max(0, self._wall_ns() - snap.amended_time) / 1e9
        with self._lock:
            if not self._engine_counter(owner, snap.symbol).try_add(cancel_cost(age_s)):
                raise _Err(E_ENGINE_RATE)
            self._synth_n += 1
            req = f"{_SYNTH}cxl{self._synth_n}"
        events = self.engine.cancel(owner, req, order_id=snap.order_id)
        return sum(1 for e in events if isinstance(e, Canceled))

    def _amend_order(self, account: ApiAccount, p: Mapping[str, str]) -> dict[str, object]:
        """Kraken ``AmendOrder``: ``txid`` or ``cl_ord_id``, new ``order_qty`` and/or
        ``limit_price``, optional ``deadline``; answers ``{amend_id}``. In place, as on Kraken:
        the txid and the cl_ord_id stay the same (the engine's replace under the order's own
        ClOrdID, so ``submission_counts`` counts an amend as one more submission of that
        ClOrdID). A quantity below the filled quantity cancels the remainder (Kraken's amend
        docs). Engine counter: +1 plus the amend's age part (kraken-api.md section 7)."""
        owner = account.owner
        deadline = self._deadline(p.get("deadline"))
        snap = self._find(owner, p)
        if snap is None or not snap.is_open:
            raise _Err(E_UNKNOWN_ORDER)
        qty = _decimal(p.get("order_qty"), "order_qty")
        price = _decimal(p.get("limit_price"), "limit_price")
        if qty is None and price is None:
            raise _Err("EGeneral:Invalid arguments:order_qty or limit_price required")
        age_s = max(0, self._wall_ns() - snap.amended_time) / 1e9
        with self._lock:
            if not self._engine_counter(owner, snap.symbol).try_add(amend_cost(age_s)):
                raise _Err(E_ENGINE_RATE)
            self._synth_n += 1
            amend_id = f"TAMD{self._synth_n:06d}"
        try:
            # Below the filled quantity, Kraken cancels the remainder (not FIX's FILLED close).
            events = self.engine.replace(owner, snap.cl_ord_id, None, qty, price,
                                         order_id=snap.order_id, deadline=deadline,
                                         cancel_below_filled=True)
        except DeadlineRefused as exc:  # passed while the request waited for the engine
            raise _Err(exc.error) from None
        first = events[0] if events else None
        if isinstance(first, CancelRejected):
            raise _Err(first.reason if first.reason.startswith("E") else E_UNKNOWN_ORDER)
        return {"amend_id": amend_id}

    def _cancel_all(self, account: ApiAccount, p: Mapping[str, str]) -> dict[str, object]:
        events = self.engine.mass_cancel(account.owner)
        return {"count": sum(1 for e in events if isinstance(e, Canceled))}

    def _order_json(self, snap: OrderSnapshot, trades: bool) -> dict[str, object]:
        inst = self.engine.instruments[snap.symbol]
        side = "buy" if snap.side is Side.BUY else "sell"
        otype = "limit" if snap.ord_type is OrdType.LIMIT else "market"
        zero_px = Decimal(0).quantize(inst.price_quantum)
        cost = (snap.avg_px * snap.cum_qty).quantize(inst.price_quantum) if snap.cum_qty \
            else zero_px
        out: dict[str, object] = {
            "refid": None,
            "userref": self._userref_of(snap.order_id),
            "status": _STATUS[snap.status],
            "opentm": _secs(snap.created_time),
            "starttm": 0,
            "expiretm": 0,
            "descr": {
                "pair": rest_altname(snap.symbol),
                "type": side,
                "ordertype": otype,
                "price": _f(snap.price if snap.price is not None else zero_px),
                "price2": _f(zero_px),
                "leverage": "none",
                "order": _descr_order(inst, side, otype, snap.qty, snap.price),
                "close": "",
            },
            "vol": _f(snap.qty),
            "vol_exec": _f(snap.cum_qty),
            "cost": _f(cost),
            "fee": _f(zero_px),
            "price": _f(snap.avg_px if snap.cum_qty else zero_px),
            "stopprice": _f(zero_px),
            "limitprice": _f(zero_px),
            "misc": "",
            "oflags": "fciq",
            "timeinforce": {v: k for k, v in _TIF.items()}[snap.tif],
        }
        if not is_made_up_cl_ord_id(snap.cl_ord_id):  # a REST or WS face's own: never shown
            out["cl_ord_id"] = snap.cl_ord_id
        if not snap.is_open:
            out["closetm"] = _secs(snap.transact_time)
            # The engine's cause (IOC remainder, self-trade, FOK, ...), as FIX Text and the WS
            # `reason` give it; "User requested" only when a user did cancel it.
            out["reason"] = snap.cancel_text
        if trades:
            with self._lock:
                out["trades"] = list(self._trades.get(snap.order_id, ()))
        return out

    def _open_orders(self, account: ApiAccount, p: Mapping[str, str]) -> dict[str, object]:
        clid = p.get("cl_ord_id")
        ref = _userref(p.get("userref"))
        trades = _flag(p.get("trades"))
        if clid is not None:
            # As ClosedOrders, CancelOrder and AmendOrder find it: by any ClOrdID of its chain
            # (a FIX replace or cancel gives it a new one), not only the latest.
            snap = self.engine.order_status(account.owner, cl_ord_id=clid)
            found = [] if snap is None or not snap.is_open else [snap]
        else:
            found = self.engine.open_orders(account.owner)
        snaps = [s for s in found if ref is None or self._userref_of(s.order_id) == ref]
        return {"open": {s.order_id: self._order_json(s, trades) for s in snaps}}

    def _closed_orders(self, account: ApiAccount, p: Mapping[str, str]) -> dict[str, object]:
        """Closed orders: by ``cl_ord_id``, else all the account's retained ones, newest first,
        whichever face placed them (FIX, WS or REST), as Kraken lists them."""
        owner = account.owner
        clid = p.get("cl_ord_id")
        start = _decimal(p.get("start"), "start")
        if clid is not None:
            snap = self.engine.order_status(owner, cl_ord_id=clid)
            snaps = [] if snap is None else [snap]
        else:
            snaps = self.engine.closed_orders(owner)
        trades = _flag(p.get("trades"))
        ref = _userref(p.get("userref"))
        closed = {s.order_id: self._order_json(s, trades) for s in snaps
                  if not s.is_open and (start is None or _secs(s.created_time) >= start)
                  and (ref is None or self._userref_of(s.order_id) == ref)}
        return {"closed": closed, "count": len(closed)}

    def _query_orders(self, account: ApiAccount, p: Mapping[str, str]) -> dict[str, object]:
        txids = [t for t in p.get("txid", "").split(",") if t]
        if not txids or len(txids) > 50:
            raise _Err("EGeneral:Invalid arguments:txid")
        trades = _flag(p.get("trades"))
        out: dict[str, object] = {}
        for t in txids:
            snap = self.engine.order_status(account.owner, order_id=t)
            if snap is None:
                raise _Err(E_UNKNOWN_ORDER)
            out[t] = self._order_json(snap, trades)
        return out

    # -- balances and own trades -----------------------------------------------------------

    def _wallet(self, account: ApiAccount) -> dict[str, Decimal]:
        """The account's wallet (canonical asset -> amount); caller holds ``self._lock``."""
        wallet = self._wallets.get(account.owner)
        if wallet is None:
            wallet = self._wallets[account.owner] = dict(account.balances)
        return wallet

    def _book_fill(self, account: ApiAccount, ev: Filled) -> None:
        """Move the wallet by one fill (no fee: the simulator charges none) and keep the fill
        for TradesHistory and its trade id for the order. Runs in the engine listener, so only
        dict updates."""
        inst = self.engine.instruments[ev.order.symbol]
        sign = 1 if ev.order.side is Side.BUY else -1
        with self._lock:
            wallet = self._wallet(account)
            wallet[inst.base] = wallet.get(inst.base, Decimal(0)) + sign * ev.last_qty
            wallet[inst.quote] = (wallet.get(inst.quote, Decimal(0))
                                  - sign * ev.last_qty * ev.last_px)
            self._fills[account.owner].append(ev)
            trades = self._trades.get(ev.order.order_id)
            if trades is None:
                trades = self._trades[ev.order.order_id] = []
                if len(self._trades) > self._trades_kept:
                    del self._trades[next(iter(self._trades))]  # the longest-known order
            trades.append(ev.trade_txid)

    def _asset_decimals(self, asset: str) -> int:
        return _FIAT_DECIMALS if asset in _FIAT else _ASSET_DECIMALS

    def _amount(self, asset: str, amount: Decimal) -> str:
        return _f(amount.quantize(Decimal(1).scaleb(-self._asset_decimals(asset))))

    def _balances(self, account: ApiAccount) -> dict[str, Decimal]:
        assets = {code for i in self._spot_instruments() for code in (i.base, i.quote)}
        with self._lock:
            wallet = dict(self._wallet(account))
        return {a: wallet.get(a, Decimal(0)) for a in sorted(assets | set(wallet))}

    def _balance(self, account: ApiAccount, p: Mapping[str, str]) -> dict[str, object]:
        """Kraken ``Balance``: asset -> amount string at the asset's decimals, keyed like
        ``Assets`` (``XBT``), from the demo wallet moved by this account's fills."""
        return {to_kraken_asset(a): self._amount(a, v)
                for a, v in self._balances(account).items()}

    def _balance_ex(self, account: ApiAccount, p: Mapping[str, str]) -> dict[str, object]:
        """Kraken ``BalanceEx`` (what ccxt ``fetch_balance`` reads): ``balance`` and
        ``hold_trade``, the part reserved by open orders (quote for resting buys, base for
        resting sells)."""
        held: dict[str, Decimal] = defaultdict(Decimal)
        for o in self.engine.open_orders(account.owner):
            inst = self.engine.instruments[o.symbol]
            if o.side is Side.BUY and o.price is not None:
                held[inst.quote] += o.leaves_qty * o.price
            elif o.side is Side.SELL:
                held[inst.base] += o.leaves_qty
        return {to_kraken_asset(a): {"balance": self._amount(a, v),
                                     "hold_trade": self._amount(a, held.get(a, Decimal(0)))}
                for a, v in self._balances(account).items()}

    def _trades_history(self, account: ApiAccount, p: Mapping[str, str]) -> dict[str, object]:
        """Kraken ``TradesHistory``: this account's fills, newest first, keyed by trade txid,
        ``start``/``end`` (unix seconds, exclusive) and ``ofs`` (50 per page) applied."""
        start, end = _decimal(p.get("start"), "start"), _decimal(p.get("end"), "end")
        ofs_text = p.get("ofs") or "0"
        if not ofs_text.isdigit():
            raise _Err("EGeneral:Invalid arguments:ofs")
        with self._lock:
            fills = list(self._fills.get(account.owner, ()))
        fills.reverse()
        fills = [f for f in fills if (start is None or _secs(f.time) > start)
                 and (end is None or _secs(f.time) < end)]
        page = fills[int(ofs_text):int(ofs_text) + 50]
        trades: dict[str, object] = {}
        for f in page:
            inst = self.engine.instruments[f.order.symbol]
            price = f.last_px.quantize(inst.price_quantum)
            trades[f.trade_txid] = {
                "ordertxid": f.order.order_id,
                "postxid": f.exec_id,
                "pair": rest_altname(inst.symbol),
                "time": _secs(f.time),
                "type": "buy" if f.order.side is Side.BUY else "sell",
                "ordertype": "limit" if f.order.ord_type is OrdType.LIMIT else "market",
                "price": _f(price),
                "cost": _f((f.last_px * f.last_qty).quantize(inst.price_quantum)),
                "fee": _f(Decimal(0).quantize(inst.price_quantum)),
                "vol": _f(f.last_qty.quantize(inst.qty_quantum)),
                "margin": _f(Decimal(0).quantize(inst.price_quantum)),
                "misc": "",
                "maker": f.is_maker,
                "trade_id": f.trade_id,  # the trade's, as in Trades and on WS
            }
        return {"trades": trades, "count": len(fills)}

    def _ws_token(self, account: ApiAccount, p: Mapping[str, str]) -> dict[str, object]:
        return {"token": self.accounts.issue_token(account.owner), "expires": 900}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "fixgw-spot-sim/1"
            timeout = 30

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                try:
                    status, text = outer.handle(self.command, self.path,
                                                _Headers(self.headers), body)
                except Exception:
                    log.exception("spot REST %s %s failed", self.command, self.path)
                    status, text = 500, dumps({"error": ["EGeneral:Internal error"]})
                data = text.encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test): nothing to answer
                    self.close_connection = True

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.client_address[0], *args)

        return _Handler


# --------------------------------------------------------------------------------------------


def _form(text: str) -> dict[str, str]:
    """Form body to a dict (last value wins); blank values kept, as Kraken treats them."""
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _userref(value: str | None) -> int | None:
    """Kraken's ``userref``: a signed 32-bit integer, or absent."""
    if value is None or value == "":
        return None
    if not value.lstrip("-").isdigit() or not -(2**31) <= int(value) < 2**31:
        raise _Err("EGeneral:Invalid arguments:userref")
    return int(value)


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def _decimal(value: str | None, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise _Err(f"EGeneral:Invalid arguments:{name}") from None
    if not d.is_finite():
        raise _Err(f"EGeneral:Invalid arguments:{name}")
    return d


def _descr_order(inst: Instrument, side: str, otype: str, volume: Decimal,
                 price: Decimal | None) -> str:
    """Kraken's ``descr.order`` text, e.g. ``buy 1.25000000 XBTUSD @ limit 37500.0``."""
    vol = _f(volume.quantize(inst.qty_quantum)) if volume.adjusted() < 15 else _f(volume)
    head = f"{side} {vol} {rest_altname(inst.symbol)} @ {otype}"
    if price is None:
        return head
    px = price.quantize(inst.price_quantum) if price.adjusted() < 15 else price
    return f"{head} {_f(px)}"


def _asset_pair(inst: Instrument) -> dict[str, object]:
    base, quote = to_kraken_asset(inst.base), to_kraken_asset(inst.quote)
    return {
        "altname": rest_altname(inst.symbol),
        "wsname": ws_v1_name(inst.symbol),
        "aclass_base": "currency",
        "base": base,
        "aclass_quote": "currency",
        "quote": quote,
        "pair_decimals": inst.price_decimals,
        "cost_decimals": inst.price_decimals,
        "lot_decimals": inst.qty_decimals,
        "lot_multiplier": 1,
        "ordermin": _f(inst.min_qty),
        "costmin": "0.5",
        "tick_size": _f(inst.price_tick),
        "status": "online",
    }


def _ticker_json(inst: Instrument, bids: list[tuple[Decimal, Decimal]],
                 asks: list[tuple[Decimal, Decimal]], trades: list[TradePrinted],
                 now_ns: int) -> dict[str, object]:
    """One pair's ``Ticker`` entry: ``a``/``b`` ``[price, whole lot volume, lot volume]`` from
    the best level, ``c`` the last trade, and ``v``/``p``/``t``/``l``/``h`` as ``[today,
    last 24 hours]`` (today = since 00:00 UTC) over the engine's tape; ``o`` is today's first
    trade price. Every number is a string at the pair's decimals, as Kraken prints them; a side
    or window without data reads as zeros (what Kraken shows for an idle pair)."""
    pq, qq = inst.price_quantum, inst.qty_quantum

    def px(d: Decimal) -> str:
        return _f(d.quantize(pq))

    def qty(d: Decimal) -> str:
        return _f(d.quantize(qq))

    def top(levels: list[tuple[Decimal, Decimal]]) -> list[str]:
        if not levels:
            return [px(Decimal(0)), "0", qty(Decimal(0))]
        p, q = levels[0]
        return [px(p), str(int(q)), qty(q)]

    day_start = now_ns - now_ns % _DAY_NS
    windows = ([t for t in trades if t.time >= day_start],
               [t for t in trades if t.time >= now_ns - _DAY_NS])
    vols = [sum((t.qty for t in w), Decimal(0)) for w in windows]
    vwaps = [sum((t.qty * t.price for t in w), Decimal(0)) / v if v else Decimal(0)
             for w, v in zip(windows, vols, strict=True)]
    lows = [min((t.price for t in w), default=Decimal(0)) for w in windows]
    highs = [max((t.price for t in w), default=Decimal(0)) for w in windows]
    last = trades[-1] if trades else None
    return {
        "a": top(asks),
        "b": top(bids),
        "c": [px(last.price), qty(last.qty)] if last else [px(Decimal(0)), qty(Decimal(0))],
        "v": [qty(v) for v in vols],
        "p": [px(v) for v in vwaps],
        "t": [len(w) for w in windows],
        "l": [px(v) for v in lows],
        "h": [px(v) for v in highs],
        "o": px(windows[0][0].price) if windows[0] else px(Decimal(0)),
    }
