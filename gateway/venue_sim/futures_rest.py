"""The simulator's Kraken Futures REST face: public tickers, funding history and instruments,
``/accounts``, and order entry on the shared matching engine, every private call checking
``Authent``.

Why a real HTTP server (stdlib ``ThreadingHTTPServer`` on loopback) rather than a fake client:
the gateway's client, third-party SDKs and ``curl`` must all be able to point at it, and the
things that break in production (status codes, non-JSON error bodies, dropped connections,
signatures computed over the wrong bytes) only show up on a real socket.

Wire formats follow ``shared/kraken-api.md`` §2 and §5 and Kraken's OpenAPI examples
(krakenfx/api-specs ``futures-rest/trading/public.yml``):

* ``GET /derivatives/api/v3/tickers``: ``{"result":"success","serverTime":...,"tickers":[...]}``
  with every perp of the scenario (``fundingRate``/``fundingRatePrediction`` **absolute**) plus
  the spot-index tickers Kraken lists alongside them (``in_arbusd``: only ``symbol``, ``last``,
  ``lastTime``), so that clients are exercised on the mixed list they will really get.
* ``GET /derivatives/api/v3/tickers/{symbol}``: ``{"result":"success","ticker":{...}}``; an unknown
  symbol is HTTP 404 ``notFound``.
* ``GET /derivatives/api/v3/historical-funding-rates?symbol=PF_ARBUSD``: ``rates`` ascending; a
  spot/index/unknown symbol is HTTP 400 ``invalidArgument``; no symbol is HTTP 400
  ``requiredArgumentMissing``.
* ``GET /derivatives/api/v4/historicalfundingrates?symbol=PF_ARBUSD``: the same body, at the
  path python-kraken-sdk and ccxt ``krakenfutures`` use today.
* ``GET /derivatives/api/v3/instruments``: the scenario's perps (``flexible_futures``).
* ``GET /derivatives/api/v3/accounts``: private. ``APIKey`` must be one of the server's keys
  (the test key or an extra account's) and ``Authent`` must equal
  ``futures_authent(secret, "/api/v3/accounts", query + body, Nonce)`` with that key's secret
  (path **without** ``/derivatives``, the url-encoded query exactly as sent; kraken-api.md §2).
  Anything else is ``{"result":"error","error":"authenticationError"}``; a ``Nonce`` the key
  has used is ``nonceDuplicate``. Both inside an HTTP 200, as the live venue answers: a live
  ``/accounts`` call with bad credentials surfaced in python-kraken-sdk as
  ``KrakenAuthenticationError`` (its issue #303), which the SDK raises only for an error body
  in a 200; for any other status it raises a plain exception with the status.

* Order entry, when the face is given the simulator's ``engine``: ``POST /sendorder``
  (``lmt``/``post``/``ioc``/``mkt``), ``POST /cancelorder``, ``POST /cancelallorders``,
  ``GET /openorders``, ``GET|POST /orders/status``, ``GET /fills``, ``GET /openpositions``
  (net of this account's fills), all authenticated like ``/accounts``; and
  public ``GET /orderbook?symbol=`` from the same engine book the orders trade against (see
  :class:`_FuturesOrders`). Without an engine these answer HTTP 503.

Kraken has no endpoint for open interest by side, so none is served; a scenario's positioning
record is for tests to push over gRPC (see ``scenarios``).

Numbers are written as JSON numbers (as Kraken does), from ``Decimal`` so that what the scenario
says is exactly what the wire carries. Symbols are matched case-insensitively, as Kraken's are.

Test hooks: ``set_scenario``/``set_figures`` swap figures atomically while serving;
``fail_next(n, status)`` answers the next ``n`` requests with an error (503 for retry tests);
``request_count(path)`` shows how many attempts a client made.
"""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from gateway.kraken.auth import decode_secret, futures_authent
from gateway.venue_sim import engine as e
from gateway.venue_sim.http_face import HttpFace
from gateway.venue_sim.instruments import INSTRUMENTS, Instrument, InstrumentKind
from gateway.venue_sim.scenarios import (
    PerpFigures,
    Scenario,
    iso_utc_ms,
    resolve_scenario,
)

__all__ = ["API_PREFIX", "FuturesRestServer"]

log = logging.getLogger("fixgw.venue_sim.futures_rest")

#: Every route lives under this prefix, as on futures.kraken.com.
API_PREFIX = "/derivatives/api/v3"
#: The one v4 route: funding history under the name current clients call
#: (python-kraken-sdk ``Market.get_historical_funding_rates``, ccxt ``krakenfutures``).
V4_FUNDING_PATH = "/derivatives/api/v4/historicalfundingrates"

_NONCE_MEMORY = 10_000
# authenticationError and nonceDuplicate come inside a 200, as on the live venue (see above).
_AUTH_ERROR_STATUS = 200
_OPENING_DATE = "2022-01-01T00:00:00.000Z"


# --------------------------------------------------------------------------------------------
# JSON with Decimal numbers

def _number(d: Decimal) -> str:
    """A ``Decimal`` as a JSON number token (``str`` is valid JSON for finite decimals)."""
    if not d.is_finite():
        raise ValueError(f"cannot put non-finite {d} on the wire")
    return str(d).replace("E", "e")


def dumps(obj: object) -> str:
    """``json.dumps`` that writes ``Decimal`` as a number, exactly (json has no hook for this)."""
    if obj is None or isinstance(obj, bool | str | int | float):
        return json.dumps(obj, allow_nan=False)
    if isinstance(obj, Decimal):
        return _number(obj)
    if isinstance(obj, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    raise TypeError(f"cannot serialise {type(obj).__name__}")


# --------------------------------------------------------------------------------------------
# Response bodies

def _pair(inst: Instrument) -> str:
    return f"{inst.base}:{inst.quote}"


def _index_symbol(inst: Instrument) -> str:
    """Kraken's real-time index ticker name for a perp (``PF_ARBUSD`` -> ``in_arbusd``)."""
    return f"in_{inst.base.lower()}{inst.quote.lower()}"


def _on_grid(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    return (price / tick).to_integral_value(rounding=rounding) * tick


def ticker_json(fig: PerpFigures, now: float) -> dict[str, object]:
    """One perp's ``MarketTicker`` (kraken-api.md §5), derived from the scenario figures.

    The book top straddles the mark on the tick grid (one tick wide when the mark is off-grid),
    ``last`` is the mark rounded to the grid, and the 24 h range spans ``open24h`` and ``last``.
    """
    inst = INSTRUMENTS[fig.symbol]
    tick, q = inst.price_tick, inst.qty_quantum
    bid = _on_grid(fig.mark_price, tick, ROUND_FLOOR)
    ask = _on_grid(fig.mark_price, tick, ROUND_CEILING)
    if bid == ask:
        bid, ask = bid - tick, ask + tick
    last = fig.mark_price.quantize(inst.price_quantum, rounding=ROUND_HALF_EVEN)
    open24h = fig.open24h if fig.open24h is not None else last
    top = max(inst.min_qty, (fig.vol24h / 2000).quantize(q, rounding=ROUND_FLOOR))
    change = ((last - open24h) / open24h * 100).quantize(Decimal("1e-10"))
    return {
        "tag": "perpetual",
        "pair": _pair(inst),
        "symbol": fig.symbol,
        "markPrice": fig.mark_price,
        "bid": bid,
        "bidSize": top,
        "ask": ask,
        "askSize": top,
        "vol24h": fig.vol24h,
        "volumeQuote": (fig.vol24h * fig.mark_price).quantize(Decimal("0.01")),
        "openInterest": fig.open_interest,
        "open24h": open24h,
        "high24h": max(open24h, last, ask),
        "low24h": min(open24h, last, bid),
        "indexPrice": fig.index_price,
        "last": last,
        "lastTime": iso_utc_ms(now - 1.0),
        "lastSize": inst.min_qty,
        "suspended": fig.suspended,
        "fundingRate": fig.funding_rate_abs,
        "fundingRatePrediction": fig.funding_rate_prediction_abs,
        "postOnly": False,
        "change24h": change,
    }


def instrument_json(inst: Instrument) -> dict[str, object]:
    """A perp in the ``/instruments`` shape (Kraken's ``InstrumentsExample`` for ``PF_XBTUSD``)."""
    tiers = ((0, "0.02", "0.01"), (500000, "0.04", "0.02"), (2000000, "0.1", "0.05"),
             (5000000, "0.2", "0.1"))
    levels = [{"numNonContractUnits": n, "initialMargin": Decimal(im),
               "maintenanceMargin": Decimal(mm)} for n, im, mm in tiers]
    return {
        "symbol": inst.symbol,
        "pair": _pair(inst),
        "base": inst.base,
        "quote": inst.quote,
        "type": "flexible_futures",
        "tickSize": inst.price_tick,
        "contractSize": 1,
        "tradeable": True,
        "impactMidSize": 1,
        "maxPositionSize": 1000000,
        "openingDate": _OPENING_DATE,
        "marginLevels": levels,
        "retailMarginLevels": levels,
        "fundingRateCoefficient": 8,
        "maxRelativeFundingRate": Decimal("0.001"),
        "contractValueTradePrecision": inst.qty_decimals,
        "postOnly": False,
        "category": "",
        "tags": [],
        "tradfi": False,
        "mtf": False,
    }


def _accounts_json() -> dict[str, object]:
    """A multi-collateral (flex) wallet holding 10,000 USD and no positions."""
    usd = Decimal("10000.0")
    zero = Decimal("0.0")
    return {"flex": {
        "type": "multiCollateralMarginAccount",
        "currencies": {"USD": {"quantity": usd, "value": usd, "collateral": usd,
                               "available": usd}},
        "balanceValue": usd, "portfolioValue": usd, "collateralValue": usd,
        "initialMargin": zero, "initialMarginWithOrders": zero, "maintenanceMargin": zero,
        "pnl": zero, "unrealizedFunding": zero, "totalUnrealized": zero,
        "totalUnrealizedAsMargin": zero, "marginEquity": usd, "availableMargin": usd,
    }}


# --------------------------------------------------------------------------------------------
# Server

@dataclass(frozen=True, slots=True)
class _Fault:
    status: int
    error: str
    raw_body: str | None
    path_prefix: str | None


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: str
    content_type: str = "application/json"


class FuturesRestServer(HttpFace):
    """Kraken Futures REST on loopback for one scenario; ``start()``/``stop()``, ``.port``.

    The port is bound at construction (so ``.port``/``.base_url`` are known before ``start()``)
    and kept across ``stop()``/``start()``, so a client or poller configured once sees the venue
    go away and come back at the same address.

    ``api_key``/``api_secret`` are the test credentials ``/accounts`` accepts, trading as
    ``owner``; ``extra_accounts`` are more ``(api_key, api_secret, owner)``, each its own account
    (orders, fills, positions, nonces). Without any, every private call is refused.
    ``clock`` (epoch seconds) drives ``serverTime`` and the funding history's boundaries, so
    tests can pin time.
    """

    def __init__(
        self,
        scenario: Scenario | str | Path = "default",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        api_secret: str | None = None,
        clock: Callable[[], float] = time.time,
        engine: e.MatchingEngine | None = None,
        owner: str = "FUTURES",
        extra_accounts: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        if (api_key is None) != (api_secret is None):
            raise ValueError("give both api_key and api_secret, or neither")
        # api key -> (secret, engine owner): the test key first, then `extra_accounts`
        # (key, secret, owner), each its own account with its own orders, fills and positions.
        keys = [] if api_key is None or api_secret is None else [(api_key, api_secret, owner)]
        keys += list(extra_accounts)
        for _, secret, _ in keys:
            decode_secret(secret)  # a malformed test secret fails here, not as an auth error later
        self._keys = {key: (secret, who) for key, secret, who in keys}
        self._clock = clock
        self._lock = threading.Lock()
        self._scenario = resolve_scenario(scenario)
        self._faults: deque[_Fault] = deque()
        self._counts: dict[str, int] = {}
        # (api key, nonce) pairs seen: nonces are per key, as on Kraken.
        self._nonces: deque[tuple[str, str]] = deque(maxlen=_NONCE_MEMORY)
        self._nonce_set: set[tuple[str, str]] = set()
        # Order entry per engine owner (accounts that share one share its orders); `orders` is
        # the test key's, and what the public order book reads.
        self._orders: dict[str, _FuturesOrders] = {}
        if engine is not None:
            for who in (owner, *(w for _, w in self._keys.values())):
                if who not in self._orders:
                    self._orders[who] = _FuturesOrders(engine, who, clock)
        self.orders = self._orders.get(owner)
        self._init_http(host, port)

    face_name = "futures-rest"

    # -- lifecycle ---------------------------------------------------------------------------

    def _on_start(self) -> None:
        log.info("Kraken Futures REST simulator on %s (scenario %s)", self.base_url,
                 self._scenario.name)

    def close(self) -> None:
        """Stop, and detach from the engine when there is one (the engine outlives faces)."""
        self.stop()
        for orders in self._orders.values():
            orders.close()

    # -- test hooks --------------------------------------------------------------------------

    @property
    def scenario(self) -> Scenario:
        with self._lock:
            return self._scenario

    def set_scenario(self, scenario: Scenario | str | Path) -> Scenario:
        """Serve another scenario from the next request on (name, object or file path)."""
        resolved = resolve_scenario(scenario)
        with self._lock:
            self._scenario = resolved
        log.info("futures REST scenario -> %s", resolved.name)
        return resolved

    def set_figures(self, symbol: str, **overrides: object) -> PerpFigures:
        """Override some figures of one perp (``Scenario.with_figures`` rules); returns them."""
        with self._lock:
            self._scenario = self._scenario.with_figures(symbol, **overrides)
            return self._scenario.perp(symbol)

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        error: str = "Unavailable",
        *,
        raw_body: str | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Answer the next ``n`` requests (optionally only those under ``path_prefix``) with
        ``status`` and Kraken's error JSON carrying ``error`` (or ``raw_body`` verbatim, e.g. an
        HTML page from a load balancer). ``status=200`` gives an error inside a 200, which is how
        Kraken reports most failures."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            for _ in range(n):
                self._faults.append(_Fault(status, error, raw_body, path_prefix))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def request_count(self, path: str | None = None) -> int:
        """Requests received (all, or for one URL path without query), faults included."""
        with self._lock:
            if path is None:
                return sum(self._counts.values())
            return self._counts.get(path, 0)

    # -- request handling (called on handler threads) ---------------------------------------

    def _now(self) -> float:
        return self._clock()

    def _error(self, status: int, error: str) -> _Reply:
        return _Reply(status, dumps({"result": "error", "serverTime": iso_utc_ms(self._now()),
                                     "error": error}))

    def _ok(self, payload: dict[str, object]) -> _Reply:
        body = {"result": "success", **payload, "serverTime": iso_utc_ms(self._now())}
        return _Reply(200, dumps(body))

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            self._counts[path] = self._counts.get(path, 0) + 1
            for i, fault in enumerate(self._faults):
                if fault.path_prefix is None or path.startswith(fault.path_prefix):
                    del self._faults[i]
                    return fault
        return None

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str],
               body: str) -> _Reply:
        """Route one request; public so a test can drive the logic without a socket."""
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        fault = self._take_fault(path)
        if fault is not None:
            if fault.raw_body is not None:
                return _Reply(fault.status, fault.raw_body, "text/html")
            return self._error(fault.status, fault.error)
        if path.rstrip("/") == V4_FUNDING_PATH:
            # v4 serves the same ``rates`` body as v3 (what python-kraken-sdk and ccxt call).
            if method != "GET":
                return self._error(405, "notFound")
            query4 = parse_qs(parts.query, keep_blank_values=True)
            return self._funding(query4.get("symbol", [""])[0])
        if not path.startswith(API_PREFIX + "/"):
            return self._error(404, "notFound")
        route = path[len(API_PREFIX):]
        if route in _ORDER_ROUTES:
            return self._order_route(method, route, parts.query, headers, body)
        if method != "GET":
            return self._error(405, "notFound")
        query = parse_qs(parts.query, keep_blank_values=True)
        if route == "/tickers":
            return self._tickers()
        if route.startswith("/tickers/"):
            return self._ticker(route[len("/tickers/"):])
        if route == "/historical-funding-rates":
            return self._funding(query.get("symbol", [""])[0])
        if route == "/instruments":
            # The scenario's perps, so that instruments, tickers and funding always agree.
            return self._ok({"instruments": [instrument_json(INSTRUMENTS[s])
                                             for s in self.scenario.perps]})
        if route == "/orderbook":
            return self._orderbook(query.get("symbol", [""])[0])
        if route == "/accounts":
            err, _ = self._check_auth(route, parts.query, headers, body)
            if err is not None:
                return self._error(_AUTH_ERROR_STATUS, err)
            return self._ok({"accounts": _accounts_json()})
        return self._error(404, "notFound")

    def _tickers(self) -> _Reply:
        scenario, now = self.scenario, self._now()
        tickers: list[dict[str, object]] = []
        for fig in scenario.perps.values():
            inst = INSTRUMENTS[fig.symbol]
            tickers.append(ticker_json(fig, now))
            tickers.append({"symbol": _index_symbol(inst), "last": fig.index_price,
                            "lastTime": iso_utc_ms(now)})
        return self._ok({"tickers": tickers})

    def _ticker(self, symbol: str) -> _Reply:
        try:
            fig = self.scenario.perp(symbol)
        except KeyError:
            return self._error(404, "notFound")
        return self._ok({"ticker": ticker_json(fig, self._now())})

    def _funding(self, symbol: str) -> _Reply:
        if not symbol:
            return self._error(400, "requiredArgumentMissing")
        scenario = self.scenario
        try:
            fig = scenario.perp(symbol)
        except KeyError:
            # Spot pairs, index tickers, dated futures: Kraken answers HTTP 400 (§5).
            return self._error(400, "invalidArgument")
        rates = [r.as_json() for r in scenario.funding_history(fig.symbol, self._now())]
        return self._ok({"rates": rates})

    def _orderbook(self, symbol: str) -> _Reply:
        """``orderBook`` ``{bids, asks}`` of ``[price, size]`` numbers from the shared engine's
        perp book (what an order sent here trades against), not from the scenario."""
        if not symbol:
            return self._error(400, "requiredArgumentMissing")
        orders = self.orders
        if orders is None:  # built without an engine: there is no book to show
            return self._error(503, "Unavailable")
        sym = symbol.upper()
        if sym not in orders.symbols:
            return self._error(400, "invalidArgument")
        bids, asks = orders.engine.levels(sym, _BOOK_LEVELS)
        return self._ok({"orderBook": {"bids": [[p, q] for p, q in bids],
                                       "asks": [[p, q] for p, q in asks]}})

    def _order_route(self, method: str, route: str, query: str, headers: Mapping[str, str],
                     body: str) -> _Reply:
        """The private order-entry routes: authenticated like ``/accounts``; parameters from
        the query string and the form body together (ccxt sends them in the query of a POST,
        python-kraken-sdk in the body), repeated keys kept as lists (``orderIds``)."""
        allowed = ("GET", "POST") if route == "/orders/status" else (
            ("GET",) if route in _GET_ROUTES else ("POST",))
        if method not in allowed:
            return self._error(405, "notFound")
        err, owner = self._check_auth(route, query, headers, body)
        if err is not None:
            return self._error(_AUTH_ERROR_STATUS, err)
        orders = self._orders.get(owner)
        if orders is None:
            # The face was built without an engine: no order book to trade on.
            return self._error(503, "Unavailable")
        params: dict[str, list[str]] = {}
        for text in (query, body):
            for k, v in parse_qs(text, keep_blank_values=True).items():
                params.setdefault(k, []).extend(v)
        try:
            payload = orders.handle(route, params)
        except _FutErr as exc:
            return self._error(exc.status, exc.error)
        return self._ok(payload)

    def _check_auth(self, route: str, query: str, headers: Mapping[str, str],
                    body: str) -> tuple[str | None, str]:
        """Kraken's ``Authent`` check (kraken-api.md §2): (the error string, or ``None`` if OK;
        the engine owner of the key)."""
        key, authent = headers.get("APIKey"), headers.get("Authent")
        nonce = headers.get("Nonce")
        account = self._keys.get(key) if key else None
        if key is None or account is None or not authent:
            return "authenticationError", ""
        secret, owner = account
        # Post-2024 rule: sign the url-encoded query exactly as sent, then the body.
        expected = futures_authent(secret, "/api/v3" + route, query + body, nonce)
        if not hmac.compare_digest(expected.encode(), authent.encode()):
            return "authenticationError", ""
        if nonce is not None:
            with self._lock:
                if (key, nonce) in self._nonce_set:
                    return "nonceDuplicate", ""
                if len(self._nonces) == self._nonces.maxlen:
                    self._nonce_set.discard(self._nonces[0])
                self._nonces.append((key, nonce))
                self._nonce_set.add((key, nonce))
        return None, owner

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "fixgw-futures-sim/1"
            timeout = 30  # an idle keep-alive connection does not pin a thread forever

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                try:
                    reply = outer.handle(self.command, self.path, _Headers(self.headers), body)
                except Exception:  # a bug in one route must not kill the connection silently
                    log.exception("futures REST %s %s failed", self.command, self.path)
                    reply = outer._error(500, "Server Error")
                data = reply.body.encode("utf-8")
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.client_address[0], *args)

        return _Handler


class _Headers(Mapping[str, str]):
    """Case-insensitive header view (HTTP header names are; ``APIKey`` may arrive as ``apikey``)."""

    def __init__(self, msg: Any) -> None:
        self._msg = msg

    def __getitem__(self, key: str) -> str:
        value = self._msg.get(key)
        if value is None:
            raise KeyError(key)
        return str(value)

    def __iter__(self) -> Any:
        return iter(self._msg.keys())

    def __len__(self) -> int:
        return len(self._msg.keys())


# --------------------------------------------------------------------------------------------
# Order entry on the shared engine

_ORDER_ROUTES = frozenset({"/sendorder", "/cancelorder", "/cancelallorders", "/openorders",
                           "/orders/status", "/fills", "/openpositions"})
_GET_ROUTES = frozenset({"/openorders", "/fills", "/openpositions"})
#: Own fills kept for ``/fills`` (Kraken answers the last 100 before ``lastFillTime``).
_FILLS_KEPT = 10_000
_FILLS_PAGE = 100
#: Levels ``/orderbook`` returns per side (Kraken returns the whole book; ours is bounded so a
#: synthetic book cannot make one answer arbitrarily large).
_BOOK_LEVELS = 500
#: Namespace of the UUIDs this face shows for engine order ids: Kraken Futures order ids are
#: UUIDs, and clients (ccxt) keep them as opaque strings, so a stable v5 UUID per engine id
#: looks like the real thing and maps back without a guess.
_ORDER_NS = uuid.UUID("6f1d0c58-96a4-4d43-9a49-2a8f3b1c7e10")
_FUT_TYPES = {"lmt": (e.OrdType.LIMIT, e.TimeInForce.GTC),
              "post": (e.OrdType.LIMIT, e.TimeInForce.GTC),
              "ioc": (e.OrdType.LIMIT, e.TimeInForce.IOC),
              "mkt": (e.OrdType.MARKET, e.TimeInForce.IOC)}
_SYNTH = e.FUTURES_REST_CL_ORD_ID_PREFIX


class _FutErr(Exception):
    """A request-level refusal: HTTP ``status`` with Kraken's ``{"result":"error"}`` body."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class _Refused(Exception):
    """A ``sendStatus.status`` other than ``placed`` (Kraken answers these with HTTP 200)."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def _one(params: Mapping[str, list[str]], key: str) -> str | None:
    values = params.get(key)
    return values[-1] if values else None


def _dec(text: str | None, status: str) -> Decimal | None:
    if text is None or text == "":
        return None
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise _Refused(status) from None
    if not d.is_finite() or d <= 0:
        raise _Refused(status)
    return d


class _FuturesOrders:
    """Kraken Futures order entry (``sendorder``, ``cancelorder``, ``cancelallorders``,
    ``openorders``, ``orders/status``, ``fills``, ``openpositions``) over the simulator's
    matching engine, so an order sent by a futures client rests in, trades against and shows up
    in the same perp book the synthetic flow quotes (and counts in ``submission_counts`` under
    ``owner``).

    Shapes follow python-kraken-sdk's docstring examples of Kraken's answers and ccxt
    ``krakenfutures.parse_order``: ``sendStatus``/``cancelStatus`` with ``orderEvents``,
    ``openOrders`` items with ``unfilledSize``/``filledSize``, ``orders`` items wrapping
    ``order`` with ``ENTERED_BOOK``/``FULLY_EXECUTED``/``CANCELLED``. Numbers are JSON numbers
    from Decimal. Not modelled: trigger orders, margin and PnL, funding accrual, the futures
    rate budget.
    """

    def __init__(self, engine: e.MatchingEngine, owner: str,
                 clock: Callable[[], float]) -> None:
        self.engine = engine
        self.owner = owner
        self._clock = clock
        self.symbols = frozenset(s for s, i in engine.instruments.items()
                                 if i.kind is InstrumentKind.PERPETUAL)
        self._lock = threading.Lock()
        self._uuid_to_engine: dict[str, str] = {}
        self._placed: deque[str] = deque(maxlen=10_000)  # engine ids, oldest first
        self._synth = itertools.count(1)
        self._fills: deque[e.Filled] = deque(maxlen=_FILLS_KEPT)
        #: symbol -> (signed size, average entry price, last fill time ns)
        self._positions: dict[str, tuple[Decimal, Decimal, int]] = {}
        engine.add_listener(self._on_events)

    def close(self) -> None:
        self.engine.remove_listener(self._on_events)

    def _on_events(self, events: tuple[e.Event, ...]) -> None:
        """Keep this account's fills and net positions (under the engine lock: dict work
        only). A fill adds to or reduces the position; adding moves the average entry price,
        reducing keeps it, flipping starts the new side at the fill price."""
        for ev in events:
            if not isinstance(ev, e.Filled) or ev.order.owner != self.owner:
                continue
            signed = ev.last_qty if ev.order.side is e.Side.BUY else -ev.last_qty
            with self._lock:
                self._fills.append(ev)
                size, avg, _ = self._positions.get(ev.order.symbol, (Decimal(0), Decimal(0), 0))
                new = size + signed
                if size == 0 or (size > 0) == (signed > 0):
                    avg = (abs(size) * avg + ev.last_qty * ev.last_px) / abs(new)
                elif new != 0 and (new > 0) != (size > 0):
                    avg = ev.last_px
                if new == 0:
                    self._positions.pop(ev.order.symbol, None)
                else:
                    self._positions[ev.order.symbol] = (new, avg, ev.time)

    # -- ids -----------------------------------------------------------------------------------

    def _public_id(self, engine_id: str) -> str:
        uid = str(uuid.uuid5(_ORDER_NS, engine_id))
        with self._lock:
            self._uuid_to_engine[uid] = engine_id
        return uid

    def _engine_id(self, public_id: str) -> str | None:
        with self._lock:
            return self._uuid_to_engine.get(public_id.lower())

    @staticmethod
    def _cli(snap: e.OrderSnapshot) -> str | None:
        return None if snap.cl_ord_id.startswith(_SYNTH) else snap.cl_ord_id

    def _order_obj(self, snap: e.OrderSnapshot) -> dict[str, object]:
        """The ``order`` object of order events and ``orders/status``."""
        return {
            "orderId": self._public_id(snap.order_id),
            "cliOrdId": self._cli(snap),
            "type": "lmt" if snap.ord_type is e.OrdType.LIMIT else "mkt",
            "symbol": snap.symbol,
            "side": "buy" if snap.side is e.Side.BUY else "sell",
            "quantity": snap.qty,
            "filled": snap.cum_qty,
            "limitPrice": snap.price if snap.price is not None else Decimal(0),
            "reduceOnly": False,
            "timestamp": iso_utc_ms(snap.created_time / 1e9),
            "lastUpdateTimestamp": iso_utc_ms(snap.transact_time / 1e9),
        }

    # -- routes --------------------------------------------------------------------------------

    def handle(self, route: str, p: Mapping[str, list[str]]) -> dict[str, object]:
        if route == "/sendorder":
            return {"sendStatus": self._send(p)}
        if route == "/cancelorder":
            return {"cancelStatus": self._cancel(p)}
        if route == "/cancelallorders":
            return {"cancelStatus": self._cancel_all(p)}
        if route == "/openorders":
            return {"openOrders": [self._open_item(s)
                                   for s in self.engine.open_orders(self.owner)]}
        if route == "/fills":
            return {"fills": self._fill_items(_one(p, "lastFillTime"))}
        if route == "/openpositions":
            return {"openPositions": self._position_items()}
        return {"orders": self._status(p)}

    def _fill_items(self, last_fill_time: str | None) -> list[dict[str, object]]:
        """``fills``, newest first, the 100 before ``lastFillTime`` (ISO time) if given."""
        with self._lock:
            fills = list(self._fills)
        fills.reverse()
        if last_fill_time:
            try:
                before = datetime.fromisoformat(last_fill_time.replace("Z", "+00:00"))
            except ValueError:
                raise _FutErr(400, "invalidArgument") from None
            cutoff = int(before.timestamp() * 1000)
            fills = [f for f in fills if f.time // 1_000_000 < cutoff]
        out: list[dict[str, object]] = []
        for f in fills[:_FILLS_PAGE]:
            item: dict[str, object] = {
                "fill_id": str(uuid.uuid5(_ORDER_NS, f.exec_id)),
                "symbol": f.order.symbol,
                "side": "buy" if f.order.side is e.Side.BUY else "sell",
                "order_id": self._public_id(f.order.order_id),
                "size": f.last_qty,
                "price": f.last_px,
                "fillTime": iso_utc_ms(f.time / 1e9),
                "fillType": "maker" if f.is_maker else "taker",
            }
            if (cli := self._cli(f.order)) is not None:
                item["cliOrdId"] = cli
            out.append(item)
        return out

    def _position_items(self) -> list[dict[str, object]]:
        """``openPositions`` from this account's fills (no funding accrues in the simulator,
        so ``unrealizedFunding`` is 0)."""
        with self._lock:
            positions = dict(self._positions)
        return [{"side": "long" if size > 0 else "short", "symbol": sym,
                 "price": avg.quantize(Decimal("1e-10")).normalize(),
                 "fillTime": iso_utc_ms(t / 1e9), "size": abs(size),
                 "unrealizedFunding": Decimal(0)}
                for sym, (size, avg, t) in sorted(positions.items())]

    def _received(self) -> str:
        return iso_utc_ms(self._clock())

    def _send(self, p: Mapping[str, list[str]]) -> dict[str, object]:
        received = self._received()
        order_type, side_text = _one(p, "orderType"), _one(p, "side")
        symbol, size_text = _one(p, "symbol"), _one(p, "size")
        if not order_type or not side_text or not symbol or not size_text:
            raise _FutErr(400, "requiredArgumentMissing")
        cli = _one(p, "cliOrdId") or None
        try:
            result = self._place(order_type, side_text, symbol.upper(), size_text,
                                 _one(p, "limitPrice"), cli)
        except _Refused as r:
            return {"status": r.status, "receivedTime": received, "orderEvents": []}
        result["receivedTime"] = received
        return result

    def _place(self, order_type: str, side_text: str, symbol: str, size_text: str,
               price_text: str | None, cli: str | None) -> dict[str, object]:
        kind = _FUT_TYPES.get(order_type)
        if kind is None:
            raise _Refused("invalidOrderType")
        side = {"buy": e.Side.BUY, "sell": e.Side.SELL}.get(side_text)
        if side is None:
            raise _Refused("invalidSide")
        if symbol not in self.symbols:
            raise _Refused("marketInactive")
        size = _dec(size_text, "invalidSize")
        assert size is not None
        ord_type, tif = kind
        price = _dec(price_text, "invalidPrice") if ord_type is e.OrdType.LIMIT else None
        if ord_type is e.OrdType.LIMIT and price is None:
            raise _Refused("invalidPrice")
        if cli is not None and len(cli) > 100:
            raise _Refused("clientOrderIdTooLong")
        clid = cli if cli is not None else f"{_SYNTH}{next(self._synth)}"
        try:
            # Post-only is checked by the engine under its lock, atomically with the matching:
            # the synthetic flow trades these books too and could cross in between otherwise.
            events = self.engine.submit(self.owner, clid, symbol, side, size, price, ord_type,
                                        tif, post_only=order_type == "post")
        except e.PostOnlyRefused:
            raise _Refused("postWouldExecute") from None
        first = events[0]
        if isinstance(first, e.Rejected):
            raise _Refused(_refusal(first.text))
        assert isinstance(first, e.Accepted)
        with self._lock:
            self._placed.append(first.order.order_id)
        order_events: list[dict[str, object]] = []
        last = first.order
        prior = first.order
        for ev in events[1:]:
            if isinstance(ev, e.Filled) and ev.order.order_id == first.order.order_id:
                order_events.append({
                    "executionId": str(uuid.uuid5(_ORDER_NS, ev.exec_id)),
                    "price": ev.last_px, "amount": ev.last_qty,
                    "orderPriorEdit": None, "orderPriorExecution": self._order_obj(prior),
                    "takerReducedQuantity": None, "type": "EXECUTION"})
                prior = last = ev.order
            elif isinstance(ev, e.Canceled) and ev.order.order_id == first.order.order_id:
                last = ev.order
        if not order_events or last.is_open:
            placed_obj = self._order_obj(last if last.is_open else first.order)
            order_events.insert(0, {"order": placed_obj, "reducedQuantity": None,
                                    "type": "PLACE"})
        if tif is e.TimeInForce.IOC and ord_type is e.OrdType.LIMIT and last.cum_qty == 0:
            return {"order_id": self._public_id(first.order.order_id),
                    "status": "iocWouldNotExecute", "orderEvents": []}
        out: dict[str, object] = {"order_id": self._public_id(first.order.order_id),
                                  "status": "placed", "orderEvents": order_events}
        if cli is not None:
            out["cliOrdId"] = cli
        return out

    def _find(self, p: Mapping[str, list[str]]) -> e.OrderSnapshot | None:
        oid, cli = _one(p, "order_id") or _one(p, "orderId"), _one(p, "cliOrdId")
        if oid:
            engine_id = self._engine_id(oid)
            return None if engine_id is None else self.engine.order_status(
                self.owner, order_id=engine_id)
        if cli:
            return self.engine.order_status(self.owner, cl_ord_id=cli)
        raise _FutErr(400, "requiredArgumentMissing")

    def _cancel(self, p: Mapping[str, list[str]]) -> dict[str, object]:
        received = self._received()
        snap = self._find(p)
        if snap is None:
            return {"status": "notFound", "receivedTime": received}
        out: dict[str, object] = {"order_id": self._public_id(snap.order_id),
                                  "receivedTime": received}
        if (cli := self._cli(snap)) is not None:
            out["cliOrdId"] = cli
        if not snap.is_open:
            out["status"] = "filled" if snap.status is e.OrdStatus.FILLED else "notFound"
            return out
        events = self.engine.cancel(self.owner, f"{_SYNTH}x{next(self._synth)}",
                                    order_id=snap.order_id)
        canceled = next((ev for ev in events if isinstance(ev, e.Canceled)), None)
        if canceled is None:  # filled between the lookup and the cancel
            after = self.engine.order_status(self.owner, order_id=snap.order_id)
            out["status"] = ("filled" if after is not None
                             and after.status is e.OrdStatus.FILLED else "notFound")
            return out
        out["status"] = "cancelled"
        out["orderEvents"] = [{"uid": out["order_id"], "order": self._order_obj(snap),
                               "type": "CANCEL"}]
        return out

    def _cancel_all(self, p: Mapping[str, list[str]]) -> dict[str, object]:
        symbol = _one(p, "symbol")
        sym = symbol.upper() if symbol else None
        events = self.engine.mass_cancel(self.owner, sym)
        done = [ev.order for ev in events if isinstance(ev, e.Canceled)]
        return {
            "receivedTime": self._received(), "cancelOnly": symbol or "all",
            "status": "cancelled" if done else "noOrdersToCancel",
            "cancelledOrders": [{"order_id": self._public_id(o.order_id),
                                 **({"cliOrdId": c} if (c := self._cli(o)) else {})}
                                for o in done],
            "orderEvents": [{"uid": self._public_id(o.order_id), "order": self._order_obj(o),
                             "type": "CANCEL"} for o in done],
        }

    def _open_item(self, snap: e.OrderSnapshot) -> dict[str, object]:
        item: dict[str, object] = {
            "order_id": self._public_id(snap.order_id),
            "symbol": snap.symbol,
            "side": "buy" if snap.side is e.Side.BUY else "sell",
            "orderType": "lmt" if snap.ord_type is e.OrdType.LIMIT else "mkt",
            "limitPrice": snap.price if snap.price is not None else Decimal(0),
            "unfilledSize": snap.leaves_qty,
            "receivedTime": iso_utc_ms(snap.created_time / 1e9),
            "status": "partiallyFilled" if snap.cum_qty else "untouched",
            "filledSize": snap.cum_qty,
            "reduceOnly": False,
            "lastUpdateTime": iso_utc_ms(snap.transact_time / 1e9),
        }
        if (cli := self._cli(snap)) is not None:
            item["cliOrdId"] = cli
        return item

    def _status(self, p: Mapping[str, list[str]]) -> list[dict[str, object]]:
        """``orders/status`` for ``orderIds``/``cliOrdIds`` (repeated keys), or every order
        placed here while no id is given; unknown ids are left out, as Kraken does."""
        snaps: list[e.OrderSnapshot] = []
        ids, clis = p.get("orderIds", []), p.get("cliOrdIds", [])
        if not ids and not clis:
            with self._lock:
                placed = list(self._placed)
            snaps = [s for oid in placed
                     if (s := self.engine.order_status(self.owner, order_id=oid)) is not None]
        for oid in ids:
            engine_id = self._engine_id(oid)
            if engine_id is not None and (
                    s := self.engine.order_status(self.owner, order_id=engine_id)) is not None:
                snaps.append(s)
        for cli in clis:
            if (s := self.engine.order_status(self.owner, cl_ord_id=cli)) is not None:
                snaps.append(s)
        return [{"order": {**self._order_obj(s), "type": "ORDER"},
                 "status": _STATUS_NAMES[s.status], "updateReason": None, "error": None}
                for s in snaps]


_STATUS_NAMES = {e.OrdStatus.NEW: "ENTERED_BOOK", e.OrdStatus.PARTIALLY_FILLED: "ENTERED_BOOK",
                 e.OrdStatus.FILLED: "FULLY_EXECUTED", e.OrdStatus.CANCELED: "CANCELLED",
                 e.OrdStatus.REJECTED: "REJECTED"}
_REFUSALS = {e.TEXT_INVALID_PRICE: "invalidPrice", e.TEXT_INVALID_VOLUME: "invalidSize",
             e.TEXT_ORDER_MINIMUM: "invalidSize", e.TEXT_DUPLICATE: "clientOrderIdAlreadyExist",
             e.TEXT_UNKNOWN_PAIR: "marketInactive"}


def _refusal(text: str) -> str:
    """The ``sendStatus`` for an engine reject. Matched on the Kraken error the text starts
    with, since the engine adds the detail after it (``EOrder:Invalid price:PF_XBTUSD price
    must be a multiple of 0.5``): an exact match missed those and answered invalidArgument."""
    for prefix, status in _REFUSALS.items():
        if text == prefix or text.startswith(prefix + ":"):
            return status
    return "invalidArgument"
