"""Kraken spot REST client: the gateway's order-entry fallback when FIX is down.

The one property that matters: failing over to REST (and back) must never lose or duplicate an
order. Hence:

* **No blind resend.** ``AddOrder`` is not idempotent on Kraken. After an ambiguous failure (a
  timeout, a dropped connection, a 5xx, ``EService:Busy``...) the order may or may not be at the
  venue. The client retries ``add_order`` only when a ``cl_ord_id`` was given, and only after
  looking it up (``OpenOrders`` then ``ClosedOrders`` filtered on that ``cl_ord_id``): if found,
  that order is the answer (``recovered=True``); only if the venue does not know it is the order
  sent again. An answer that may come for a placed order (``EGeneral:Internal error``,
  ``EService:Busy``: :func:`may_have_acted`) on the last attempt is raised as ambiguous, so the
  caller looks the order up rather than reject a live one. Without a ``cl_ord_id`` there is
  no safe lookup, so the error is raised and the caller reconciles.
* **Retries only where idempotent.** Queries (``OpenOrders``, ``QueryOrders``...) retry with
  tenacity (exponential backoff + jitter) on retryable errors; ``CancelOrder`` retries too
  (cancelling twice is harmless: the second answers ``EOrder:Unknown order``, which after a retry
  is reported as ``0`` cancelled rather than an error).
* **Every Kraken error string is classified** (:func:`classify`): retry, or an ExecutionReport
  reject with ``OrdRejReason`` and clear text for the FIX client.
* **Rate limits modelled client-side** (kraken-api.md §7) with the same leaky counter the
  simulator uses: the REST call counter makes the client *wait* before a call the venue would
  refuse (``EAPI:Rate limit exceeded`` would otherwise cost a retry and more counter); the per-pair
  matching-engine counter makes ``add_order`` *refuse locally* (:class:`LocalRateLimitError`)
  instead of sending an order the venue would reject. The engine counter is one per account
  and pair whatever the API, so the model (:class:`~gateway.kraken.pair_rate.PairRateModel`,
  ``pair_rate``) is shared with the WS order paths, which charge it too; FIX traffic and other
  processes on the key are not seen, so it is a floor, not a guarantee; venue rejects are still
  classified. Cancels are charged but never refused locally: refusing a risk-reducing request
  on an estimate is worse than letting the venue decide.
* Numbers: ``json.loads(parse_float=Decimal)`` and ``Decimal(str)``; never floats for money.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
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

from gateway.kraken.auth import NonceSource, decode_secret, spot_api_sign
from gateway.kraken.pair_rate import PairRateModel
from gateway.kraken.ratelimits import ENGINE_TIERS, REST_TIERS, DecayingCounter, RateTier
from gateway.kraken.symbols import parse_spot_pair
from gateway.transports.http import NoAnswer, exchange, opener_for

__all__ = [
    "ENGINE_TIERS",
    "KRAKEN_ERRORS",
    "REST_TIERS",
    "AddOrderResult",
    "ErrorDecision",
    "KrakenRestError",
    "KrakenSpotRest",
    "LocalRateLimitError",
    "RateTier",
    "SpotOrder",
    "classify",
    "parse_order",
]

log = logging.getLogger("fixgw.transports.kraken_spot_rest")

Side: TypeAlias = Literal["buy", "sell"]
OrdTypeName: TypeAlias = Literal["market", "limit"]
Tif: TypeAlias = Literal["GTC", "IOC", "FOK"]


# FIX 4.4 OrdRejReason (103) values used below.
REJ_UNKNOWN_SYMBOL = "1"
REJ_EXCHANGE_CLOSED = "2"
REJ_UNKNOWN_ORDER = "5"
REJ_DUPLICATE = "6"
REJ_INCORRECT_QTY = "13"
REJ_OTHER = "99"


@dataclass(frozen=True, slots=True)
class ErrorDecision:
    """What the gateway does with one Kraken error string.

    ``retry`` True: transient, another attempt may succeed (subject to idempotency rules).
    Otherwise ``ord_rej_reason`` (FIX 103) and ``text`` (FIX 58) go into the reject sent to the
    FIX client. ``category`` groups errors for metrics and ``KrakenRestError``.
    """

    retry: bool
    ord_rej_reason: str
    text: str
    category: str = "order"
    fresh_nonce: bool = False


def _r(text: str, category: str = "service", *, fresh_nonce: bool = False) -> ErrorDecision:
    return ErrorDecision(True, REJ_OTHER, text, category, fresh_nonce)


def _x(reason: str, text: str, category: str = "order") -> ErrorDecision:
    return ErrorDecision(False, reason, text, category)


#: Every error string of kraken-api.md §3 (plus the simulator's engine texts), by prefix.
#: Longest prefix wins, so ``EGeneral:Invalid arguments:Index unavailable`` beats its parent.
KRAKEN_ERRORS: Mapping[str, ErrorDecision] = {
    "EGeneral:Invalid arguments:Index unavailable":
        _x(REJ_OTHER, "index price unavailable at the venue for this trigger", "arguments"),
    "EGeneral:Invalid arguments": _x(REJ_OTHER, "venue rejected the order arguments", "arguments"),
    "EGeneral:Temporary lockout":
        _x(REJ_OTHER, "API key temporarily locked out at the venue (too many bad requests)",
           "auth"),
    "EGeneral:Permission denied": _x(REJ_OTHER, "API key lacks permission for this request",
                                     "auth"),
    "EGeneral:Internal error": _r("venue internal error"),
    "EGeneral:Unknown method": _x(REJ_OTHER, "venue does not know this API method", "arguments"),
    "EService:Unavailable": _r("venue service unavailable"),
    "EService:Market in cancel_only mode":
        _x(REJ_EXCHANGE_CLOSED, "market in cancel-only mode at the venue", "market_state"),
    "EService:Market in post_only mode":
        _x(REJ_OTHER, "market in post-only mode at the venue: only post-only limit orders",
           "market_state"),
    "EService:Deadline elapsed": _r("venue deadline elapsed before the request was processed"),
    "EService:Busy": _r("venue busy"),
    "EService: Throttled": _r("venue throttled concurrent requests", "rate_limit"),
    "EService:Throttled": _r("venue throttled concurrent requests", "rate_limit"),
    "EAPI:Invalid key": _x(REJ_OTHER, "venue rejected the API key", "auth"),
    "EAPI:Invalid signature": _x(REJ_OTHER, "venue rejected the request signature", "auth"),
    "EAPI:Invalid nonce": _r("venue rejected the nonce", "auth", fresh_nonce=True),
    "EAPI:Rate limit exceeded": _r("venue REST rate limit exceeded", "rate_limit"),
    "EOrder:Rate limit exceeded": _x(REJ_OTHER, "venue per-pair rate limit", "rate_limit"),
    "EOrder:Insufficient funds": _x(REJ_OTHER, "insufficient funds at the venue"),
    "EOrder:Order minimum not met":
        _x(REJ_INCORRECT_QTY, "order size below the venue minimum for this pair"),
    "EOrder:Cannot open position": _x(REJ_OTHER, "venue cannot open this margin position"),
    "EOrder:Cannot open opposing position":
        _x(REJ_OTHER, "venue cannot open a position opposing an existing one"),
    "EOrder:Margin allowance exceeded": _x(REJ_OTHER, "margin allowance exceeded at the venue"),
    "EOrder:Insufficient margin": _x(REJ_OTHER, "insufficient margin at the venue"),
    "EOrder:Orders limit exceeded": _x(REJ_OTHER, "too many open orders at the venue"),
    "EOrder:Positions limit exceeded": _x(REJ_OTHER, "too many open positions at the venue"),
    "EOrder:Unknown order": _x(REJ_UNKNOWN_ORDER, "unknown order at the venue"),
    "EOrder:Invalid price": _x(REJ_OTHER, "invalid price (off tick or not positive)"),
    "EOrder:Duplicate": _x(REJ_DUPLICATE, "duplicate cl_ord_id: an open order already uses it"),
    "EQuery:Unknown asset pair": _x(REJ_UNKNOWN_SYMBOL, "unknown pair at the venue"),
}
_BY_LENGTH = sorted(KRAKEN_ERRORS, key=len, reverse=True)


def may_have_acted(d: ErrorDecision) -> bool:
    """A retryable answer that may come for a request the venue carried out (an internal
    error, busy, unavailable: the "service" ones), unlike a refusal at the API's door (rate
    limits, a nonce): an order so answered may be live, so it is looked up, never taken for
    a reject."""
    return d.retry and d.category == "service"


def classify(error: str) -> ErrorDecision:
    """Map one Kraken error string to a retry or a reject decision (prefix match).

    The venue's own detail after the matched prefix (``EGeneral:Invalid arguments:volume``) is
    appended to the text so the FIX client sees *which* argument. Unknown strings are not
    retried (retrying an unknown error on an order could duplicate it) and keep Kraken's text.
    """
    for prefix in _BY_LENGTH:
        if error.startswith(prefix):
            d = KRAKEN_ERRORS[prefix]
            detail = error[len(prefix):].lstrip(": ").strip()
            if detail and not d.retry:
                return ErrorDecision(d.retry, d.ord_rej_reason, f"{d.text}: {detail}", d.category,
                                     d.fresh_nonce)
            return d
    return ErrorDecision(False, REJ_OTHER, f"venue error: {error}", "unknown")


class KrakenRestError(Exception):
    """A failed spot REST call. ``errors`` are Kraken's strings (or ``transport: ...``);
    ``retryable`` says another attempt may succeed; ``ambiguous`` says the request may have been
    executed although no answer arrived (timeouts, dropped connections, 5xx)."""

    def __init__(self, errors: list[str], retryable: bool, category: str, *,
                 ambiguous: bool = False, fresh_nonce: bool = False) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors
        self.retryable = retryable
        self.category = category
        self.ambiguous = ambiguous
        self.fresh_nonce = fresh_nonce
        #: ``EAPI:Invalid nonce`` while this client had already issued a larger nonce.
        self.nonce_raced = False

    @property
    def decision(self) -> ErrorDecision:
        """The classification of the first error (what a reject to the FIX client carries)."""
        if self.category == "transport":
            return ErrorDecision(True, REJ_OTHER, str(self), "transport")
        return classify(self.errors[0]) if self.errors else classify("")


class LocalRateLimitError(KrakenRestError):
    """Refused by the client's own model before the venue would answer
    ``EOrder:Rate limit exceeded``; nothing was sent."""

    def __init__(self, pair: str, wait_s: float) -> None:
        super().__init__([f"local: per-pair rate limit for {pair} (retry in {wait_s:.1f}s)"],
                         False, "rate_limit")
        self.pair = pair
        self.wait_s = wait_s

    @property
    def decision(self) -> ErrorDecision:
        return ErrorDecision(False, REJ_OTHER,
                             f"venue per-pair rate limit (held locally, retry in "
                             f"{self.wait_s:.1f}s)", "rate_limit")


@dataclass(frozen=True, slots=True)
class AddOrderResult:
    """``txid`` None only for ``validate`` calls; ``recovered`` True when the answer came from
    the lookup after an ambiguous failure instead of the AddOrder reply itself."""

    txid: str | None
    descr: str
    recovered: bool = False


@dataclass(frozen=True, slots=True)
class SpotOrder:
    """A Kraken order object, numbers as Decimal, pair in the gateway form ``BTC/USD``."""

    txid: str
    cl_ord_id: str | None
    status: str
    side: str
    ord_type: str
    pair: str
    price: Decimal | None
    volume: Decimal
    vol_exec: Decimal
    avg_price: Decimal
    opentm: Decimal
    closetm: Decimal | None
    trades: tuple[str, ...] = ()  # trade ids, only when asked for with ``trades=True``

    @property
    def is_open(self) -> bool:
        return self.status in ("pending", "open")


def _dec(value: object, name: str) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            d = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{name}: not a decimal: {value!r}") from None
        if d.is_finite():
            return d
    raise ValueError(f"{name}: not a decimal: {value!r}")


def parse_order(txid: str, obj: Mapping[str, Any]) -> SpotOrder:
    """One Kraken order object (OpenOrders/ClosedOrders/QueryOrders) to :class:`SpotOrder`."""
    descr = obj.get("descr")
    if not isinstance(descr, Mapping):
        raise ValueError(f"order {txid}: no descr")
    ord_type = str(descr.get("ordertype", ""))
    price = _dec(descr.get("price", "0"), "descr.price")
    closetm = obj.get("closetm")
    clid = obj.get("cl_ord_id")
    return SpotOrder(
        txid=txid,
        cl_ord_id=str(clid) if clid else None,
        status=str(obj.get("status", "")),
        side=str(descr.get("type", "")),
        ord_type=ord_type,
        pair=parse_spot_pair(str(descr.get("pair", ""))).pair,
        price=None if ord_type == "market" else price,
        volume=_dec(obj.get("vol"), "vol"),
        vol_exec=_dec(obj.get("vol_exec", "0"), "vol_exec"),
        avg_price=_dec(obj.get("price", "0"), "price"),
        opentm=_dec(obj.get("opentm", 0), "opentm"),
        closetm=None if closetm is None else _dec(closetm, "closetm"),
        trades=tuple(str(t) for t in obj.get("trades") or ()),
    )


def _tier(tier: str | RateTier, table: Mapping[str, RateTier]) -> RateTier:
    if isinstance(tier, RateTier):
        return tier
    try:
        return table[tier]
    except KeyError:
        raise ValueError(f"unknown tier {tier!r}; expected one of {sorted(table)}") from None


class KrakenSpotRest:
    """Blocking Kraken spot REST client (``urllib``, one connection per call, thread-safe).

    ``nonce`` is shared with nothing else that signs for this key in this process. ``tier``
    selects the §7 tables for the client-side rate model (``rest_tier``/``engine_tier`` may
    override them, e.g. to match a simulator run with custom limits). ``headroom`` is kept below
    each ceiling because the venue charges when the request arrives and decays from there; a
    little slack absorbs network latency. ``sleep`` is injectable so tests can observe waits.

    ``add_order_deadline`` sends Kraken's ``deadline`` (now + max(2 s, timeout), §3) with every
    AddOrder: a request stuck in a queue past it is refused by the venue
    (``EService:Deadline elapsed``) instead of landing late, which is what makes the lookup after
    a timeout conclusive (wait for the deadline, plus ``deadline_margin_s`` of clock skew, then
    look). Without it a request delayed in flight could land after the lookup and the resend.
    """

    #: Per-order memory (placed orders, ClOrdID -> txid, unreadable orders) kept at most.
    REMEMBERED_MAX = 100_000

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: str,
        nonce: NonceSource,
        timeout_s: float = 5,
        tier: str = "starter",
        *,
        rest_tier: RateTier | None = None,
        engine_tier: RateTier | None = None,
        headroom: float = 0.5,
        add_order_deadline: bool = True,
        deadline_margin_s: float = 0.25,
        max_attempts: int = 4,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 1.0,
        user_agent: str = "fixgw/0.1",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        decode_secret(api_secret)  # a malformed secret fails now, not as EAPI:Invalid signature
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._secret = api_secret
        self._nonce = nonce
        self.timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._wait = (wait_exponential(multiplier=backoff_initial_s, max=backoff_max_s)
                      + wait_random(0, backoff_initial_s))
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._user_agent = user_agent
        self._clock = clock
        self._sleep = sleep
        self._headroom = headroom
        self._use_deadline = add_order_deadline
        self._deadline_margin_s = deadline_margin_s
        self._lock = threading.Lock()
        self._rest = DecayingCounter(rest_tier or _tier(tier, REST_TIERS), clock)
        #: The per-pair engine counter model, shared with the WS order paths (one counter per
        #: account and pair whatever the API, §7).
        self.pair_rate = PairRateModel(engine_tier or _tier(tier, ENGINE_TIERS),
                                       headroom=headroom, clock=clock,
                                       remembered_max=self.REMEMBERED_MAX)
        self._unreadable: set[str] = set()  # txids of listed orders we could not parse
        self._opener = opener_for(self.base_url)
        #: Seconds spent waiting on the REST counter model (metrics, tests).
        self.rate_wait_s = 0.0

    @property
    def deadline_window_s(self) -> float:
        """How far ahead an AddOrder's or AmendOrder's ``deadline`` is set. Past it (plus
        `deadline_margin_s` for clock skew) the venue can no longer act on that request, so
        a lookup that does not find the order then is conclusive."""
        return min(60.0, max(2.0, self.timeout_s))

    @property
    def deadline_margin_s(self) -> float:
        return self._deadline_margin_s

    def deadline_param(self) -> str:
        """A ``deadline`` for a request sent now (RFC 3339, as Kraken's REST and WS v2 take
        it)."""
        return _rfc3339(time.time() + self.deadline_window_s)

    # -- signing -----------------------------------------------------------------------------

    def sign(self, uri_path: str, params: Iterable[tuple[str, str]],
             nonce: int | str) -> tuple[str, dict[str, str]]:
        """The exact body and auth headers of one private call (kraken-api.md §1).

        ``nonce`` goes first, then ``params`` in the given order; the signature is computed
        over those very bytes, which is the one thing Kraken checks. Used by every send.
        """
        body = urllib.parse.urlencode([("nonce", str(nonce)), *params])
        headers = {"API-Key": self._key,
                   "API-Sign": spot_api_sign(self._secret, uri_path, nonce, body)}
        return body, headers

    # -- public endpoints --------------------------------------------------------------------

    def system_status(self) -> str:
        """``online``, ``maintenance``, ``cancel_only`` or ``post_only``."""
        return str(self._call_retrying("/0/public/SystemStatus", [], private=False)["status"])

    def asset_pairs(self) -> dict[str, dict[str, Any]]:
        """AssetPairs keyed by the gateway's pair form (``BTC/USD``), values as Kraken sends
        them (decimal strings stay strings; callers take ``Decimal(...)``)."""
        result = self._call_retrying("/0/public/AssetPairs", [], private=False)
        out: dict[str, dict[str, Any]] = {}
        for key, info in result.items():
            if isinstance(info, dict):
                out[parse_spot_pair(str(info.get("altname", key))).pair] = info
        return out

    # -- private endpoints -------------------------------------------------------------------

    def get_ws_token(self) -> str:
        return str(self._call_retrying("/0/private/GetWebSocketsToken", [])["token"])

    def open_orders(self, cl_ord_id: str | None = None,
                    trades: bool = False) -> dict[str, SpotOrder]:
        params = [("cl_ord_id", cl_ord_id)] if cl_ord_id is not None else []
        if trades:
            params.append(("trades", "true"))
        result = self._call_retrying("/0/private/OpenOrders", params)
        return self._orders(result.get("open", {}), strict=cl_ord_id is not None)

    def closed_orders(self, cl_ord_id: str | None = None,
                      start: Decimal | None = None) -> dict[str, SpotOrder]:
        params: list[tuple[str, str]] = []
        if cl_ord_id is not None:
            params.append(("cl_ord_id", cl_ord_id))
        if start is not None:
            params.append(("start", format(start, "f")))
        result = self._call_retrying("/0/private/ClosedOrders", params)
        return self._orders(result.get("closed", {}), strict=cl_ord_id is not None)

    def query_orders(self, txids: Iterable[str], trades: bool = False) -> dict[str, SpotOrder]:
        ids = list(txids)
        if not ids or len(ids) > 50:
            raise ValueError("query_orders takes 1 to 50 txids")
        params = [("txid", ",".join(ids))] + ([("trades", "true")] if trades else [])
        return self._orders(self._call_retrying("/0/private/QueryOrders", params))

    def find_order(self, cl_ord_id: str, since_epoch_s: Decimal | None = None) -> SpotOrder | None:
        """The venue's order for ``cl_ord_id``, open or closed, or None if it does not know it.

        ``since_epoch_s`` ignores closed orders opened earlier (a recycled ``cl_ord_id`` of an
        old order must not be mistaken for the order just sent).
        """
        open_ = self.open_orders(cl_ord_id=cl_ord_id)
        for order in open_.values():
            return self._found(order, cl_ord_id)
        for order in self.closed_orders(cl_ord_id=cl_ord_id, start=since_epoch_s).values():
            return self._found(order, cl_ord_id)
        return None

    def _found(self, order: SpotOrder, cl_ord_id: str) -> SpotOrder:
        """An order of ours found by ClOrdID (its acknowledgement lost, over REST or WS, or
        placed before a restart): the rate model learns its txid, so its cancel or amend is
        charged by age (from now if the model had not seen it charged: an estimate that errs
        high, where not knowing it charged nothing)."""
        self.pair_rate.learn(order.txid, cl_ord_id, order.pair)
        return order

    def add_order(
        self,
        pair: str,
        side: Side,
        ord_type: OrdTypeName,
        volume: Decimal,
        price: Decimal | None,
        tif: Tif = "GTC",
        cl_ord_id: str | None = None,
        *,
        validate: bool = False,
    ) -> AddOrderResult:
        """Place one order; see the module docstring for the no-duplicate retry rule.

        Raises :class:`LocalRateLimitError` (nothing sent) when the per-pair model says the
        venue would refuse, :class:`KrakenRestError` for venue rejects (``.decision`` holds the
        FIX reject) and for failures that could not be resolved safely.
        """
        if not isinstance(volume, Decimal) or (price is not None and not isinstance(price,
                                                                                   Decimal)):
            raise TypeError("volume and price must be Decimal")
        canonical = parse_spot_pair(pair)
        params: dict[str, str] = {
            "ordertype": ord_type, "pair": canonical.rest_altname, "type": side,
            "volume": format(volume, "f"),
        }
        if price is not None:
            params["price"] = format(price, "f")
        if tif != "GTC":
            params["timeinforce"] = tif
        if cl_ord_id is not None:
            params["cl_ord_id"] = cl_ord_id
        if validate:
            params["validate"] = "true"
        if not validate:
            self._charge_add(canonical.pair, cl_ord_id)
        first_sent = Decimal(time.time_ns()) / Decimal(1_000_000_000)
        attempt = 0
        nonce_refusals = 0
        while True:
            attempt += 1
            deadline: float | None = None
            if self._use_deadline and not validate:
                deadline = time.time() + self.deadline_window_s
                params["deadline"] = _rfc3339(deadline)
            ordered = sorted(params.items())  # alphabetical, like Kraken's own examples
            try:
                result = self._call("/0/private/AddOrder", ordered)
            except KrakenRestError as exc:
                if _nonce_refused(exc):
                    # Refused at authentication: the venue did not act, so a resend cannot
                    # duplicate the order and needs no lookup; once, as for every call.
                    nonce_refusals += 1
                    if nonce_refusals > 1:
                        raise
                    attempt -= 1
                    continue
                if not exc.retryable or cl_ord_id is None:
                    raise
                if attempt >= self._max_attempts:
                    if not exc.ambiguous and may_have_acted(exc.decision):
                        # The order may be live: the caller looks it up (off the OMS
                        # thread), rather than reject it on this answer.
                        raise KrakenRestError(exc.errors, False, exc.category,
                                              ambiguous=True) from exc
                    raise
                log.warning("AddOrder %s failed (%s); looking it up before any resend",
                            cl_ord_id, exc)
                self._sleep(self._backoff(attempt))
                if deadline is not None:
                    # Past the deadline the venue can no longer accept that request, so a
                    # lookup that does not find the order is conclusive.
                    self._sleep(max(0.0, deadline + self._deadline_margin_s - time.time()))
                # Lookups retry on their own; if they cannot tell, we cannot resend safely,
                # and nor can we call it refused: the first request may have landed.
                try:
                    found = self.find_order(cl_ord_id, since_epoch_s=first_sent - 5)
                except KrakenRestError as lookup_exc:
                    raise KrakenRestError(
                        [f"transport: AddOrder {cl_ord_id} outcome unknown ({exc}); looking "
                         f"it up failed: {lookup_exc}"], False, "transport",
                        ambiguous=True) from lookup_exc
                if found is not None:
                    self.pair_rate.learn(found.txid, cl_ord_id, canonical.pair)
                    descr = _descr_from_order(found)
                    return AddOrderResult(found.txid, descr, recovered=True)
                log.info("AddOrder %s not at the venue; sending again", cl_ord_id)
                self._charge_add(canonical.pair, cl_ord_id)  # the venue charges every arrival
                continue
            descr_obj = result.get("descr", {})
            descr = str(descr_obj.get("order", "")) if isinstance(descr_obj, Mapping) else ""
            txids = result.get("txid") or []
            txid = str(txids[0]) if txids else None
            if txid is not None:
                self.pair_rate.learn(txid, cl_ord_id, canonical.pair)
            return AddOrderResult(txid, descr)

    def cancel_order(self, txid: str | None = None, cl_ord_id: str | None = None) -> int:
        """Cancel by ``txid`` or ``cl_ord_id``; returns the count cancelled (0 when a retry
        finds the order already gone, since the earlier attempt may have cancelled it)."""
        if (txid is None) == (cl_ord_id is None):
            raise ValueError("give exactly one of txid or cl_ord_id")
        self.pair_rate.charge_cancel(txid, cl_ord_id)
        params = [("txid", txid)] if txid is not None else [("cl_ord_id", str(cl_ord_id))]
        attempt = 0
        nonce_refusals = 0
        while True:
            attempt += 1
            try:
                result = self._call("/0/private/CancelOrder", params)
                return int(result.get("count", 0))
            except KrakenRestError as exc:
                if attempt > 1 and exc.errors and exc.errors[0].startswith("EOrder:Unknown order"):
                    return 0
                nonce_refusals += _nonce_refused(exc)
                if not exc.retryable or attempt >= self._max_attempts or nonce_refusals > 1:
                    raise
                self._sleep(self._backoff(attempt))

    def amend_order(self, *, txid: str | None = None, cl_ord_id: str | None = None,
                    order_qty: Decimal | None = None,
                    limit_price: Decimal | None = None) -> str:
        """Kraken ``AmendOrder``: change an open order's quantity and/or limit price in place
        (txid and cl_ord_id stay the same, queue priority kept where possible); returns the
        ``amend_id``.

        Not retried after an ambiguous failure (timeout, 5xx): a second amend would be a second
        submission, and the order's own state tells whether the first landed (the caller
        queries it). Sent with a ``deadline`` like AddOrder, so once it has passed, an order
        still showing the old figures means the amend will never land. Retried only on
        answers that say the venue did not act (``EService:Busy``, ``EAPI:Invalid nonce``...).
        """
        if (txid is None) == (cl_ord_id is None):
            raise ValueError("give exactly one of txid or cl_ord_id")
        if order_qty is None and limit_price is None:
            raise ValueError("give order_qty and/or limit_price")
        for v in (order_qty, limit_price):
            if v is not None and not isinstance(v, Decimal):
                raise TypeError("order_qty and limit_price must be Decimal")
        self.pair_rate.charge_amend(txid, cl_ord_id)
        params: dict[str, str] = {"txid": txid} if txid is not None else {
            "cl_ord_id": str(cl_ord_id)}
        if order_qty is not None:
            params["order_qty"] = format(order_qty, "f")
        if limit_price is not None:
            params["limit_price"] = format(limit_price, "f")
        attempt = 0
        nonce_refusals = 0
        while True:
            attempt += 1
            if self._use_deadline:
                params["deadline"] = self.deadline_param()
            try:
                result = self._call("/0/private/AmendOrder", sorted(params.items()))
                self.pair_rate.amended(txid, cl_ord_id)
                return str(result.get("amend_id", ""))
            except KrakenRestError as exc:
                nonce_refusals += _nonce_refused(exc)
                if (exc.ambiguous or not exc.retryable or attempt >= self._max_attempts
                        or nonce_refusals > 1):
                    raise
                self._sleep(self._backoff(attempt))

    def cancel_all(self) -> int:
        return int(self._call_retrying("/0/private/CancelAll", []).get("count", 0))

    # -- rate model ----------------------------------------------------------------------------

    def _wait_rest(self, cost: float = 1.0) -> None:
        """Block until the REST counter model has room, then charge it."""
        while True:
            with self._lock:
                limit = self._rest.max - self._headroom
                wait = self._rest.wait_time(cost, limit)
                if wait <= 0:
                    self._rest.add(cost)
                    return
                self.rate_wait_s += wait
            self._sleep(wait)

    def _charge_add(self, pair: str, cl_ord_id: str | None) -> None:
        wait = self.pair_rate.try_add(pair, cl_ord_id)
        if wait > 0:
            raise LocalRateLimitError(pair, wait)

    def charge_add_elsewhere(self, pair: str, cl_ord_id: str | None = None) -> None:
        """Charge the per-pair engine model for an order placed over another transport with the
        same key (WS ``add_order``): the venue's counter is shared, so ours must be too. Raises
        :class:`LocalRateLimitError` (the caller does not send) when the venue would refuse.
        The caller tells ``pair_rate`` the order's txid once the venue gives it."""
        self._charge_add(pair, cl_ord_id)

    def rest_room(self) -> float:
        """Calls the REST counter model has room for now without waiting (below the ceiling
        less the headroom). A background poller asks this to skip a routine query rather than
        fill the counter, so a call that matters (reconciliation) never queues behind it."""
        with self._lock:
            return self._rest.max - self._headroom - self._rest.value()

    def pair_counter(self, pair: str) -> float:
        """The model's current per-pair counter (metrics, tests)."""
        return self.pair_rate.value(pair)

    # -- transport -----------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return float(min(self._backoff_initial_s * 2 ** (attempt - 1), self._backoff_max_s))

    def _call_retrying(self, path: str, params: list[tuple[str, str]], *,
                       private: bool = True) -> dict[str, Any]:
        """An idempotent call with backoff; ``EAPI:Invalid nonce`` retried once only."""
        nonce_retries = [0]

        def retryable(exc: BaseException) -> bool:
            if not isinstance(exc, KrakenRestError) or not exc.retryable:
                return False
            if exc.fresh_nonce:
                nonce_retries[0] += 1
                return nonce_retries[0] <= 1
            return True

        retrying = Retrying(stop=stop_after_attempt(self._max_attempts), wait=self._wait,
                            retry=retry_if_exception(retryable), before_sleep=_log_retry,
                            sleep=self._sleep, reraise=True)
        result: dict[str, Any] = retrying(self._call, path, params, private=private)
        return result

    #: Re-signings of one call that lost a nonce race to another thread of ours (see _call).
    NONCE_RACE_RESIGNS = 8

    def _call(self, path: str, params: list[tuple[str, str]], *,
              private: bool = True) -> dict[str, Any]:
        """One attempt. Private calls are signed per attempt (fresh nonce) and charged to the
        REST counter model unless excluded (AddOrder/CancelOrder, §7).

        Threads sharing the key draw nonces in order but their requests can reach the venue
        out of order, and the later arrival of a smaller nonce is refused with
        ``EAPI:Invalid nonce`` before anything is executed (§1). When this client has handed
        out a larger nonce since signing, that race is the explanation, and the request is
        signed again and resent at once (safe even for AddOrder: the venue did not act on it).
        Otherwise (clock, another process on the key) the error goes to the caller, whose
        rule is one retry."""
        if not private:
            return self._send(path, params, private=False)
        resigns = 0
        while True:
            try:
                return self._send(path, params, private=True)
            except KrakenRestError as exc:
                if not (exc.fresh_nonce and exc.nonce_raced) or resigns >= self.NONCE_RACE_RESIGNS:
                    raise
                resigns += 1
                log.debug("%s lost a nonce race to another thread; signing again", path)

    def _send(self, path: str, params: list[tuple[str, str]], *,
              private: bool) -> dict[str, Any]:
        headers = {"User-Agent": self._user_agent, "Accept": "application/json",
                   "Content-Type": "application/x-www-form-urlencoded"}
        nonce = 0
        if private:
            method = path.rsplit("/", 1)[-1]
            if method not in ("AddOrder", "CancelOrder"):
                self._wait_rest()
            nonce = self._nonce.next()
            body, auth = self.sign(path, params, nonce)
            headers.update(auth)
        else:
            body = urllib.parse.urlencode(params)
        request = urllib.request.Request(self.base_url + path, data=body.encode("utf-8"),
                                         headers=headers, method="POST")
        try:
            status, raw = exchange(self._opener, request, self.timeout_s)
        except NoAnswer as exc:
            reason = exc.reason or type(exc.__cause__).__name__
            raise KrakenRestError([f"transport: {reason}"], True, "transport",
                                  ambiguous=True) from exc
        try:
            return _decode(status, raw)
        except KrakenRestError as exc:
            if exc.fresh_nonce and private:
                exc.nonce_raced = self._nonce.last > nonce
            self._sync_rate_model(path, params, exc)
            raise

    def _sync_rate_model(self, path: str, params: list[tuple[str, str]],
                         exc: KrakenRestError) -> None:
        """The venue said a counter is full although our model disagreed (another process or
        transport shares the key/pair): saturate the model so the next wait is long enough."""
        first = exc.errors[0] if exc.errors else ""
        if first.startswith("EAPI:Rate limit exceeded"):
            with self._lock:
                self._rest.add(max(0.0, self._rest.max - self._rest.value()))
        elif path.endswith("/AddOrder"):
            pair = dict(params).get("pair")
            if pair:
                self.pair_rate.add_refused(first, pair)

    def _orders(self, result: Mapping[str, Any], strict: bool = False) -> dict[str, SpotOrder]:
        """The order objects of a listing, by txid.

        One order we cannot read (a pair ``parse_spot_pair`` cannot split, placed by another
        desk on the account) must not hide every other order of the listing: that made each
        poll fail, and failback and held orders with it. It is skipped (logged once). With
        `strict` (a lookup of one of our own ClOrdIDs) the order is ours, so "not listed"
        would read as "not at the venue": an answer we cannot read is no answer instead."""
        out: dict[str, SpotOrder] = {}
        for txid, obj in result.items():
            if not isinstance(obj, Mapping):
                continue
            try:
                out[str(txid)] = parse_order(str(txid), obj)
            except ValueError as exc:
                if strict:
                    raise KrakenRestError([f"transport: order {txid} not understood: {exc}"],
                                          False, "transport", ambiguous=True) from exc
                self._skip_unreadable(str(txid), exc)
        return out

    def _skip_unreadable(self, txid: str, exc: ValueError) -> None:
        with self._lock:
            if txid in self._unreadable:
                return
            if len(self._unreadable) >= self.REMEMBERED_MAX:
                self._unreadable.clear()  # bounded; at worst one more log line per order
            self._unreadable.add(txid)
        log.warning("order %s on the account not understood, skipped in order listings: %s",
                    txid, exc)


def _nonce_refused(exc: KrakenRestError) -> bool:
    """``EAPI:Invalid nonce`` in a clear answer: refused before the venue acted (§1)."""
    return exc.fresh_nonce and not exc.ambiguous


def _decode(status: int, raw: bytes) -> dict[str, Any]:
    # An answer we cannot read says nothing about what the venue did, unless it is a 4xx (the
    # request was refused before the API: a proxy, a WAF): a 200 or a 5xx whose body is not
    # Kraken's envelope is ambiguous (an AddOrder is then looked up, never called refused).
    unreadable_ambiguous = not 400 <= status < 500
    try:
        payload = json.loads(raw.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KrakenRestError([f"transport: HTTP {status} with a non-JSON body"],
                              unreadable_ambiguous, "transport",
                              ambiguous=unreadable_ambiguous) from None
    errors = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(errors, list) and errors:
        texts = [str(e) for e in errors]
        d = classify(texts[0])
        # A 5xx is a proxy/outage answer: we cannot know whether the venue acted on it.
        return _raise(texts, d.retry or status >= 500, d.category,
                      ambiguous=status >= 500, fresh_nonce=d.fresh_nonce)
    if status != 200 or not isinstance(payload, dict):
        return _raise([f"transport: HTTP {status}"], unreadable_ambiguous, "transport",
                      ambiguous=unreadable_ambiguous)
    result = payload.get("result")
    if not isinstance(result, dict):
        return _raise(["transport: malformed response: no result object"], True, "transport",
                      ambiguous=True)
    return result


def _raise(errors: list[str], retryable: bool, category: str, *, ambiguous: bool = False,
           fresh_nonce: bool = False) -> dict[str, Any]:
    raise KrakenRestError(errors, retryable, category, ambiguous=ambiguous,
                          fresh_nonce=fresh_nonce)


def _descr_from_order(order: SpotOrder) -> str:
    head = f"{order.side} {format(order.volume, 'f')} {parse_spot_pair(order.pair).rest_altname}"
    head += f" @ {order.ord_type}"
    return head if order.price is None else f"{head} {format(order.price, 'f')}"


def _rfc3339(epoch_s: float) -> str:
    stamp = datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    log.info("retrying Kraken spot REST call (attempt %d): %s", state.attempt_number, exc)
