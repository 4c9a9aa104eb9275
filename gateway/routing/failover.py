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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, TypeAlias

from gateway.fix import messages as m
from gateway.fix.messages import Fields
from gateway.orders import state
from gateway.orders.model import Order
from gateway.transports.kraken_spot_rest import KrakenRestError, KrakenSpotRest, SpotOrder

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


def _s(d: Decimal) -> str:
    return format(d.normalize(), "f") if d else "0"


class TransportPolicy:
    """Which transport carries new orders and cancels; thread-safe, evaluated by a timer."""

    def __init__(self, fix_up: Callable[[], bool], rest_up: Callable[[], bool], *,
                 failover_after_s: float, failback_after_s: float, on_switch: SwitchCallback,
                 before_failback: Callable[[], bool] | None = None, force: Force = "auto",
                 clock: Callable[[], float] = time.monotonic) -> None:
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
            log.info("transport policy: force=%s", force)
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
                    reason = f"FIX trading session down for {steady:.1f}s"
            elif self.active == "rest" and fix_up and steady >= self.failback_after_s:
                want = "fix"
                reason = f"FIX trading session logged on and stable for {steady:.1f}s"
            if want == self.active:
                return self.active
            if want == "fix" and self._before_failback is not None:
                if not self._before_failback():
                    if self._rest_up():
                        log.warning("failback to FIX postponed: REST-routed orders not "
                                    "reconciled yet")
                        return self.active
                    reason += "; REST unreachable, FIX resends and status requests reconcile"
                else:
                    reason += "; REST-routed orders reconciled"
            old, self.active = self.active, want
        log.warning("transport switch %s -> %s: %s", old, want, reason)
        try:
            self._on_switch(old, want, reason, automatic)
        except Exception:
            log.exception("transport switch callback failed")
        return want


class RestFallback:
    """Order entry over Kraken spot REST for the router, and the poller that reports back."""

    def __init__(self, router: Router, client: KrakenSpotRest, poll_interval_s: float = 0.5,
                 status_interval_s: float = 5.0) -> None:
        self.router = router
        self.client = client
        self.poll_interval_s = poll_interval_s
        self.status_interval_s = status_interval_s
        self.policy: TransportPolicy | None = None
        self.rest_ok = False
        self._cancels: dict[str, str] = {}  # order venue ClOrdID -> pending cancel venue ClOrdID
        self._unresolved: dict[str, tuple[Order, Decimal]] = {}  # ambiguous AddOrder, by ClOrdID
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
        try:
            res = self.client.add_order(order.symbol, side, ord_type, order.qty,  # type: ignore[arg-type]
                                        order.price, tif, order.venue_cl_ord_id)  # type: ignore[arg-type]
        except KrakenRestError as exc:
            if exc.ambiguous:
                log.warning("REST AddOrder %s outcome unknown (%s); looking it up",
                            order.venue_cl_ord_id, exc)
                with self._lock:
                    self._unresolved[order.venue_cl_ord_id] = (order, sent_at - 5)
                return None
            d = exc.decision
            return d.ord_rej_reason, f"REST fallback: {d.text}"
        log.info("order %s placed over REST: txid %s%s", order.oms_cl_ord_id, res.txid,
                 " (recovered after a retry)" if res.recovered else "")
        if res.txid is None:
            return None
        return self._fields(order, res.txid, "0", "0", Decimal(0), Decimal(0),
                            f"R{res.txid}-0-new")

    def cancel(self, order: Order, oms_cl: str) -> tuple[str, str] | None:
        """Cancel over REST; None when sent (the next poll reports it), else the
        (CxlRejReason, Text) of a cancel reject."""
        vid = self.router.store.venue_ids.next()
        self.router.store.add_request(vid, (order.oms_session, order.oms_history[0]), oms_cl,
                                      "cancel")
        with self._lock:
            self._cancels[order.venue_cl_ord_id] = vid
        try:
            if order.order_id:
                self.client.cancel_order(txid=order.order_id)
            else:
                self.client.cancel_order(cl_ord_id=order.venue_cl_ord_id)
        except KrakenRestError as exc:
            with self._lock:
                self._cancels.pop(order.venue_cl_ord_id, None)
            unknown = bool(exc.errors) and exc.errors[0].startswith("EOrder:Unknown order")
            return (TOO_LATE if unknown else BROKER_OPTION), f"REST fallback: {exc.decision.text}"
        # The poller reports the cancel (not polled here: the REST counter model may make a
        # query wait, and this is the OMS session's thread).
        return None

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
            with self._lock:
                cxl = self._cancels.pop(order.venue_cl_ord_id, None)
            code = "4" if so.status == "canceled" else "C"
            out.append(self._fields(order, txid, code, code, so.vol_exec, so.avg_price,
                                    f"R{txid}-{vol}-{so.status}",
                                    venue_cl=cxl if code == "4" else None))
        return out

    def _emit(self, order: Order, so: SpotOrder) -> None:
        with self.router.report_lock:  # the order's record cannot move while we read it
            for f in self._reports(order, so):
                self.router.on_venue_report(f, "rest")

    def poll(self, orders: list[Order] | None = None) -> bool:
        """Query open REST-routed orders (all, or `orders`) and report state changes; True when
        every one of them is known to the venue's answer."""
        with self._poll_lock:
            ok = self._resolve_unknown()
            if orders is None:
                # REST-routed orders, and FIX-routed ones too: while FIX is down this is the
                # only way the OMS hears of their fills (the FIX resend later repeats them).
                orders = [o for o in self.router.store.open_orders() if o.order_id]
            by_txid = {o.order_id: o for o in orders if o.order_id}
            txids = list(by_txid)
            for i in range(0, len(txids), 50):
                try:
                    found = self.client.query_orders(txids[i:i + 50])
                except KrakenRestError as exc:
                    log.warning("REST QueryOrders failed: %s", exc)
                    ok = False
                    continue
                for txid, so in found.items():
                    if txid in by_txid:
                        self._emit(by_txid[txid], so)
            return ok

    def _resolve_unknown(self) -> bool:
        with self._lock:
            pending = list(self._unresolved.items())
        ok = True
        for clid, (order, since) in pending:
            try:
                so = self.client.find_order(clid, since_epoch_s=since)
            except KrakenRestError as exc:
                log.warning("REST lookup of order %s failed: %s", clid, exc)
                ok = False
                continue
            with self._lock:
                self._unresolved.pop(clid, None)
            if so is not None:
                log.info("order %s found at the venue over REST: txid %s", clid, so.txid)
                self._emit(order, so)
            else:
                log.warning("order %s is not at the venue: reported rejected", clid)
                f = self._fields(order, "NONE", "8", "8", Decimal(0), Decimal(0),
                                 f"R{clid}-rejected")
                f["103"] = "99"
                f["58"] = "REST fallback: the order did not reach the venue"
                self.router.on_venue_report(f, "rest")
        return ok

    def reconcile(self) -> bool:
        """Before failing back to FIX: bring every REST-routed open order up to date."""
        n = sum(1 for o in self.router.store.open_orders() if o.transport == "rest")
        ok = self.poll()
        log.info("reconciled %d open REST-routed order(s) before failback to FIX: %s", n,
                 "ok" if ok else "incomplete")
        return ok

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
        since = Decimal(time.time_ns()) / Decimal(1_000_000_000) - 86_400
        with self._lock:
            for o in self.router.store.open_orders():
                if o.transport == "rest" and o.status == state.SENT:
                    self._unresolved.setdefault(o.venue_cl_ord_id, (o, since))
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rest-fallback", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        next_status = 0.0
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_status:
                    self.check_status()
                    next_status = now + self.status_interval_s
                if self.policy is not None:
                    self.policy.evaluate()
                with self._lock:
                    unresolved = bool(self._unresolved)
                if self.active() or unresolved:
                    self.poll()
            except Exception:
                log.exception("REST fallback poller")
            self._stop.wait(self.poll_interval_s)
