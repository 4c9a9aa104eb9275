"""Kraken Futures REST client: perp tickers, funding history, instruments and the signed
``/accounts`` call, for the signal module's carry and open-interest inputs.

Why our own small client and not ccxt / python-kraken-sdk: neither is a dependency, both parse
numbers as ``float`` (funding rates of 1e-9 and prices of 0.11 lose exactly the digits the carry
figures are about), and neither makes the absolute-vs-relative funding distinction explicit.
Here every number is parsed with ``Decimal`` straight from the JSON text
(``json.loads(parse_float=Decimal)``) and the funding conversion lives in one documented place.

Funding (``shared/kraken-api.md`` §5, ``shared/signals.md`` §1):

* the ticker's ``fundingRate``/``fundingRatePrediction`` are **absolute** rates;
* linear contracts (``PF_``/``FF_``, absolute in USD per 1 unit of base):
  ``relative = absolute / markPrice``;
* inverse contracts (``PI_``/``FI_``, 1 USD contracts, absolute in base currency per contract):
  ``relative = absolute × markPrice`` (inferred by Kraken's own 2022 example: relative/absolute ≈
  the BTC price that day; Kraken does not state it in words);
* ``historical-funding-rates`` gives both; its ``relativeFundingRate`` is used as given.

Retries (tenacity, exponential backoff with jitter) apply only because every call here is an
idempotent GET, and only to failures that another attempt can fix: connection errors and
timeouts, HTTP 5xx, and "busy"-type answers (``Unavailable``, ``Server Error``,
``EService:Busy``/``EService:Unavailable``). Authentication errors, bad arguments and
``apiLimitExceeded`` are raised at once: repeating them cannot succeed, and hammering a rate limit
makes it worse (the poller backs off instead). Private calls are re-signed with a fresh nonce on
every attempt.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeAlias

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from gateway.kraken.auth import NonceSource, decode_secret, futures_authent
from gateway.transports.http import NoAnswer, exchange, opener_for

__all__ = [
    "RETRYABLE_ERRORS",
    "ContractType",
    "FundingRate",
    "FuturesInstrument",
    "KrakenFuturesError",
    "KrakenFuturesRest",
    "PerpTicker",
    "contract_type",
    "parse_funding_rates",
    "parse_instrument",
    "parse_ticker",
    "parse_timestamp",
    "relative_from_absolute",
]

log = logging.getLogger("fixgw.transports.kraken_futures_rest")

ContractType: TypeAlias = Literal["linear", "inverse"]

#: The path prefix of every endpoint; it is *not* part of what ``Authent`` signs (§2).
DERIVATIVES_PREFIX = "/derivatives"
API_PATH = "/api/v3"

#: Kraken error strings that mean "try again later", not "your request is wrong".
RETRYABLE_ERRORS = frozenset({
    "Unavailable", "Server Error", "EService:Busy", "EService:Unavailable",
})


class KrakenFuturesError(Exception):
    """A Kraken Futures call failed.

    ``error`` is Kraken's error string (``authenticationError``, ``invalidArgument`` ...) or a
    description of a transport failure; ``status`` the HTTP status (``None`` when no answer was
    received); ``path`` the endpoint; ``retryable`` whether another attempt could succeed.
    """

    def __init__(
        self, error: str, status: int | None, path: str, *, retryable: bool = False
    ) -> None:
        self.error = error
        self.status = status
        self.path = path
        self.retryable = retryable
        where = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"Kraken Futures {path}: {error} ({where})")


def contract_type(symbol: str) -> ContractType:
    """``PF_``/``FF_`` linear (USD-margined, 1 unit of base); ``PI_``/``FI_`` inverse."""
    return "inverse" if symbol.upper().startswith(("PI_", "FI_")) else "linear"


def relative_from_absolute(absolute: Decimal, mark: Decimal, contract: ContractType) -> Decimal:
    """kraken-api.md §5: linear ``absolute / mark``; inverse ``absolute × mark``."""
    if mark <= 0:
        raise ValueError(f"mark price must be > 0 to convert funding, got {mark}")
    return absolute / mark if contract == "linear" else absolute * mark


def parse_timestamp(text: str) -> datetime:
    """Kraken's ``2022-06-28T00:00:00.000Z`` (with or without fraction/``Z``) as aware UTC."""
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # Kraken's times are UTC even when unmarked
    return dt.astimezone(UTC)


def _dec(obj: Mapping[str, Any], key: str) -> Decimal:
    value = obj.get(key)
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{key}: missing or not a number ({value!r})")
    if isinstance(value, Decimal):
        out = value
    elif isinstance(value, int):
        out = Decimal(value)
    elif isinstance(value, str):  # Kraken sends some balances as decimal strings
        try:
            out = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{key}: {value!r} is not a number") from None
    else:
        raise ValueError(f"{key}: not a number ({value!r})")
    if not out.is_finite():
        raise ValueError(f"{key}: not finite ({value!r})")
    return out


def _opt_dec(obj: Mapping[str, Any], key: str) -> Decimal | None:
    return None if obj.get(key) is None else _dec(obj, key)


@dataclass(frozen=True, slots=True)
class PerpTicker:
    """One perpetual's ticker with Kraken's absolute funding and the derived relative rate.

    ``funding_rate_rel`` = ``funding_rate_abs / mark_price`` for linear ``PF_`` contracts and
    ``funding_rate_abs × mark_price`` for inverse ``PI_`` ones (see module docstring);
    ``open_interest`` is in contracts (base units for ``PF_``); ``vol24h`` in contracts.
    """

    symbol: str
    mark_price: Decimal
    index_price: Decimal
    funding_rate_abs: Decimal
    funding_rate_rel: Decimal
    funding_rate_prediction_abs: Decimal | None
    open_interest: Decimal
    vol24h: Decimal
    last_time: datetime | None
    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None
    suspended: bool = False
    pair: str = ""

    @property
    def contract(self) -> ContractType:
        return contract_type(self.symbol)

    @property
    def funding_rate_prediction_rel(self) -> Decimal | None:
        """The venue's next-interval estimate, relative (same conversion as the current rate)."""
        if self.funding_rate_prediction_abs is None:
            return None
        return relative_from_absolute(self.funding_rate_prediction_abs, self.mark_price,
                                      self.contract)

    @property
    def open_interest_usd(self) -> Decimal:
        """Notional at mark: contracts × mark (linear); inverse contracts are 1 USD each."""
        if self.contract == "inverse":
            return self.open_interest
        return self.open_interest * self.mark_price


@dataclass(frozen=True, slots=True)
class FundingRate:
    """One settlement of ``historical-funding-rates``; ``timestamp`` starts its period (UTC)."""

    timestamp: datetime
    funding_rate_abs: Decimal
    funding_rate_rel: Decimal

    @property
    def epoch_s(self) -> float:
        """Seconds since the epoch, the form ``gateway.signals`` takes for funding records."""
        return self.timestamp.timestamp()


@dataclass(frozen=True, slots=True)
class FuturesInstrument:
    """The ``/instruments`` fields the gateway uses (tick, contract size, precision, caps)."""

    symbol: str
    type: str
    tradeable: bool
    tick_size: Decimal | None
    contract_size: Decimal | None
    contract_value_trade_precision: int | None
    max_relative_funding_rate: Decimal | None
    pair: str = ""
    base: str = ""
    quote: str = ""


def parse_ticker(obj: Mapping[str, Any]) -> PerpTicker:
    """A perpetual ``MarketTicker`` object; ``ValueError`` if it is not one or is malformed."""
    symbol = obj.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise ValueError("ticker without a symbol")
    if obj.get("tag") != "perpetual":
        raise ValueError(f"{symbol}: not a perpetual (tag {obj.get('tag')!r})")
    mark = _dec(obj, "markPrice")
    funding_abs = _dec(obj, "fundingRate")
    last_time = obj.get("lastTime")
    symbol = symbol.upper()  # Kraken's market symbols are upper case (one example is not)
    return PerpTicker(
        symbol=symbol,
        mark_price=mark,
        index_price=_dec(obj, "indexPrice"),
        funding_rate_abs=funding_abs,
        funding_rate_rel=relative_from_absolute(funding_abs, mark, contract_type(symbol)),
        funding_rate_prediction_abs=_opt_dec(obj, "fundingRatePrediction"),
        open_interest=_dec(obj, "openInterest"),
        vol24h=_dec(obj, "vol24h"),
        last_time=parse_timestamp(last_time) if isinstance(last_time, str) else None,
        bid=_opt_dec(obj, "bid"),
        ask=_opt_dec(obj, "ask"),
        last=_opt_dec(obj, "last"),
        suspended=bool(obj.get("suspended", False)),
        pair=str(obj.get("pair", "")),
    )


def parse_funding_rates(payload: Mapping[str, Any]) -> list[FundingRate]:
    """``{"rates": [...]}`` to records sorted ascending by timestamp (Kraken already sorts)."""
    rates = payload.get("rates")
    if not isinstance(rates, list):
        raise ValueError("response has no 'rates' list")
    out: list[FundingRate] = []
    for i, r in enumerate(rates):
        if not isinstance(r, Mapping) or not isinstance(r.get("timestamp"), str):
            raise ValueError(f"rates[{i}]: expected an object with a timestamp")
        try:
            out.append(FundingRate(parse_timestamp(r["timestamp"]), _dec(r, "fundingRate"),
                                   _dec(r, "relativeFundingRate")))
        except ValueError as exc:
            raise ValueError(f"rates[{i}]: {exc}") from None
    out.sort(key=lambda f: f.timestamp)
    return out


def parse_instrument(obj: Mapping[str, Any]) -> FuturesInstrument:
    """One ``/instruments`` entry (only ``symbol`` and ``tradeable`` are required by Kraken)."""
    symbol = obj.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise ValueError("instrument without a symbol")
    precision = obj.get("contractValueTradePrecision")
    return FuturesInstrument(
        symbol=symbol,
        type=str(obj.get("type", "")),
        tradeable=bool(obj.get("tradeable", False)),
        tick_size=_opt_dec(obj, "tickSize"),
        contract_size=_opt_dec(obj, "contractSize"),
        contract_value_trade_precision=(int(precision) if precision is not None else None),
        max_relative_funding_rate=_opt_dec(obj, "maxRelativeFundingRate"),
        pair=str(obj.get("pair", "")),
        base=str(obj.get("base", "")),
        quote=str(obj.get("quote", "")),
    )


def _error_text(payload: Mapping[str, Any]) -> str | None:
    """Kraken's error: a string, an ``{code, message}`` object, or an ``errors`` list."""
    err = payload.get("error")
    if isinstance(err, str) and err:
        return err
    if isinstance(err, Mapping):
        return str(err.get("message") or err.get("code") or err)
    errs = payload.get("errors")
    if isinstance(errs, list) and errs:
        first = errs[0]
        return str(first.get("message", first) if isinstance(first, Mapping) else first)
    return None


class KrakenFuturesRest:
    """Blocking Kraken Futures REST client (``urllib``, one connection per call).

    ``base_url`` is the scheme and host (``https://futures.kraken.com``, ``http://127.0.0.1:PORT``
    for the simulator); a trailing ``/derivatives`` or ``/derivatives/api/v3`` is tolerated.
    ``api_key``/``api_secret`` are only needed for private calls; ``nonce`` defaults to a
    millisecond :class:`NonceSource` (the unit Kraken's docs recommend for Futures).
    ``max_attempts`` counts the first try; backoff is exponential with jitter, starting at
    ``backoff_initial_s`` and capped at ``backoff_max_s``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        api_secret: str | None = None,
        timeout_s: float = 5,
        nonce: NonceSource | None = None,
        *,
        max_attempts: int = 4,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 2.0,
        user_agent: str = "fixgw/0.1",
    ) -> None:
        if (api_key is None) != (api_secret is None):
            raise ValueError("give both api_key and api_secret, or neither")
        if api_secret is not None:
            decode_secret(api_secret)  # fail at construction, never as a 401 at the first call
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        root = base_url.rstrip("/")
        for suffix in (DERIVATIVES_PREFIX + API_PATH, DERIVATIVES_PREFIX):
            root = root.removesuffix(suffix)
        self.base_url = root
        self._api_key = api_key
        self._api_secret = api_secret
        self.timeout_s = timeout_s
        self._nonce = nonce if nonce is not None else NonceSource(units_per_second=1000)
        self._max_attempts = max_attempts
        # initial × 2^(n-1) capped at backoff_max_s, plus up to `initial` of jitter so that
        # several clients knocked over by the same outage do not retry in lockstep. Composed
        # from primitives that exist in every tenacity >= 8.2 (wait_exponential_jitter renamed
        # its argument in 9.x).
        self._wait = (wait_exponential(multiplier=backoff_initial_s, max=backoff_max_s)
                      + wait_random(0, backoff_initial_s))
        self._user_agent = user_agent
        self._opener = opener_for(self.base_url)

    # -- public endpoints --------------------------------------------------------------------

    def tickers(self) -> dict[str, PerpTicker]:
        """Every perpetual's ticker by symbol; index and dated-futures entries are skipped, and
        a malformed perp entry is logged and skipped rather than failing the whole list."""
        payload = self._get("/tickers")
        items = payload.get("tickers")
        if not isinstance(items, list):
            raise KrakenFuturesError("malformed response: no 'tickers' list", 200,
                                     API_PATH + "/tickers")
        out: dict[str, PerpTicker] = {}
        for item in items:
            if not isinstance(item, Mapping) or item.get("tag") != "perpetual":
                continue
            try:
                t = parse_ticker(item)
            except ValueError as exc:
                log.warning("skipping malformed Kraken Futures ticker: %s", exc)
                continue
            out[t.symbol] = t
        return out

    def ticker(self, symbol: str) -> PerpTicker:
        """One perpetual's ticker (``KrakenFuturesError`` if unknown or not a perpetual)."""
        path = f"/tickers/{urllib.parse.quote(symbol, safe='')}"
        payload = self._get(path)
        item = payload.get("ticker")
        if not isinstance(item, Mapping):
            raise KrakenFuturesError("malformed response: no 'ticker' object", 200,
                                     API_PATH + path)
        try:
            return parse_ticker(item)
        except ValueError as exc:
            raise KrakenFuturesError(f"malformed ticker: {exc}", 200, API_PATH + path) from None

    def historical_funding(self, symbol: str) -> list[FundingRate]:
        """Settled funding of a perpetual, ascending; HTTP 400 for a non-perpetual symbol."""
        payload = self._get("/historical-funding-rates", {"symbol": symbol})
        try:
            return parse_funding_rates(payload)
        except ValueError as exc:
            raise KrakenFuturesError(f"malformed funding history: {exc}", 200,
                                     API_PATH + "/historical-funding-rates") from None

    def instruments(self) -> dict[str, FuturesInstrument]:
        """Every listed contract by symbol (perps are ``type == "flexible_futures"``)."""
        payload = self._get("/instruments")
        items = payload.get("instruments")
        if not isinstance(items, list):
            raise KrakenFuturesError("malformed response: no 'instruments' list", 200,
                                     API_PATH + "/instruments")
        out: dict[str, FuturesInstrument] = {}
        for item in items:
            if isinstance(item, Mapping):
                try:
                    inst = parse_instrument(item)
                except ValueError as exc:
                    log.warning("skipping malformed Kraken Futures instrument: %s", exc)
                    continue
                out[inst.symbol] = inst
        return out

    # -- private endpoints -------------------------------------------------------------------

    def accounts(self) -> dict[str, Any]:
        """``/accounts`` (signed): the ``accounts`` object, numbers as ``Decimal``."""
        payload = self._get("/accounts", private=True)
        accounts = payload.get("accounts")
        if not isinstance(accounts, dict):
            raise KrakenFuturesError("malformed response: no 'accounts' object", 200,
                                     API_PATH + "/accounts")
        return accounts

    def signed_headers(
        self, endpoint_path: str, post_data: str = "", nonce: str | None = None
    ) -> dict[str, str]:
        """``APIKey``/``Nonce``/``Authent`` for one request (kraken-api.md §2).

        ``endpoint_path`` may include ``/derivatives``; it is removed before signing because
        Kraken signs ``/api/v3/...``. ``post_data`` is the url-encoded query string plus body
        exactly as sent. ``nonce=None`` draws the next one from the client's nonce source. This is
        the one place the client signs, so the test vectors exercise what goes on the wire.
        """
        if self._api_key is None or self._api_secret is None:
            raise KrakenFuturesError("no API key configured for a private endpoint", None,
                                     endpoint_path)
        signing_path = endpoint_path.removeprefix(DERIVATIVES_PREFIX)
        if not signing_path.startswith("/api/"):
            raise ValueError(f"endpoint path {endpoint_path!r} is not a Futures API path")
        nonce_str = nonce if nonce is not None else self._nonce.next_str()
        return {
            "APIKey": self._api_key,
            "Nonce": nonce_str,
            "Authent": futures_authent(self._api_secret, signing_path, post_data, nonce_str),
        }

    # -- transport ---------------------------------------------------------------------------

    def _get(
        self, path: str, params: Mapping[str, str] | None = None, *, private: bool = False
    ) -> dict[str, Any]:
        retrying = Retrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=self._wait,
            retry=retry_if_exception(
                lambda e: isinstance(e, KrakenFuturesError) and e.retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        result: dict[str, Any] = retrying(self._get_once, path, params, private)
        return result

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.info("retrying Kraken Futures call (attempt %d): %s", state.attempt_number, exc)

    def _get_once(
        self, path: str, params: Mapping[str, str] | None, private: bool
    ) -> dict[str, Any]:
        endpoint = API_PATH + path
        query = urllib.parse.urlencode(params or {})
        url = f"{self.base_url}{DERIVATIVES_PREFIX}{endpoint}" + (f"?{query}" if query else "")
        headers = {"Accept": "application/json", "User-Agent": self._user_agent}
        if private:
            # Signed per attempt: a retry must carry a fresh nonce.
            headers.update(self.signed_headers(DERIVATIVES_PREFIX + endpoint, query))
        request = urllib.request.Request(url, headers=headers, method="GET")
        try:
            status, raw = exchange(self._opener, request, self.timeout_s)
        except NoAnswer as exc:
            raise KrakenFuturesError(f"connection failed: {exc.reason}", None, endpoint,
                                     retryable=True) from exc
        return self._decode(endpoint, status, raw)

    @staticmethod
    def _decode(endpoint: str, status: int, raw: bytes) -> dict[str, Any]:
        server_side = status >= 500
        try:
            payload = json.loads(raw.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, json.JSONDecodeError):
            what = f"HTTP {status} with a non-JSON body" if status >= 400 else \
                "malformed response: not JSON"
            raise KrakenFuturesError(what, status, endpoint, retryable=server_side) from None
        if not isinstance(payload, dict):
            raise KrakenFuturesError("malformed response: not a JSON object", status, endpoint,
                                     retryable=server_side)
        error = _error_text(payload)
        if payload.get("result") == "error" or status >= 400:
            text = error or f"HTTP {status}"
            retryable = server_side or text in RETRYABLE_ERRORS
            raise KrakenFuturesError(text, status, endpoint, retryable=retryable)
        return payload
