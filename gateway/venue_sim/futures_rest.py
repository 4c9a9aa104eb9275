"""The simulator's Kraken Futures REST face: public tickers, funding history and instruments, and
one private endpoint that checks ``Authent``.

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
* ``GET /derivatives/api/v3/instruments``: the scenario's perps (``flexible_futures``).
* ``GET /derivatives/api/v3/accounts``: private. ``APIKey`` must equal the server's test key and
  ``Authent`` must equal ``futures_authent(secret, "/api/v3/accounts", query + body, Nonce)``
  (path **without** ``/derivatives``, the url-encoded query exactly as sent; kraken-api.md §2).
  Anything else is HTTP 401 ``{"result":"error","error":"authenticationError"}``; a repeated
  ``Nonce`` is ``nonceDuplicate``.

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
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from gateway.kraken.auth import decode_secret, futures_authent
from gateway.venue_sim.http_face import HttpFace
from gateway.venue_sim.instruments import INSTRUMENTS, Instrument
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

_NONCE_MEMORY = 10_000
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

    ``api_key``/``api_secret`` are the test credentials ``/accounts`` accepts; without them every
    private call is refused. ``clock`` (epoch seconds) drives ``serverTime`` and the funding
    history's boundaries, so tests can pin time.
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
    ) -> None:
        if (api_key is None) != (api_secret is None):
            raise ValueError("give both api_key and api_secret, or neither")
        if api_secret is not None:
            decode_secret(api_secret)  # a malformed test secret fails here, not as a 401 later
        self._api_key = api_key
        self._api_secret = api_secret
        self._clock = clock
        self._lock = threading.Lock()
        self._scenario = resolve_scenario(scenario)
        self._faults: deque[_Fault] = deque()
        self._counts: dict[str, int] = {}
        self._nonces: deque[str] = deque(maxlen=_NONCE_MEMORY)
        self._nonce_set: set[str] = set()
        self._init_http(host, port)

    face_name = "futures-rest"

    # -- lifecycle ---------------------------------------------------------------------------

    def _on_start(self) -> None:
        log.info("Kraken Futures REST simulator on %s (scenario %s)", self.base_url,
                 self._scenario.name)

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
        if not path.startswith(API_PREFIX + "/"):
            return self._error(404, "notFound")
        route = path[len(API_PREFIX):]
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
        if route == "/accounts":
            err = self._check_auth(route, parts.query, headers, body)
            if err is not None:
                return self._error(401, err)
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

    def _check_auth(self, route: str, query: str, headers: Mapping[str, str],
                    body: str) -> str | None:
        """Kraken's ``Authent`` check (kraken-api.md §2); the error string, or ``None`` if OK."""
        key, authent = headers.get("APIKey"), headers.get("Authent")
        nonce = headers.get("Nonce")
        if self._api_key is None or self._api_secret is None or not key or not authent:
            return "authenticationError"
        if not hmac.compare_digest(key.encode(), self._api_key.encode()):
            return "authenticationError"
        # Post-2024 rule: sign the url-encoded query exactly as sent, then the body.
        expected = futures_authent(self._api_secret, "/api/v3" + route, query + body, nonce)
        if not hmac.compare_digest(expected.encode(), authent.encode()):
            return "authenticationError"
        if nonce is not None:
            with self._lock:
                if nonce in self._nonce_set:
                    return "nonceDuplicate"
                if len(self._nonces) == self._nonces.maxlen:
                    self._nonce_set.discard(self._nonces[0])
                self._nonces.append(nonce)
                self._nonce_set.add(nonce)
        return None

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
