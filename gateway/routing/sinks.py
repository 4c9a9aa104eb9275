"""Where the router reports what happened to orders (the event stream listens here).

A protocol, so routing does not depend on how events are serialized or served; the default
does nothing, which keeps the order path free of work nobody asked for. `fan_out` puts several
sinks (events, metrics) behind the one the router calls.

The router hands over what it holds at each call (the order as the OMS sent it, the order's
record, the transport a report came over) rather than a summary: an event subscriber filters
and audits on those values, and only the sink knows which of them its consumers need.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Protocol

from gateway.orders.model import Order
from gateway.risk.gate import GateDecision, GateOrder
from gateway.risk.validation import OrderInput

log = logging.getLogger("fixgw.routing")


class RoutingSink(Protocol):
    def order_accepted(self, order: Order) -> None: ...

    def order_rejected(self, oms_session: str, cl_ord_id: str, symbol: str, reason: str,
                       text: str, order: OrderInput | None = None) -> None:
        """The gateway refused a new order: `reason` is the OrdRejReason (103) and `text` the
        Text (58) sent to the OMS; `order` the order's fields as the OMS sent them (unparsed:
        the reject may be about one of them)."""

    def execution(self, order: Order, exec_type: str, ord_status: str, exec_id: str,
                  last_qty: Decimal | None, last_px: Decimal | None,
                  transport: str = "fix") -> None:
        """A venue report applied to `order`; `transport` is what it came over: "fix", "rest"
        or "ws" (the REST fallback and its private WebSocket), or "held" (written by the
        gateway for an order it held and never sent)."""

    def cancel_rejected(self, oms_session: str, cl_ord_id: str, orig_cl_ord_id: str,
                        text: str, *, order: Order | None = None,
                        response_to: str | None = None, reason: str | None = None,
                        ord_status: str | None = None, order_id: str | None = None) -> None:
        """A cancel/replace refused (by the gateway or the venue), or a gateway-initiated
        cancel not sent. `order` is the order's record when the request named a known one;
        `response_to` (434), `reason` (102), `ord_status` (39) and `order_id` (37) are the
        values of the OrderCancelReject where there is one (None: not given; the sink may
        derive OrdStatus and OrderID from `order`)."""

    def gate_decided(self, order: GateOrder, cl_ord_id: str, decision: GateDecision,
                     amend: bool = False) -> None: ...
    def cancel_requested(self, order: Order, cl_ord_id: str, by: str, text: str) -> None: ...


class NullSink:
    def gate_decided(self, order: GateOrder, cl_ord_id: str, decision: GateDecision,
                     amend: bool = False) -> None:
        pass

    def order_accepted(self, order: Order) -> None:
        pass

    def order_rejected(self, oms_session: str, cl_ord_id: str, symbol: str, reason: str,
                       text: str, order: OrderInput | None = None) -> None:
        pass

    def execution(self, order: Order, exec_type: str, ord_status: str, exec_id: str,
                  last_qty: Decimal | None, last_px: Decimal | None,
                  transport: str = "fix") -> None:
        pass

    def cancel_rejected(self, oms_session: str, cl_ord_id: str, orig_cl_ord_id: str,
                        text: str, *, order: Order | None = None,
                        response_to: str | None = None, reason: str | None = None,
                        ord_status: str | None = None, order_id: str | None = None) -> None:
        pass

    def cancel_requested(self, order: Order, cl_ord_id: str, by: str, text: str) -> None:
        pass


class FanoutSink:
    """Several sinks behind the router's one ``sink`` (the event stream and the metrics).

    Each call goes to every sink in order; a sink that raises is logged and does not keep the
    others, or the order path, from running. Use `fan_out`, which does not wrap a lone sink.
    """

    def __init__(self, sinks: tuple[RoutingSink, ...]) -> None:
        self.sinks = sinks

    def order_accepted(self, order: Order) -> None:
        for s in self.sinks:
            try:
                s.order_accepted(order)
            except Exception:
                log.exception("routing sink %r failed on order_accepted", s)

    def order_rejected(self, oms_session: str, cl_ord_id: str, symbol: str, reason: str,
                       text: str, order: OrderInput | None = None) -> None:
        for s in self.sinks:
            try:
                s.order_rejected(oms_session, cl_ord_id, symbol, reason, text, order)
            except Exception:
                log.exception("routing sink %r failed on order_rejected", s)

    def execution(self, order: Order, exec_type: str, ord_status: str, exec_id: str,
                  last_qty: Decimal | None, last_px: Decimal | None,
                  transport: str = "fix") -> None:
        for s in self.sinks:
            try:
                s.execution(order, exec_type, ord_status, exec_id, last_qty, last_px, transport)
            except Exception:
                log.exception("routing sink %r failed on execution", s)

    def cancel_rejected(self, oms_session: str, cl_ord_id: str, orig_cl_ord_id: str,
                        text: str, *, order: Order | None = None,
                        response_to: str | None = None, reason: str | None = None,
                        ord_status: str | None = None, order_id: str | None = None) -> None:
        for s in self.sinks:
            try:
                s.cancel_rejected(oms_session, cl_ord_id, orig_cl_ord_id, text, order=order,
                                  response_to=response_to, reason=reason,
                                  ord_status=ord_status, order_id=order_id)
            except Exception:
                log.exception("routing sink %r failed on cancel_rejected", s)

    def gate_decided(self, order: GateOrder, cl_ord_id: str, decision: GateDecision,
                     amend: bool = False) -> None:
        for s in self.sinks:
            try:
                s.gate_decided(order, cl_ord_id, decision, amend)
            except Exception:
                log.exception("routing sink %r failed on gate_decided", s)

    def cancel_requested(self, order: Order, cl_ord_id: str, by: str, text: str) -> None:
        for s in self.sinks:
            try:
                s.cancel_requested(order, cl_ord_id, by, text)
            except Exception:
                log.exception("routing sink %r failed on cancel_requested", s)


def fan_out(*sinks: RoutingSink | None) -> RoutingSink:
    """One sink for all of ``sinks`` (None and NullSink dropped; FanoutSinks flattened): a
    NullSink when none is left, the sink itself when one is (no wrapper, no extra call)."""
    flat: list[RoutingSink] = []
    for s in sinks:
        if isinstance(s, FanoutSink):
            flat.extend(s.sinks)
        elif s is not None and type(s) is not NullSink:  # a subclass does something
            flat.append(s)
    if not flat:
        return NullSink()
    if len(flat) == 1:
        return flat[0]
    return FanoutSink(tuple(flat))
