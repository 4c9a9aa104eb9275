"""Fail over from the FIX trading session to Kraken spot REST, and back, without losing or
duplicating an order.

:class:`TransportPolicy` decides which transport new orders and cancels take: FIX while its
trading session is logged on; REST once FIX has been down for ``failover_after_s`` (and REST
answers SystemStatus ``online``); FIX again once it has been logged on for ``failback_after_s``,
after every REST-routed open order has been reconciled. Ops may pin it (``force``).

:class:`RestFallback` is the REST side for the router:

* ``place`` sends the order under the journal's own venue ClOrdID as Kraken ``cl_ord_id``, so
  a resend (the client looks the ClOrdID up before any resend) or a reconciliation over either
  transport finds the one order; the venue refuses a second open order with that ClOrdID.
* a poller thread queries open REST-routed orders (``QueryOrders``) and turns each state change
  into the fields of a venue ExecutionReport, fed to ``Router.on_venue_report``: the same
  mapping, ExecID dedupe and journal as a FIX report. ExecIDs are derived from (txid, vol_exec,
  state), so polling the same state twice gives the same ExecID and no second report. The FIX
  session, when it is back, resends the venue's own reports of those orders; the router
  forwards only reports that move an order on (``router._advances``), so the OMS sees each
  state once whichever transport told it first.
* while failed over and the private WebSocket is connected, new orders and cancels go over
  it (``add_order``/``cancel_order``: the issue's policy is FIX, then WS, then REST), journaled
  as transport ``ws`` before they leave. An ``add_order`` without an answer is looked up over
  REST by ClOrdID (as an ambiguous AddOrder is), never resent; a cancel without an answer is
  sent again over REST (cancelling twice is harmless).
* while failed over it also subscribes to the spot WebSocket v2 private ``executions`` channel
  (token from REST ``GetWebSocketsToken``), so fills reach the OMS as they happen rather than
  at the next poll; each item is turned into the same order state a poll gives, hence the same
  ExecIDs, and the router's dedupe passes each report once whichever source told it first.
  Polling stays on as the backstop (a WS gap, a reconnect, an item we cannot place).
* cancel/replace (35=G) goes over the private WebSocket as ``amend_order`` while it is
  connected, else over REST as Kraken ``AmendOrder`` (either way in place: same txid, same
  cl_ord_id, quantity and/or limit price; limit orders only) and is answered with a 35=8
  ExecType 5 under the replace's ClOrdID as over FIX, or a 35=9. Because Kraken keeps the
  order's cl_ord_id, the Replaced report (request kind ``amend`` in the order store) keeps the
  order's venue ClOrdID and binds it to the replace's OMS ClOrdID, in the report's one journal
  record. An amend whose answer was lost, on either path, is not
  resent: the next poll shows whether it landed (the order carries the new figures: 35=8
  ExecType 5) or, once its deadline has passed, that it never will (35=9).
* a REST/WS cancel or amend is journaled with its transport and figures before it leaves,
  and each answer not under its own venue ClOrdID (a refusal, too late, an amend's Replaced)
  with an ``R``: after a kill -9, ``start`` rebuilds the ones with no answer (`_cancels`,
  `_amends`) from the journal, so the poller settles them through the same paths and the OMS
  gets its answer once; a cancel is also sent again over REST, as it may never have left. A
  35=9 the poller answers one with is in its ``R`` (`Router.cancel_reject_for`): a restart
  sends it if the kill came before it left.
* mass cancel (35=q) is per order, scoped to the requesting OMS's own open orders (never
  ``CancelAll``, which would cancel every desk's orders on the account): 35=r first, then one
  35=8 ExecType 4 per order as the venue confirms it, as over FIX.
* after failback, cancels and replaces of the orders placed here (transport ``rest``/``ws``)
  still come here (``Router._by_fallback``): Kraken's FIX session only cancels or replaces
  orders placed on it ("Cancel scope", kraken-api.md) and would refuse them as unknown. They
  go over REST (the private WebSocket is closed once the flow is back on FIX), journaled and
  answered exactly as above; the poller polls while any is pending, failed over or not
  (`_requests_pending`), and `claim_cancel` lets a FIX Canceled that arrives first answer
  the cancel instead of a poll. The orders' later fills are reported by the venue's FIX
  session (it reports every order of the account), so they are not polled once answered.

**Orders that arrive while no transport is up** (the first ``failover_after_s`` of an outage,
or REST not reachable either). A desk would rather have its order go out a second later than
be refused and have to resend it by hand, but it must never go out twice or silently late.
So with ``hold_max_s > 0`` such an order is journaled as ``held`` and acknowledged with a
35=8 ExecType A (PendingNew, Text says why), then sent exactly once, in arrival order, on the
first path that becomes available: FIX if the session comes back, REST once the policy fails
over. The journal records the transport chosen *before* the order is sent, so a restart asks
that path about it instead of sending it again; an order still held at a restart is held
again. Orders arriving while others are held queue behind them (an OMS's orders go out in the
order it sent them). An order held longer than ``hold_max_s`` is rejected (35=8 ExecType 8,
Text "held N s ... not sent"), a held order can be canceled at once (it never left), and a full
queue (``hold_max_orders``) rejects new orders at once. ``hold_max_s = 0`` restores the old
behaviour: reject immediately when no transport is up. The release runs on the poller's thread
and never makes an OMS thread wait for its venue calls: an order arriving during a release is
held (PendingNew) behind the orders still queued, and a cancel of the order being sent at that
very moment is refused with a 35=9 (send it again after the New) rather than reported canceled;
once the order's transport is journaled the cancel goes to the venue like any other.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, TypeAlias

from gateway.fix import messages as m
from gateway.fix.messages import Fields
from gateway.orders import state
from gateway.orders.model import Order
from gateway.orders.store import RequestDetails
from gateway.transports.kraken_spot_rest import (
    KrakenRestError,
    KrakenSpotRest,
    SpotOrder,
    classify,
    may_have_acted,
)
from gateway.transports.kraken_ws import KrakenWsError, KrakenWsPrivate, KrakenWsRejected

if TYPE_CHECKING:
    from gateway.routing.router import Router

log = logging.getLogger("fixgw.routing.failover")

Transport: TypeAlias = Literal["fix", "rest"]
Force: TypeAlias = Literal["auto", "fix", "rest"]
#: on_switch(from_transport, to_transport, reason, automatic)
SwitchCallback: TypeAlias = Callable[[str, str, str, bool], None]

_SIDES = {"1": "buy", "2": "sell"}
_TIFS = {"1": "GTC", "3": "IOC", "4": "FOK"}
BROKER_OPTION = "2"  # CxlRejReason
TOO_LATE = "0"
PENDING_CANCEL = "3"  # CxlRejReason: already pending cancel or replace


def _s(d: Decimal) -> str:
    return format(d.normalize(), "f") if d else "0"


def _refusal(error: str, text: str) -> tuple[str, str]:
    """The (CxlRejReason, Text) of a cancel or amend the venue refused with `error`: too late
    when it no longer knows the order (filled or canceled meanwhile), else broker option."""
    return (TOO_LATE if error.startswith("EOrder:Unknown order") else BROKER_OPTION), text


def _rest_refusal(exc: KrakenRestError) -> tuple[str, str]:
    return _refusal(exc.errors[0] if exc.errors else "", f"REST fallback: {exc.decision.text}")


def _cancel_unknown(why: object) -> tuple[str, str]:
    """The 35=9 of a cancel that may or may not have landed (no answer after the client's
    retries, or a failure of ours after it may have left): the OMS is answered now, in words
    that say so, and a cancel that did land is reported (under the order's ClOrdID) by the
    next poll."""
    return BROKER_OPTION, (f"REST fallback: cancel outcome unknown ({why}); send it again if "
                           "the order is not reported canceled")


@dataclass(slots=True)
class _Amend:
    """An AmendOrder whose answer was lost: resolved by the order's next polled state, which
    is asked for even once the order has closed (through FIX, say): the OMS is owed an
    answer either way."""

    order: Order
    vid: str              # the replace request's venue ClOrdID (journaled with add_request)
    oms_cl: str           # the OMS's ClOrdID of the replace
    venue_cl: str         # the ClOrdID the venue knows the order by (kept by the amend)
    qty: Decimal
    price: Decimal | None
    # Monotonic: a state asked for after this that shows the old figures means it never
    # landed. Set when the call returned (its retries each set a later deadline).
    give_up_at: float = 0.0
    path: str = "REST"    # the API it went over ("REST" | "WS"), for the OMS's Text and logs


@dataclass(slots=True)
class _Cancel:
    """A cancel sent (or being sent) over REST/WS, until the venue shows the order closed:
    canceled (answered by the Canceled under `vid`), or closed otherwise (answered too late)."""

    order: Order
    vid: str              # the cancel request's venue ClOrdID (journaled with add_request)
    oms_cl: str           # the OMS's ClOrdID of the cancel (a mass cancel's for kind "mass")
    kind: str             # "cancel" | "mass"


_WS_STATUS = {"pending_new": "open", "new": "open", "partially_filled": "open",
              "filled": "closed", "canceled": "canceled", "expired": "expired"}


class TransportPolicy:
    """Which transport carries new orders and cancels; thread-safe, evaluated by a timer."""

    def __init__(self, fix_up: Callable[[], bool], rest_up: Callable[[], bool], *,
                 failover_after_s: float, failback_after_s: float, on_switch: SwitchCallback,
                 before_failback: Callable[[], bool] | None = None, force: Force = "auto",
                 clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger | None = log,
                 why_fix_down: Callable[[], str] = lambda: "") -> None:
        """`logger=None`: the owner logs each switch in its own words (the market-data policy
        reuses this class, and "FIX trading session" or "REST" would mislead ops there).
        `why_fix_down`: a note for the failover's reason, e.g. the venue's daily rollover."""
        self._why_fix_down = why_fix_down
        self._log = logger
        self._postponed = False  # the failback postponement is logged once per episode
        self._fix_up = fix_up
        self._rest_up = rest_up
        self.failover_after_s = failover_after_s
        self.failback_after_s = failback_after_s
        self._on_switch = on_switch
        self._before_failback = before_failback
        self._clock = clock
        self._lock = threading.RLock()
        self.active: Transport = "fix"
        self.force: Force = force
        self._fix_changed = clock()
        self._fix_was_up = True  # FIX is expected up at start: no failover before it tried

    def use_rest(self) -> bool:
        return self.active == "rest"

    def set_force(self, force: Force) -> None:
        """Pin the transport ("fix"/"rest") or follow health again ("auto"); takes effect now."""
        if force not in ("auto", "fix", "rest"):
            raise ValueError(f"force must be auto, fix or rest, not {force!r}")
        with self._lock:
            self.force = force
            if self._log is not None:
                self._log.info("transport policy: force=%s", force)
        self.evaluate()

    def evaluate(self) -> Transport:
        """Look at health now and switch if the rules say so; returns the active transport."""
        with self._lock:
            now = self._clock()
            fix_up = self._fix_up()
            if fix_up != self._fix_was_up:
                self._fix_was_up = fix_up
                self._fix_changed = now
            steady = now - self._fix_changed
            want: Transport = self.active
            reason = ""
            automatic = self.force == "auto"
            if self.force != "auto":
                want, reason = self.force, f"forced to {self.force} by operator"
            elif self.active == "fix" and not fix_up and steady >= self.failover_after_s:
                if self._rest_up():
                    want = "rest"
                    reason = f"FIX trading session down for {steady:.1f}s{self._why_fix_down()}"
            elif self.active == "rest" and fix_up and steady >= self.failback_after_s:
                want = "fix"
                reason = f"FIX trading session logged on and stable for {steady:.1f}s"
            if want == self.active:
                return self.active
            if want == "fix" and self._before_failback is not None:
                if not self._before_failback():
                    if self._rest_up():
                        if self._log is not None and not self._postponed:
                            self._log.warning("failback to FIX postponed: REST-routed orders "
                                              "not reconciled yet")
                        self._postponed = True
                        return self.active
                    reason += ("; REST unreachable, so REST/WS-routed orders are not "
                               "reconciled (cancels and replaces pending on them are still "
                               "looked up over REST until answered)")
                else:
                    reason += "; REST-routed orders reconciled"
            old, self.active = self.active, want
            self._postponed = False
        if self._log is not None:
            self._log.warning("transport switch %s -> %s: %s", old, want, reason)
        try:
            self._on_switch(old, want, reason, automatic)
        except Exception:
            log.exception("transport switch callback failed")
        return want


class RestFallback:
    """Order entry over Kraken spot REST for the router, and the poller that reports back."""

    #: REST counter units routine polls leave free for reconciliation and order lookups.
    REST_RESERVE = 3.0

    def __init__(self, router: Router, client: KrakenSpotRest, poll_interval_s: float = 0.5,
                 status_interval_s: float = 5.0, *, ws_url: str = "",
                 hold_max_s: float = 0.0, hold_max_orders: int = 1000,
                 request_deadline_s: float | None = None, ws_orders: bool = True) -> None:
        self.router = router
        self.client = client
        self.poll_interval_s = poll_interval_s
        self.status_interval_s = status_interval_s
        self.policy: TransportPolicy | None = None
        self.rest_ok = False
        self.ws_url = ws_url
        self.ws: KrakenWsPrivate | None = None
        self.ws_orders = ws_orders  # new orders and cancels over WS while it is connected
        self.ws_orders_configured = ws_orders  # what `prefer` restores on auto/fix
        self.hold_max_s = hold_max_s
        self.hold_max_orders = hold_max_orders
        # An order or amend sent with a deadline (`client.deadline_window_s` ahead) cannot
        # land after this long: then an order a lookup does not find, or old figures in a
        # poll, mean it never will. Before that, neither is conclusive.
        self.request_deadline_s = (request_deadline_s if request_deadline_s is not None
                                   else client.deadline_window_s + 1.0)
        self._cancels: dict[str, _Cancel] = {}  # order venue ClOrdID -> its pending cancel
        # Cancels journaled before a restart with no answer: sent again over REST by the
        # poller (`_resend_cancels`); each stays in `_cancels` until answered.
        self._resend: list[_Cancel] = []
        # Orders placed with an unknown outcome, by venue ClOrdID: (order, when to look from
        # (epoch s), monotonic time from which "not found" is final).
        self._unresolved: dict[str, tuple[Order, Decimal, float]] = {}
        self._amends: dict[str, _Amend] = {}  # txid -> amend with a lost answer
        self._held: deque[tuple[Order, float]] = deque()  # (order, monotonic time held)
        # Guards `_held` and `_releasing` only, and is never held across a venue call: the OMS
        # thread takes it for every new order (`should_hold`) and held-order cancel (`unhold`).
        self._held_lock = threading.Lock()
        # One releaser drains the queue at a time; held across the venue calls of the drain.
        self._release_lock = threading.Lock()
        # The queue's head while `release_held` sends (or rejects) it, outside `_held_lock`:
        # still queued (so later orders stay behind it), but no longer `unhold`-able.
        self._releasing: Order | None = None
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._next_poll = 0.0
        self._thread: threading.Thread | None = None
        self._step_errors: dict[str, str] = {}  # poller step -> its last failure, logged

    def active(self) -> bool:
        return self.policy is not None and self.policy.use_rest()

    # ---- order entry (on the OMS thread) ----------------------------------------------------
    def place(self, order: Order) -> Fields | tuple[str, str] | None:
        """Send a journaled order. Returns the venue acknowledgement's ER fields, or
        (OrdRejReason, Text) when the venue refused it, or None when the outcome is unknown
        (the poller looks the ClOrdID up and reports what it finds)."""
        side = _SIDES.get(order.side)
        tif = _TIFS.get(order.tif)
        ord_type = "limit" if order.ord_type == "2" else "market" if order.ord_type == "1" else None
        if side is None or tif is None or ord_type is None:
            return "99", (f"order not sent over REST fallback: side {order.side}, OrdType "
                          f"{order.ord_type}, TimeInForce {order.tif} not supported there")
        sent_at = Decimal(time.time_ns()) / Decimal(1_000_000_000)
        if order.transport == "ws":
            return self._place_ws(order, side, ord_type, tif, sent_at)
        try:
            res = self.client.add_order(order.symbol, side, ord_type, order.qty,  # type: ignore[arg-type]
                                        order.price, tif, order.venue_cl_ord_id)  # type: ignore[arg-type]
        except KrakenRestError as exc:
            if exc.ambiguous:
                self._unknown_outcome(order, sent_at, "REST AddOrder", exc)
                return None
            d = exc.decision
            return d.ord_rej_reason, f"REST fallback: {d.text}"
        except Exception as exc:  # e.g. an answer we cannot read: the order may be live
            self._unknown_outcome(order, sent_at, "REST AddOrder", exc)
            return None
        if res.txid is None:  # an answer without the order's id says nothing either way
            self._unknown_outcome(order, sent_at, "REST AddOrder", "no txid in answer")
            return None
        log.info("order %s placed over REST: txid %s%s", order.oms_cl_ord_id, res.txid,
                 " (recovered after a retry)" if res.recovered else "")
        return self._fields(order, res.txid, "0", "0", Decimal(0), Decimal(0),
                            f"R{res.txid}-0-new")

    def _unknown_outcome(self, order: Order, sent_at: Decimal, what: str,
                         why: object) -> None:
        """An order request that may have reached the venue but gave no usable answer: never
        sent again, and never left without one either (the OMS would wait until a restart
        while the order may be live): looked up by ClOrdID, which answers the OMS."""
        if isinstance(why, Exception) and not isinstance(why, KrakenRestError | KrakenWsError):
            log.error("%s %s failed unexpectedly; outcome unknown, looking it up",
                      what, order.venue_cl_ord_id, exc_info=why)
        else:
            log.warning("%s %s outcome unknown (%s); looking it up", what,
                        order.venue_cl_ord_id, why)
        self._look_up_later(order, sent_at)

    def _look_up_later(self, order: Order, sent_at: Decimal) -> None:
        """The order may or may not have reached the venue: the poller looks its ClOrdID up.
        "Not found" settles it only once the request's deadline has passed, as until then
        the venue may still take it (a request stuck in a queue or a retry)."""
        with self._lock:
            self._unresolved[order.venue_cl_ord_id] = (
                order, sent_at - 5, time.monotonic() + self.request_deadline_s)

    def prefer(self, path: str | None) -> None:
        """Ops' choice of fallback path: "ws" (orders over the private WebSocket while it is
        connected, REST otherwise), "rest" (REST only), None (back to the configuration)."""
        if path not in ("ws", "rest", None):
            raise ValueError(f"fallback path must be ws, rest or None, not {path!r}")
        self.ws_orders = self.ws_orders_configured if path is None else path == "ws"

    def order_transport(self) -> str:
        """The path a new order takes while failed over: the private WebSocket when it is
        connected (issue #6's policy: FIX, then WS, then REST), else REST. Journaled with the
        order before it is sent, so a restart knows where to look it up."""
        ws = self.ws
        return "ws" if self.ws_orders and ws is not None and ws.connected else "rest"

    def _place_ws(self, order: Order, side: str, ord_type: str, tif: str,
                  sent_at: Decimal) -> Fields | tuple[str, str] | None:
        """AddOrder over the private WebSocket under our venue ClOrdID. A refusal is a reject,
        unless its error is one that may answer a placed order (internal error, busy:
        `may_have_acted`); that and anything else after the request may have left (timeout,
        connection lost) is an unknown outcome, settled by looking the ClOrdID up over REST,
        never by sending it again."""
        ws = self.ws
        if ws is None or not ws.connected:
            # Nothing was sent: REST is the next path in the policy (same ClOrdID).
            log.info("WS not connected; order %s goes over REST", order.oms_cl_ord_id)
            self.router.store.set_transport(order, "rest")
            return self.place(order)
        try:  # one per-pair counter for both paths, as at the venue
            self.client.charge_add_elsewhere(order.symbol, order.venue_cl_ord_id)
        except KrakenRestError as exc:
            return exc.decision.ord_rej_reason, f"WS fallback: {exc.decision.text}"
        try:
            res = ws.add_order(symbol=order.symbol, side=side, order_type=ord_type,
                               order_qty=order.qty, limit_price=order.price,
                               time_in_force=tif.lower(), cl_ord_id=order.venue_cl_ord_id,
                               deadline=self.client.deadline_param())
        except KrakenWsRejected as exc:
            # A full counter told over WS holds for REST too: one counter at the venue.
            self.client.pair_rate.add_refused(exc.error, order.symbol)
            d = classify(exc.error)
            if may_have_acted(d):
                # An error that may answer an order the venue did place (EGeneral:Internal
                # error, EService:Busy...): as over REST, looked up, never taken for a
                # reject of what may be a live order.
                self._unknown_outcome(order, sent_at, "WS add_order", exc.error)
                return None
            return d.ord_rej_reason, f"WS fallback: {d.text}"
        except Exception as exc:  # KrakenWsError, or anything after the request may have left
            self._unknown_outcome(order, sent_at, "WS add_order", exc)
            return None
        txid = res.get("order_id")
        if not isinstance(txid, str) or not txid:
            self._unknown_outcome(order, sent_at, "WS add_order", "no order_id in answer")
            return None
        self.client.pair_rate.learn(txid, order.venue_cl_ord_id, order.symbol)
        log.info("order %s placed over WS: txid %s", order.oms_cl_ord_id, txid)
        return self._fields(order, txid, "0", "0", Decimal(0), Decimal(0), f"R{txid}-0-new")

    def _via_ws(self, order: Order, what: Literal["cancel", "amend"],
                call: Callable[[KrakenWsPrivate, str], object]) -> tuple[str, str] | str | None:
        """`call(socket, txid)` for a cancel or an amend over the private WebSocket: None when
        done, a (CxlRejReason, Text) refusal, "unused" when the socket is not there (the caller
        goes over REST), "unknown" when it was sent but not answered. Charged to the REST
        client's per-pair model first, as the REST call would be: the venue's counter is one
        for both APIs."""
        ws = self._ws_for(order)
        if ws is None:
            return "unused"
        rate = self.client.pair_rate
        (rate.charge_cancel if what == "cancel" else rate.charge_amend)(
            order.order_id, order.venue_cl_ord_id)
        try:
            call(ws, order.order_id)
        except KrakenWsRejected as exc:  # in the words a REST refusal has (`classify`)
            return _refusal(exc.error, f"WS fallback: {classify(exc.error).text}")
        except KrakenWsError as exc:
            log.warning("WS %s of %s outcome unknown (%s)", what, order.oms_cl_ord_id, exc)
            return "unknown"
        except Exception:  # it may have left: unknown, never an exception for the OMS thread
            log.exception("WS %s of %s failed unexpectedly; outcome unknown", what,
                          order.oms_cl_ord_id)
            return "unknown"
        return None

    def _ws_for(self, order: Order) -> KrakenWsPrivate | None:
        """The private WebSocket, if a cancel or amend of `order` goes over it (see `_via_ws`)."""
        ws = self.ws
        if not self.ws_orders or ws is None or not ws.connected or not order.order_id:
            return None
        return ws

    def _details(self, order: Order, qty: Decimal | None,
                 price: Decimal | None) -> RequestDetails:
        """What to journal with a cancel or amend about to go out: its figures and the path it
        takes first (the private WebSocket if `_via_ws` will use it, else REST), so that a
        restart takes it up if it has no answer (see `start`)."""
        path = "ws" if self._ws_for(order) is not None else "rest"
        return RequestDetails(time.time_ns() // 1_000_000, qty, price, path)

    def _rest_cancel(self, order: Order) -> None:
        """REST CancelOrder of `order`: by txid once the venue has given one, else by our
        cl_ord_id (the venue refuses a second open order with it, so it names one order)."""
        if order.order_id:
            self.client.cancel_order(txid=order.order_id)
        else:
            self.client.cancel_order(cl_ord_id=order.venue_cl_ord_id)

    def _cancel_ws(self, order: Order) -> tuple[str, str] | str | None:
        """Cancel over the private WebSocket (see `_via_ws`); an unanswered one is then sent
        over REST too: cancelling twice is harmless, and an "unknown order" from REST then only
        means the WS cancel got there first."""
        name = order.oms_cl_ord_id  # before the feed's cancel report can move it on
        done = self._via_ws(order, "cancel",
                            lambda ws, txid: ws.cancel_order(order_id=[txid]))
        if done is None:
            log.info("cancel of order %s sent over WS", name)
        return done

    def cancel(self, order: Order, oms_cl: str, kind: str = "cancel") -> tuple[str, str] | None:
        """Cancel over REST; None when sent (the WS feed or the next poll reports it), else the
        (CxlRejReason, Text) of a cancel reject. `kind` "mass" for one order of a mass cancel
        (its report then goes out under the mass request's ClOrdID, as over FIX).

        A refusal is journaled with its answer (an OMS cancel's: the router sends it next), so
        an OMS resend of the request after a kill -9 in between is answered again (see
        `Router._refused_before`).

        One answer per request: while an earlier cancel of the order (the OMS's, or one of a
        mass cancel) has no answer, another is refused (CxlRejReason 3, pending cancel) and
        not sent. It used to take the earlier one's place, which then never got an answer
        (the order's Canceled went out under the later one, or unsolicited)."""
        store = self.router.store
        vid = store.venue_ids.next()
        mine = _Cancel(order, vid, oms_cl, kind)

        def refused(answer: tuple[str, str]) -> tuple[str, str]:
            with self._lock:
                if self._cancels.get(order.venue_cl_ord_id) is mine:
                    del self._cancels[order.venue_cl_ord_id]
            store.mark_answered(vid, answer if kind == "cancel" else None)
            return answer

        store.add_request(vid, (order.oms_session, order.oms_history[0]), oms_cl, kind,
                          self._details(order, None, None))
        self.router.maybe_crash("request_journaled", kind)
        with self._lock:
            earlier = self._cancels.setdefault(order.venue_cl_ord_id, mine)
        if earlier is not mine:
            return refused((PENDING_CANCEL, f"REST/WS fallback: an earlier cancel of this order "
                            f"({earlier.oms_cl}) has no answer yet; the order's Canceled, or "
                            "a reject of that cancel, follows"))
        by_ws = self._cancel_ws(order)
        if by_ws is None:
            self._wake.set()
            return None
        if isinstance(by_ws, tuple):
            return refused(by_ws)
        try:
            self._rest_cancel(order)
        except KrakenRestError as exc:
            if exc.ambiguous:  # the client's last retry got no answer either
                log.warning("REST CancelOrder of %s outcome unknown (%s)", order.oms_cl_ord_id,
                            exc)
                return refused(_cancel_unknown(exc))
            reason, text = _rest_refusal(exc)
            if reason == TOO_LATE and by_ws == "unknown":
                return None  # the WS cancel landed after all: its report is on the way
            return refused((reason, text))
        except Exception as exc:
            log.exception("REST CancelOrder of %s failed unexpectedly", order.oms_cl_ord_id)
            return refused(_cancel_unknown(exc))
        # The poller reports the cancel (not polled here: the REST counter model may make a
        # query wait, and this is the OMS session's thread).
        self._wake.set()
        return None

    def replace(self, order: Order, oms_cl: str, qty: Decimal, price: Decimal | None,
                tif: str | None) -> tuple[str, str] | None:
        """Cancel/replace over REST as Kraken AmendOrder; None when the OMS has been (or will
        be) answered by a report, else the (CxlRejReason, Text) of a cancel reject."""
        if order.ord_type != "2" or price is None:
            return BROKER_OPTION, ("REST fallback: only limit orders can be replaced over REST "
                                   "(Kraken AmendOrder); cancel and send a new order")
        if tif is not None and tif != order.tif:
            return BROKER_OPTION, ("REST fallback: TimeInForce cannot change in a replace over "
                                   "REST (Kraken AmendOrder amends quantity and price only)")
        if not order.order_id:
            return BROKER_OPTION, ("REST fallback: the venue has not acknowledged the order "
                                   "yet; send the replace again after its New")
        with self._lock:
            pending = order.order_id in self._amends
        if pending:  # one answer per request: a second would overwrite the first's
            return BROKER_OPTION, ("REST fallback: an earlier replace of this order has no "
                                   "answer yet; send this one again once it is answered")
        store = self.router.store
        vid = store.venue_ids.next()
        store.add_request(vid, (order.oms_session, order.oms_history[0]), oms_cl, "amend",
                          self._details(order, qty, price))
        self.router.maybe_crash("request_journaled", "amend")
        venue_cl = order.venue_cl_ord_id
        txid = order.order_id
        amend = _Amend(order, vid, oms_cl, venue_cl, qty, price)
        # Over the private WebSocket while it is connected (the same in-place amend), else
        # REST. Either way an amend without an answer is never sent again: the order's next
        # polled state tells whether it landed.
        path = "WS"
        outcome = self._via_ws(order, "amend", lambda ws, txid: ws.amend_order(
            order_id=txid, order_qty=qty, limit_price=price,
            deadline=self.client.deadline_param()))
        if isinstance(outcome, tuple):  # journaled with its answer, as in `cancel`
            store.mark_answered(vid, outcome)
            return outcome
        if outcome == "unused":
            path = "REST"
            try:
                self.client.amend_order(txid=txid, order_qty=qty, limit_price=price)
            except KrakenRestError as exc:
                if not exc.ambiguous:
                    answer = _rest_refusal(exc)
                    store.mark_answered(vid, answer)
                    return answer
                log.warning("REST AmendOrder of %s outcome unknown (%s)", order.oms_cl_ord_id,
                            exc)
                outcome = "unknown"
            except Exception:  # it may have left: settled by the order's state, like a timeout
                log.exception("REST AmendOrder of %s failed unexpectedly; outcome unknown",
                              order.oms_cl_ord_id)
                outcome = "unknown"
        if outcome == "unknown":
            log.warning("the order's next polled state tells whether the amend of %s landed",
                        order.oms_cl_ord_id)
            amend.path = path
            # From now, as for an order (`_look_up_later`): the request sent last, by this
            # call's last retry, has its deadline at most one deadline from now.
            amend.give_up_at = time.monotonic() + self.request_deadline_s
            with self._lock:
                self._amends[txid] = amend
            self._wake.set()
            return None
        log.info("order %s amended over %s: qty %s price %s (now %s)", order.oms_cl_ord_id,
                 path, qty, price, oms_cl)
        with self.router.report_lock:
            self._emit_replaced(order, amend, path.lower())
        return None

    def _emit_replaced(self, order: Order, a: _Amend, via: str = "rest") -> None:
        """The ExecType 5 the venue would have sent over FIX (the order store keeps the order's
        venue ClOrdID, as the venue does, since the request is an ``amend``); `via` is the API
        that told us ("rest", "ws"), which the report's event names as its source. Caller holds
        the router's report lock."""
        cum = order.cum_qty
        status = "2" if a.qty <= cum else "1" if cum > 0 else "0"
        if state.is_terminal(order.status):  # landed before the order closed (told by FIX)
            status = order.status
        f = self._fields(order, order.order_id, "5", status, cum, order.avg_px,
                         f"R{order.order_id}-amend-{a.vid}", venue_cl=a.vid)
        f["41"] = a.venue_cl
        f["38"] = _s(a.qty)
        f["151"] = ("0" if state.is_terminal(status)
                    else _s(max(a.qty - cum, Decimal(0))))
        if a.price is not None:
            f["44"] = _s(a.price)
        self.router.on_venue_report(f, via)
        # §7 ages the order from this amend on (over WS, or found landed by a poll; a REST
        # answer restarted it already, a moment earlier).
        self.client.pair_rate.amended(order.order_id, a.venue_cl)
        # Its record names the order's own venue ClOrdID (the amend is in place), not the
        # amend's: a restart tells it answered by this one (after it: a kill in between
        # finds the amend again, and its Replaced, under the same ExecID, is not sent twice).
        self.router.store.mark_answered(a.vid)

    def _resolve_amend(self, order: Order, so: SpotOrder, via: str = "rest",
                       asked_at: float | None = None) -> None:
        """A lost AmendOrder answer, settled by the order's state (caller holds report_lock).
        `asked_at`: when the state was asked for (monotonic). Old figures say the amend never
        landed only in a state asked for past its give-up time: one asked for before may
        predate the amend's landing, however late its answer came. None (a WS item): only
        new figures or a closed order settle it; the polls go on until then."""
        with self._lock:
            a = self._amends.get(so.txid)
        if a is None:
            return
        landed = so.volume == a.qty and (a.price is None or so.price == a.price)
        if landed:
            log.info("%s amend of %s found applied at the venue", a.path, order.oms_cl_ord_id)
            with self._lock:
                self._amends.pop(so.txid, None)
            self._emit_replaced(order, a, via)
        elif (asked_at is not None and asked_at >= a.give_up_at) or not so.is_open:
            with self._lock:
                self._amends.pop(so.txid, None)
            log.warning("%s amend of %s did not take effect; replace %s rejected", a.path,
                        order.oms_cl_ord_id, a.oms_cl)
            text = (f"{a.path} fallback: the replace did not reach the venue" if so.is_open
                    else "too late: order already closed")
            # Journaled as answered with the 35=9, then sent (see `Router.cancel_reject_for`).
            self.router.cancel_reject_for(order, a.vid, a.oms_cl, "2",
                                          BROKER_OPTION if so.is_open else TOO_LATE, text)

    # ---- held orders (no transport up yet) -----------------------------------------------------
    # `should_hold`, `hold` and `unhold` run on OMS session threads, `release_held` on the
    # poller's. `_held_lock` is only ever held for a few deque operations, never across a venue
    # call, so an OMS thread never waits for a release in progress (a REST AddOrder can take
    # seconds: the venue's latency, the client's rate model). The order being released stays
    # at the head of the queue until it has been sent, so an order arriving meanwhile is held
    # behind it, and it is marked (`_releasing`) so that a cancel cannot take it out of the
    # queue as "never sent" while it is on its way to the venue.
    def should_hold(self, fix_path: bool, rest_path: bool) -> bool:
        """True when a new order must wait in the hold queue: holding is on and either no
        transport is up or earlier orders are still held or being released (arrival order is
        kept: a new order never overtakes the one being sent right now)."""
        if self.hold_max_s <= 0:
            return False
        with self._held_lock:
            if self._held or self._releasing is not None:
                return True
        return not fix_path and not rest_path

    def hold(self, order: Order) -> bool:
        """Queue a journaled order; False when the queue is full (the caller rejects it)."""
        with self._held_lock:
            if len(self._held) >= self.hold_max_orders:
                return False
            self._held.append((order, time.monotonic()))
        log.info("order %s held: no transport up (sent when FIX or REST is, within %.1fs)",
                 order.oms_cl_ord_id, self.hold_max_s)
        self._wake.set()
        return True

    def is_held(self, order: Order) -> bool:
        with self._held_lock:
            return any(o is order for o, _ in self._held)

    def releasing(self, order: Order) -> bool:
        """True while `order` is leaving the hold queue (being sent, or rejected as held too
        long): too late to take it back, maybe too early for a cancel at the venue to find
        it."""
        with self._held_lock:
            return self._releasing is order

    def unhold(self, order: Order) -> bool:
        """Take a held order out of the queue (it is being canceled); False if it is not held,
        or is being released right now (then it may be at the venue already: see
        `releasing`)."""
        with self._held_lock:
            if order is self._releasing:
                return False
            for i, (o, _) in enumerate(self._held):
                if o is order:
                    del self._held[i]
                    return True
        return False

    def held_count(self) -> int:
        with self._held_lock:
            return len(self._held)

    def release_held(self) -> None:
        """Send held orders, oldest first, on the path now up; reject those held too long.

        One releaser at a time (a second caller returns at once: the first drains the queue).
        Each order is sent outside `_held_lock` while it stays at the head of the queue, marked
        as being released, and is taken off the queue once `Router.release_held` is done with
        it, whatever happened there: a send that may have left is never made twice."""
        if not self._release_lock.acquire(blocking=False):
            return
        try:
            while True:
                failed_over = self.active()
                rest_up = failed_over and self.rest_ok
                fix_up = (self.router.venue.is_up() and not failed_over
                          and (self.policy is None or self.policy.force != "rest"))
                with self._held_lock:
                    if not self._held:
                        return
                    order, since = self._held[0]
                    held_s = time.monotonic() - since
                    if rest_up:
                        path = "rest"
                    elif fix_up:
                        path = "fix"
                    elif held_s >= self.hold_max_s:
                        path = "expired"
                    else:
                        return
                    self._releasing = order
                try:
                    self.router.release_held(order, path, held_s)
                finally:
                    with self._held_lock:
                        # Still the head: `hold` appends at the tail, `unhold` refuses it.
                        if self._held and self._held[0][0] is order:
                            self._held.popleft()
                        self._releasing = None
        finally:
            self._release_lock.release()

    # ---- reports ------------------------------------------------------------------------------
    def _fields(self, order: Order, txid: str, exec_type: str, ord_status: str, cum: Decimal,
                avg: Decimal, exec_id: str, venue_cl: str | None = None,
                last: tuple[Decimal, Decimal] | None = None) -> Fields:
        leaves = Decimal(0) if state.is_terminal(ord_status) else max(order.qty - cum, Decimal(0))
        f: Fields = {
            "11": venue_cl or order.venue_cl_ord_id, "37": txid, "17": exec_id,
            "150": exec_type, "39": ord_status, "55": order.symbol, "54": order.side,
            "38": _s(order.qty), "40": order.ord_type, "59": order.tif,
            "151": _s(leaves), "14": _s(cum), "6": _s(avg), "60": m.utc_timestamp(),
        }
        if order.price is not None:
            f["44"] = _s(order.price)
        if venue_cl is not None:
            f["41"] = order.venue_cl_ord_id
        if last is not None:
            f["32"], f["31"] = _s(last[0]), _s(last[1])
        return f

    def _reports(self, order: Order, so: SpotOrder) -> list[Fields]:
        """ER fields for what `so` says beyond what `order` records, oldest first."""
        out: list[Fields] = []
        txid = so.txid
        if order.status == state.SENT:
            out.append(self._fields(order, txid, "0", "0", Decimal(0), Decimal(0),
                                    f"R{txid}-0-new"))
        vol = _s(so.vol_exec)
        if so.vol_exec > order.cum_qty:
            delta = so.vol_exec - order.cum_qty
            px = (so.avg_price * so.vol_exec - order.avg_px * order.cum_qty) / delta
            px = px.quantize(Decimal("1e-8"))
            done = so.status == "closed" or so.vol_exec >= so.volume
            status = "2" if done else "1"
            out.append(self._fields(order, txid, "F", status, so.vol_exec, so.avg_price,
                                    f"R{txid}-{vol}-{'filled' if done else 'partial'}",
                                    last=(delta, px)))
        if so.status in ("canceled", "expired") and order.status not in state.TERMINAL:
            cxl = None
            if so.status == "canceled":  # answers our cancel, if one is pending
                with self._lock:
                    cxl = self._cancels.pop(order.venue_cl_ord_id, None)
            code = "4" if so.status == "canceled" else "C"
            out.append(self._fields(order, txid, code, code, so.vol_exec, so.avg_price,
                                    f"R{txid}-{vol}-{so.status}",
                                    venue_cl=cxl.vid if cxl is not None else None))
        return out

    def claim_cancel(self, order: Order) -> str | None:
        """Take `order`'s pending REST/WS cancel as answered by a Canceled report that came
        another way (the venue's FIX session, after failback: see
        `Router._answers_fallback_cancel`); returns the cancel's venue ClOrdID, under which the
        caller reports it, or None when none is pending. Caller holds the router's report
        lock, as for every report, so a poll cannot answer it too."""
        with self._lock:
            c = self._cancels.get(order.venue_cl_ord_id)
            if c is None or c.order is not order:
                return None
            del self._cancels[order.venue_cl_ord_id]
        return c.vid

    def _settle_cancel(self, order: Order, so: SpotOrder) -> None:
        """A cancel still pending once the venue shows the order closed (filled, expired, or
        canceled before we could tell it) is answered too late: a WS cancel without an answer
        followed by a REST "unknown order" leaves no other answer for the OMS. Caller holds
        the router's report lock, and has reported `so` first."""
        if so.is_open:
            return
        with self._lock:
            c = self._cancels.pop(order.venue_cl_ord_id, None)
        if c is None:
            return
        name = state.NAMES.get(order.status, order.status).lower()
        if c.kind == "mass":  # as a venue refusal of one order of a mass cancel: logged only
            self.router.store.mark_answered(c.vid)
            log.warning("cancel of order %s (mass cancel %s): too late, order %s",
                        order.oms_cl_ord_id, c.oms_cl, name)
            return
        self.router.cancel_reject_for(order, c.vid, c.oms_cl, "1", TOO_LATE,
                                      f"too late: order {name}")

    def _emit(self, order: Order, so: SpotOrder, via: str = "rest",
              asked_at: float | None = None) -> None:
        """Report what `so` (the order's state as REST or, `via` "ws", the private WebSocket
        tells it) adds to the order's record; `asked_at`: when a poll asked for it."""
        with self.router.report_lock:  # the order's record cannot move while we read it
            if self._amends:
                self._resolve_amend(order, so, via, asked_at)
            for f in self._reports(order, so):
                self.router.on_venue_report(f, via)
            if self._cancels:
                self._settle_cancel(order, so)

    # ---- WebSocket executions (prompt reports while failed over) -------------------------------
    def on_ws_execution(self, item: dict[str, object]) -> None:
        """One ``executions`` item: the order's state as the venue tells it now, reported
        through the same derivation as a poll (same ExecIDs, so never twice)."""
        exec_type = str(item.get("exec_type", ""))
        txid = item.get("order_id")
        clid = item.get("cl_ord_id")
        if isinstance(txid, str) and isinstance(clid, str):
            # An order of ours placed over WS whose ack was lost: the rate model learns its
            # txid here (only an order it saw charged under that ClOrdID).
            self.client.pair_rate.learn(txid, clid)
        if exec_type in ("pending_new", "amended", "restated", "status"):
            return  # no new state for the OMS (an amend is answered by the REST call)
        status = _WS_STATUS.get(str(item.get("order_status", "")))
        if status is None or not isinstance(txid, str):
            return
        order = self._ws_order(txid, clid)
        if order is None:
            return  # not ours, or already closed here (a poll got there first)
        try:
            so = SpotOrder(
                txid=txid, cl_ord_id=str(item.get("cl_ord_id") or "") or None, status=status,
                side=str(item.get("side", "")), ord_type=str(item.get("order_type", "")),
                pair=order.symbol, price=_dec_or_none(item.get("limit_price")),
                volume=_dec(item.get("order_qty")), vol_exec=(cum := _dec(item.get("cum_qty"))),
                avg_price=_avg_price(item.get("avg_price"), cum), opentm=Decimal(0),
                closetm=None)
        except (TypeError, ValueError, ArithmeticError):
            log.warning("WS executions item for %s not understood: %r", txid, item)
            return
        self._emit(order, so, "ws")

    def _ws_order(self, txid: str, clid: object) -> Order | None:
        """The open order an executions item is about: by txid, or by our ClOrdID when the
        item beats the add_order answer (no txid yet). Looked up by the item's ClOrdID in
        the store's index, O(1); only an item that names none of our orders that way (no
        ClOrdID on it, another desk's order) walks the open orders, under the store's lock,
        which the OMS threads take for every order: a walk per item made each fill of the
        feed cost O(open orders) with that lock held."""
        store = self.router.store
        ref = store.venue_ref(clid) if isinstance(clid, str) and clid else None
        o = None if ref is None else store.orders.get(ref.order_key)
        if o is not None and o.venue_cl_ord_id == clid and o.order_id in (txid, ""):
            return o if o.is_open else None
        return next((o for o in store.open_orders() if o.order_id == txid
                     or (not o.order_id and clid and o.venue_cl_ord_id == clid)), None)

    def _ws_wanted(self) -> bool:
        return bool(self.ws_url) and self.active()

    def _manage_ws(self) -> None:
        """Subscribe to executions while failed over; drop the socket after failback."""
        if self._ws_wanted():
            if self.ws is None:
                log.info("subscribing to WS executions at %s while failed over", self.ws_url)
                self.ws = KrakenWsPrivate(self.ws_url, self.client.get_ws_token,
                                          self.on_ws_execution)
                self.ws.start()
        elif self.ws is not None:
            ws, self.ws = self.ws, None
            ws.stop()
            log.info("WS executions closed (order flow back on FIX)")

    def poll(self, orders: list[Order] | None = None, *, use_open_orders: bool = False) -> bool:
        """Query open orders (all the gateway's, or `orders`) and report state changes; True
        when every one of them is known to the venue's answer.

        ``use_open_orders``: one ``OpenOrders`` call first (every open order of the account,
        whatever their number), then ``QueryOrders`` (50 txids a call) only for orders not in
        it, i.e. closed since. That is one or two REST calls for any realistic book instead of
        one per 50 orders, which is what makes the reconciliation before failback quick."""
        with self._poll_lock:
            ok = self._resolve_unknown()
            if orders is None:
                # REST-routed orders, and FIX-routed ones too while the order flow is on the
                # fallback: then this is the only way the OMS hears of their fills (the FIX
                # resend later repeats them). Not after failback (the poller still runs while
                # fallback requests are unanswered): FIX reports those orders itself, and a
                # poll that saw one closed by a cancel sent over FIX reported it first, as an
                # unsolicited Canceled under the order's own ClOrdID, not the request's.
                # (A FIX order with a REST/WS request of its own unanswered is still polled:
                # its state is what answers that request.)
                fallback_on = self.active()
                with self._lock:
                    asked = {id(r.order) for r in self._cancels.values()}
                    asked |= {id(r.order) for r in self._amends.values()}
                orders = [o for o in self.router.store.open_orders() if o.order_id
                          and (fallback_on or o.transport != "fix" or id(o) in asked)]
                orders += self._closed_with_requests()
            by_txid = {o.order_id: o for o in orders if o.order_id}
            if use_open_orders and by_txid:
                asked_at = time.monotonic()
                try:
                    open_ = self.client.open_orders()
                except KrakenRestError as exc:
                    log.warning("REST OpenOrders failed: %s", exc)
                    return False
                for txid, so in open_.items():
                    order = by_txid.pop(txid, None)
                    if order is not None:
                        self._emit(order, so, asked_at=asked_at)
            txids = list(by_txid)
            for i in range(0, len(txids), 50):
                asked_at = time.monotonic()
                try:
                    found = self.client.query_orders(txids[i:i + 50])
                except KrakenRestError as exc:
                    log.warning("REST QueryOrders failed: %s", exc)
                    ok = False
                    continue
                for txid, so in found.items():
                    if txid in by_txid:
                        self._emit(by_txid[txid], so, asked_at=asked_at)
            return ok

    def _closed_with_requests(self) -> list[Order]:
        """Orders closed at the record (through FIX, say) with a REST/WS cancel or amend
        still pending: polled too, as their state is what answers that request."""
        with self._lock:
            pending = [c.order for c in self._cancels.values()]
            pending += [a.order for a in self._amends.values()]
        seen: set[int] = set()
        out: list[Order] = []
        for o in pending:
            if o.order_id and not o.is_open and id(o) not in seen:
                seen.add(id(o))
                out.append(o)
        return out

    def _routine_poll(self) -> None:
        """The poller's periodic query, skipped while the REST counter model is nearly full:
        a routine poll must never make the reconciliation before failback (or an order
        lookup) wait on the counter. With WS executions on, polling is only the backstop."""
        if self.client.rest_room() < self.REST_RESERVE:
            log.debug("routine REST poll skipped: REST counter near its ceiling")
            return
        self.poll()

    def _resolve_unknown(self) -> bool:
        with self._lock:
            pending = list(self._unresolved.items())
        ok = True
        for clid, (order, since, final_at) in pending:
            asked_at = time.monotonic()  # "not found" is final only if asked past final_at
            try:
                so = self.client.find_order(clid, since_epoch_s=since)
            except KrakenRestError as exc:
                log.warning("REST lookup of order %s failed: %s", clid, exc)
                ok = False
                continue
            if so is None and asked_at < final_at:
                ok = False  # the request may still land: look again at the next poll
                continue
            with self._lock:
                self._unresolved.pop(clid, None)
            if so is not None:
                log.info("order %s found at the venue over REST: txid %s", clid, so.txid)
                self._emit(order, so, asked_at=asked_at)
            else:
                log.warning("order %s is not at the venue: reported rejected", clid)
                f = self._fields(order, "NONE", "8", "8", Decimal(0), Decimal(0),
                                 f"R{clid}-rejected")
                f["103"] = "99"
                f["58"] = (f"{'WS' if order.transport == 'ws' else 'REST'} fallback: the "
                           "order did not reach the venue")
                self.router.on_venue_report(f, "rest")
        return ok

    def reconcile(self) -> bool:
        """Before failing back to FIX: bring every open order up to date over REST, batched
        (one OpenOrders, then QueryOrders 50 at a time for the ones closed since). Not done
        while a REST/WS cancel or replace is pending: only the REST/WS side can answer it
        (the venue's FIX session never heard of it), so the flow stays here until then."""
        t0 = time.monotonic()
        n = sum(1 for o in self.router.store.open_orders() if o.transport in ("rest", "ws"))
        ok = self.poll(use_open_orders=True)
        pending = self._requests_pending()
        log.info("reconciled %d open REST-routed order(s) before failback to FIX in %.2fs: %s",
                 n, time.monotonic() - t0, "ok" if ok and not pending else
                 "incomplete" if not ok else f"{pending} cancel/replace request(s) pending")
        return ok and not pending

    def _requests_pending(self) -> int:
        """Orders looked up, cancels and amends sent over REST/WS with no answer yet: the
        poller polls while there are any, failed over or not."""
        with self._lock:
            return len(self._unresolved) + len(self._cancels) + len(self._amends)

    # ---- health and polling thread -------------------------------------------------------------
    def check_status(self) -> bool:
        try:
            status = self.client.system_status()
        except KrakenRestError as exc:
            status = f"unreachable ({exc})"
        ok = status == "online"
        if ok != self.rest_ok:
            log.info("REST fallback %s: SystemStatus %s", "available" if ok else "unavailable",
                     status)
        self.rest_ok = ok
        return ok

    def start(self) -> None:
        # REST-routed orders journaled before a restart with no venue answer yet: look them up
        # by ClOrdID (the FIX reconciliation only asks about FIX-routed ones).
        # Each was sent before now, so its deadline is at most one deadline from now.
        since = Decimal(time.time_ns()) / Decimal(1_000_000_000) - 86_400
        final_at = time.monotonic() + self.request_deadline_s
        store = self.router.store
        with self._lock:
            for o in store.open_orders():
                if o.transport in ("rest", "ws") and o.status == state.SENT:
                    self._unresolved.setdefault(o.venue_cl_ord_id, (o, since, final_at))
        self._take_up_requests(final_at)
        # Orders still held when the gateway stopped: held again (from now), in journal order.
        # The OMS acceptor runs before this: an order held since is queued already, and
        # queuing it twice would send it twice.
        held = [o for o in store.open_orders() if o.transport == "held"]
        with self._held_lock:
            queued = {id(o) for o, _ in self._held}
            for o in held:
                if id(o) in queued:
                    continue
                if self.hold_max_s > 0 and len(self._held) < self.hold_max_orders:
                    self._held.append((o, time.monotonic()))
                else:
                    self._held.append((o, time.monotonic() - self.hold_max_s))  # rejected now
        # The order flow was on REST when the gateway stopped: resume there (FIX, if it is
        # up, is taken back through the normal reconcile-then-failback rule).
        if (self.policy is not None and self.policy.force == "auto"
                and store.last_transport == "rest"):
            self.policy.active = "rest"
            log.warning("order flow resumes on REST (journaled before the restart); back to "
                        "FIX after reconciliation once FIX is stable")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rest-fallback", daemon=True)
        self._thread.start()

    def _take_up_requests(self, give_up_at: float) -> None:
        """REST/WS cancels and amends journaled before a restart with no answer recorded: the
        OMS is owed one, and the venue may or may not have them. `_cancels` and `_amends` are
        rebuilt from the journal, so the poller settles each through the usual paths (the
        order's state: canceled, closed, the amend's figures or, past `give_up_at`, the old
        ones). A cancel is also sent again over REST, as it may never have left (cancelling
        twice is harmless); an amend never is (its figures tell whether it landed)."""
        store = self.router.store
        for vid, req in sorted(store.unanswered_fallback_requests().items(),
                               key=lambda kv: kv[1].journaled_ms):
            ref = store.venue_ref(vid)
            order = None if ref is None else store.orders.get(ref.order_key)
            if ref is None or order is None:
                continue  # evicted meanwhile: nothing left to answer for
            with self._lock:
                if ref.kind in ("cancel", "mass"):
                    c = _Cancel(order, vid, ref.oms_cl_ord_id, ref.kind)
                    self._cancels[order.venue_cl_ord_id] = c
                    if order.is_open:
                        self._resend.append(c)
                elif ref.kind == "amend" and order.order_id and req.qty is not None:
                    self._amends[order.order_id] = _Amend(
                        order, vid, ref.oms_cl_ord_id, order.venue_cl_ord_id, req.qty,
                        req.price, give_up_at, req.transport.upper())
                else:
                    continue
            log.warning("%s %s of order %s (%s) journaled before the restart has no answer: "
                        "%s", ref.kind, ref.oms_cl_ord_id, order.oms_cl_ord_id, req.transport,
                        "sent again over REST" if ref.kind != "amend" and order.is_open
                        else "its outcome is looked up over REST")

    def _resend_cancels(self) -> None:
        """Send the cancels `_take_up_requests` found again over REST (the poller's step). A
        refusal answers the OMS; "unknown order" (closed at the venue) is left to the poll;
        an outcome not known is tried again at the next tick."""
        with self._lock:
            todo, self._resend = self._resend, []
        again: list[_Cancel] = []
        for c in todo:
            o = c.order
            with self._lock:
                pending = self._cancels.get(o.venue_cl_ord_id) is c
            if not pending or not o.is_open:
                continue  # answered meanwhile, or the poll settles it
            try:
                self._rest_cancel(o)
            except KrakenRestError as exc:
                if exc.ambiguous:
                    log.warning("REST CancelOrder of %s (sent again) outcome unknown (%s)",
                                o.oms_cl_ord_id, exc)
                    again.append(c)
                    continue
                reason, text = _rest_refusal(exc)
                if reason == TOO_LATE:
                    continue  # the order is closed at the venue: the poll settles the cancel
                with self._lock:
                    self._cancels.pop(o.venue_cl_ord_id, None)
                if c.kind == "mass":
                    self.router.store.mark_answered(c.vid)
                    log.warning("cancel of order %s (mass cancel %s) refused: %s",
                                o.oms_cl_ord_id, c.oms_cl, text)
                else:
                    self.router.cancel_reject_for(o, c.vid, c.oms_cl, "1", reason, text)
                continue
            except Exception:
                log.exception("REST CancelOrder of %s (sent again) failed unexpectedly",
                              o.oms_cl_ord_id)
                again.append(c)
                continue
            log.warning("cancel %s of order %s sent again over REST after the restart",
                        c.oms_cl, o.oms_cl_ord_id)
        if again:
            with self._lock:
                self._resend = again + self._resend
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.ws is not None:
            self.ws.stop()
            self.ws = None

    def kick(self) -> None:
        """Wake the poller now (a held order may go, FIX just logged on)."""
        self._wake.set()

    def record_switch(self, old: str, new: str) -> None:
        """Journal a switch (the policy's on_switch calls this first) and act on it now."""
        self.router.store.record_switch(old, new)
        self._wake.set()

    def _run(self) -> None:
        next_status = 0.0
        while not self._stop.is_set():
            self._wake.clear()
            now = time.monotonic()
            if now >= next_status:
                self._step("REST status check", self.check_status)
                next_status = now + self.status_interval_s
            if self.policy is not None:
                self._step("transport policy", self.policy.evaluate)
            self._step("WS executions", self._manage_ws)
            if self.held_count():
                self._step("held orders release", self.release_held)
            if self._resend:
                self._step("cancels sent again", self._resend_cancels)
            self._step("REST poll", self._poll_if_due)
            # The policy is looked at every tick whatever the poll interval (a slow poll must
            # not slow failover), more often while orders are held (they go the moment a path
            # is up); a kick (held order, cancel, FIX logon) wakes the loop at once.
            nap = 0.05 if self.held_count() else min(self.poll_interval_s, 0.25)
            self._wake.wait(nap)

    def _step(self, name: str, step: Callable[[], object]) -> None:
        """One step of the poller's tick, on its own: a failure in one (a bug, a venue answer
        we cannot read) must not skip the others, or failback, the WS, held orders and the
        polls all stop with it. Logged with its traceback when it starts failing (or fails
        differently), then quietly until it works again."""
        try:
            step()
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            if self._step_errors.get(name) != text:
                self._step_errors[name] = text
                log.exception("REST fallback poller: %s failed", name)
            else:
                log.debug("REST fallback poller: %s failed again: %s", name, text)
            return
        if self._step_errors.pop(name, None) is not None:
            log.info("REST fallback poller: %s works again", name)

    def _poll_if_due(self) -> None:
        if ((self.active() or self._requests_pending())
                and time.monotonic() >= self._next_poll):
            try:
                self._routine_poll()
            finally:
                self._next_poll = time.monotonic() + self.poll_interval_s

def _dec(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str) and not isinstance(value, bool):
        return Decimal(value)
    raise TypeError(f"not a decimal: {value!r}")


def _avg_price(value: object, cum: Decimal) -> Decimal:
    """A WS item's average price: it may be left out while nothing is filled (it means
    nothing then), but a fill without it is not understood (TypeError), never priced 0."""
    return Decimal(0) if value is None and not cum else _dec(value)


def _dec_or_none(value: object) -> Decimal | None:
    return None if value is None else _dec(value)
