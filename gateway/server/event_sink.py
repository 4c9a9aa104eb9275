"""Turns what the gateway does into normalized events on the EventLog.

One object listens to the router (orders, reports, cancel rejects, gate decisions), the session
status board (logon/logout) and the market-data feed (snapshots, deltas, trades, top of book),
and publishes each as a `fixgw.v1.Event`.

On the thread that produced the fact (a QuickFIX callback) it only states the event as an
`EventSpec` (a builder's name and its arguments as plain values: Decimals as their strings, a
source as its `(kind, session)` tuple) and hands it to the publisher (`publish_later`, a deque
append of ~1-2 µs); building, sequencing, journaling and serving happen off that thread —
in the event process by default (`gateway.events.process`). Building a protobuf event in Python
costs 5-20 µs on the cold cache of a callback: measured with tools/bench_fix.py, doing it inline
doubled the gateway's CPU per order. An error while building is logged and the event dropped;
it can never reach the order path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Literal

from gateway.events import builders as b
from gateway.events.publisher import EventPublisher, EventSpec
from gateway.fix.application import SessionStatus
from gateway.marketdata.book import Book
from gateway.marketdata.fix_md import BID, DELETE, OFFER, TRADE, MdEntry
from gateway.orders import state
from gateway.orders.model import Order
from gateway.risk.gate import GateDecision, GateOrder
from gateway.risk.validation import ORD_REJ_REASON_NAMES, OrderInput

log = logging.getLogger("fixgw.events")

_ZERO = Decimal(0)
_SESSION_KINDS: dict[str, Literal["logon", "logout"]] = {"logged_on": "logon",
                                                         "logged_out": "logout"}


Source = tuple[str, str]

# Where a venue report came from when not over the FIX trading session: the REST fallback,
# its private WebSocket (named like the market-data WebSocket: the same Kraken spot API v2),
# or the gateway itself, which writes the report of an order it held and never sent.
REST_SOURCE: Source = ("rest", "kraken-spot-rest")
WS_SOURCE: Source = ("ws", "kraken-spot-ws-v2")
HELD_SOURCE: Source = ("gateway", "router")
_REPORT_SOURCES: dict[str, Source] = {"rest": REST_SOURCE, "ws": WS_SOURCE,
                                      "held": HELD_SOURCE}

# FIX values the event builders map; anything else from the wire is left out of the event
# (a builder refuses an unknown value, which would drop the whole event).
_SIDES = frozenset({"1", "2"})
_ORD_TYPES = frozenset({"1", "2", "3", "4"})
_TIFS = frozenset({"0", "1", "2", "3", "4", "6"})
_ORD_STATUSES = frozenset("012346789ABCDE")
_RESPONSE_TO = frozenset({"1", "2"})


def _s(value: Decimal | None) -> str | None:
    """A Decimal as the plain value a spec carries."""
    return None if value is None else str(value)


def _wire_decimal(value: str | None) -> str | None:
    """A price or quantity as the OMS sent it, if it is a finite decimal; else None (the
    reject may be about exactly that field, and the event is not to be lost over it)."""
    if not value:
        return None
    try:
        d = Decimal(value)
    except ArithmeticError:
        return None
    return format(d, "f") if d.is_finite() else None


def _one_of(allowed: frozenset[str], value: str | None) -> str | None:
    return value if value in allowed else None


def _int_code(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and len(value) < 10 else None


def _levels(levels: Sequence[tuple[Decimal, Decimal]]) -> list[tuple[str, str]]:
    return [(str(p), str(q)) for p, q in levels]


def _is_number(value: str) -> bool:
    if value in ("inf", "-inf", "undefined"):
        return True
    try:
        Decimal(value)
    except ArithmeticError:
        return False
    return True


class EventSink:
    def __init__(self, events: EventPublisher, venue_session: str, md_session: str) -> None:
        self.events = events
        self._venue: Source = ("fix", venue_session)
        self._md: Source = ("fix", md_session)
        self._oms_sources: dict[str, Source] = {}
        self._tops: dict[str, tuple[object, object]] = {}
        self._publish = events.publish_later

    def _oms(self, session: str) -> Source:
        src = self._oms_sources.get(session)
        if src is None:
            src = self._oms_sources[session] = ("fix", session)
        return src

    # ---- RoutingSink ---------------------------------------------------------------------------
    def order_accepted(self, order: Order) -> None:
        now = time.time_ns()
        self._publish(("order_event", {
            "event_type": "accepted", "source": self._oms(order.oms_session),
            "symbol": order.symbol, "account": order.account, "cl_ord_id": order.oms_cl_ord_id,
            "venue_cl_ord_id": order.venue_cl_ord_id, "side": order.side,
            "ord_type": order.ord_type, "time_in_force": order.tif, "price": _s(order.price),
            "order_qty": str(order.qty), "gateway_receive_time_ns": now}))

    def order_rejected(self, oms_session: str, cl_ord_id: str, symbol: str, reason: str,
                       text: str, order: OrderInput | None = None) -> None:
        """REJECTED with what the OMS sent, as far as it parses: an `accounts` filter must
        find a desk's rejects, and a consumer must see what was refused, not only that
        something was. `reject_reason` is the OrdRejReason's short name (as the metrics'
        reject counter has it); `text` the sentence the OMS got."""
        spec: dict[str, object] = {
            "event_type": "rejected", "source": self._oms(oms_session), "symbol": symbol,
            "cl_ord_id": cl_ord_id, "ord_status": state.REJECTED,
            "ord_rej_reason": _int_code(reason),
            "reject_reason": ORD_REJ_REASON_NAMES.get(reason, reason), "text": text}
        if order is not None:
            spec.update(
                account=order.account or "", side=_one_of(_SIDES, order.side),
                ord_type=_one_of(_ORD_TYPES, order.ord_type),
                time_in_force=_one_of(_TIFS, order.tif),
                order_qty=_wire_decimal(order.qty), price=_wire_decimal(order.price))
        self._publish(("order_event", spec))

    def execution(self, order: Order, exec_type: str, ord_status: str, exec_id: str,
                  last_qty: Decimal | None, last_px: Decimal | None,
                  transport: str = "fix") -> None:
        """EXECUTION_REPORT, from the source the report came over: a `source_kinds` or
        `sessions` filter, and an auditor, must be able to tell a venue FIX report from one
        derived from REST/WS or written by the gateway for a held order."""
        self._publish(("order_event", {
            "event_type": "execution_report",
            "source": self._venue if transport == "fix" else _REPORT_SOURCES.get(
                transport, self._venue),
            "symbol": order.symbol,
            "account": order.account, "cl_ord_id": order.oms_cl_ord_id,
            "venue_cl_ord_id": order.venue_cl_ord_id, "order_id": order.order_id,
            "exec_id": exec_id, "exec_type": exec_type, "ord_status": ord_status,
            "side": order.side, "ord_type": order.ord_type, "price": _s(order.price),
            "order_qty": str(order.qty), "cum_qty": str(order.cum_qty),
            "leaves_qty": str(order.leaves_qty), "avg_px": _s(order.avg_px),
            "last_px": _s(last_px), "last_qty": _s(last_qty)}))

    def cancel_rejected(self, oms_session: str, cl_ord_id: str, orig_cl_ord_id: str,
                        text: str, *, order: Order | None = None,
                        response_to: str | None = None, reason: str | None = None,
                        ord_status: str | None = None, order_id: str | None = None) -> None:
        """CANCEL_REJECT with the order's ids, status, symbol, account and side where the
        request named a known order, so it can be matched to the order and filtered like the
        order's other events. OrdStatus, when not given, is what the gateway's own 35=9 says:
        Rejected for no order, PendingNew for one the venue has not acknowledged yet."""
        if ord_status is None:
            ord_status = (state.REJECTED if order is None else state.PENDING_NEW
                          if order.status == state.SENT else order.status)
        if not order_id:
            order_id = order.order_id if order is not None and order.order_id else "NONE"
        self._publish(("cancel_reject", {
            "source": self._oms(oms_session), "cl_ord_id": cl_ord_id,
            "orig_cl_ord_id": orig_cl_ord_id, "text": text,
            "symbol": order.symbol if order is not None else "",
            "account": order.account if order is not None else "",
            "side": order.side if order is not None and order.side in _SIDES else None,
            "venue_orig_cl_ord_id": order.venue_cl_ord_id if order is not None else "",
            "order_id": order_id, "ord_status": _one_of(_ORD_STATUSES, ord_status),
            "response_to": _one_of(_RESPONSE_TO, response_to),
            "cxl_rej_reason": _int_code(reason)}))

    def cancel_requested(self, order: Order, cl_ord_id: str, by: str, text: str) -> None:
        self._publish(("order_event", {
            "event_type": "cancel_requested", "source": ("gateway", by),
            "symbol": order.symbol, "account": order.account, "cl_ord_id": cl_ord_id,
            "orig_cl_ord_id": order.oms_cl_ord_id,
            "venue_orig_cl_ord_id": order.venue_cl_ord_id, "order_id": order.order_id,
            "side": order.side, "order_qty": str(order.qty), "price": _s(order.price),
            "text": text}))

    def gate_decided(self, order: GateOrder, cl_ord_id: str, decision: GateDecision,
                     amend: bool = False) -> None:
        self._publish(("gate_decision", {
            "rule": decision.rule or "", "action": decision.action,
            "reasons": decision.reasons,
            # Numeric figures only; descriptive ones ("9.0x by top_accounts") are in the reasons.
            "figures": [(n, v, u, lim or None) for n, v, u, lim in decision.figure_details
                        if _is_number(v)],
            "symbol": order.symbol, "account": order.account, "cl_ord_id": cl_ord_id,
            "side": order.side, "order_qty": str(order.qty), "price": _s(order.price),
            "reduced_qty": _s(decision.reduced_qty), "stale_inputs": decision.stale_inputs,
            "source": self._oms(order.oms_session)}))

    # ---- session status ------------------------------------------------------------------------
    def session_changed(self, status: SessionStatus, old_state: str, reason: str) -> None:
        kind = _SESSION_KINDS.get(status.state)
        if kind is None:
            return
        self._publish(("session_event", {
            "status": kind, "source": ("fix", status.key),
            "text": reason or f"{old_state} -> {status.state}"}))

    def set_md_source(self, source: b.EventSource, switch: EventSpec | None = None) -> None:
        """The market-data failover moved the books to another source (FIX MD <-> WS): the
        book, trade and top-of-book events from now on name it. `switch` (the transport_switch
        event's spec) is queued with them, so it sorts between the two sources'."""
        self._md = (source.kind, source.session)
        if switch is not None:
            self._publish(switch)

    # ---- market data (MdListener) ----------------------------------------------------------------
    def on_snapshot(self, symbol: str, book: Book) -> None:
        d = book.depth(1000)
        self._publish(("book_snapshot", {
            "source": self._md, "symbol": symbol,
            "bids": [(str(lv.price), str(lv.qty)) for lv in d.bids],
            "asks": [(str(lv.price), str(lv.qty)) for lv in d.asks]}))
        self._top(symbol, book)

    def on_update(self, symbol: str, book: Book, entries: Sequence[MdEntry]) -> None:
        bids = [(e.price, _ZERO if e.action == DELETE else e.qty) for e in entries
                if e.entry_type == BID]
        asks = [(e.price, _ZERO if e.action == DELETE else e.qty) for e in entries
                if e.entry_type == OFFER]
        if bids or asks:
            self._publish(("book_delta", {"source": self._md, "symbol": symbol,
                                          "bids": _levels(bids), "asks": _levels(asks)}))
        for e in entries:
            if e.entry_type == TRADE:
                side = {"1": "buy", "2": "sell"}.get(e.aggressor or "")
                self._publish(("trade", {
                    "source": self._md, "symbol": symbol, "price": str(e.price),
                    "qty": str(e.qty), "aggressor_side": side}))
        self._top(symbol, book)

    def on_integrity(self, symbol: str, reason: str) -> None:
        pass  # logged by the feed; the fresh snapshot that follows is published

    def _top(self, symbol: str, book: Book) -> None:
        top = book.top()
        key = (top.bid, top.ask)
        if self._tops.get(symbol) == key:
            return
        self._tops[symbol] = key
        self._publish(("top_of_book", {
            "source": self._md, "symbol": symbol,
            "bid_price": str(top.bid.price) if top.bid else None,
            "bid_qty": str(top.bid.qty) if top.bid else None,
            "ask_price": str(top.ask.price) if top.ask else None,
            "ask_qty": str(top.ask.qty) if top.ask else None}))
