"""Where the router reports what happened to orders (the event stream listens here).

A protocol, so routing does not depend on how events are serialized or served; the default
does nothing, which keeps the order path free of work nobody asked for.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from gateway.orders.model import Order
from gateway.risk.gate import GateDecision, GateOrder


class RoutingSink(Protocol):
    def order_accepted(self, order: Order) -> None: ...
    def order_rejected(self, oms_session: str, cl_ord_id: str, symbol: str, reason: str,
                       text: str) -> None: ...
    def execution(self, order: Order, exec_type: str, ord_status: str, exec_id: str,
                  last_qty: Decimal | None, last_px: Decimal | None) -> None: ...
    def cancel_rejected(self, oms_session: str, cl_ord_id: str, orig_cl_ord_id: str,
                        text: str) -> None: ...
    def gate_decided(self, order: GateOrder, cl_ord_id: str, decision: GateDecision) -> None: ...


class NullSink:
    def gate_decided(self, order: GateOrder, cl_ord_id: str, decision: GateDecision) -> None:
        pass

    def order_accepted(self, order: Order) -> None:
        pass

    def order_rejected(self, oms_session: str, cl_ord_id: str, symbol: str, reason: str,
                       text: str) -> None:
        pass

    def execution(self, order: Order, exec_type: str, ord_status: str, exec_id: str,
                  last_qty: Decimal | None, last_px: Decimal | None) -> None:
        pass

    def cancel_rejected(self, oms_session: str, cl_ord_id: str, orig_cl_ord_id: str,
                        text: str) -> None:
        pass
