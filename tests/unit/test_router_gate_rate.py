"""The router and the gate's order rate (max_orders_per_s), in process (the venue session is a
recorder, as in test_router_doubt): a new order that passed the gate holds a slot of its
symbol's rate window until it is routed, so another OMS session's check in that instant
cannot take the same last slot; and every way out between the check and the routing that
does not route the order gives the slot back. Each test reads the gate from "another
session" at that instant (a probe) and then sends an order that needs the freed slot."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import quickfix as fix

from gateway.config.risk import GateConfig
from gateway.fix import messages as m
from gateway.risk.gate import Gate, GateOrder
from gateway.risk.validation import OrderValidator
from gateway.routing.router import Router
from tests.conftest import order_fields
from tests.unit.test_router_doubt import SID, _VenueRecorder, _World, world

__all__ = ["world"]  # the fixture, shared with test_router_doubt

RATE_BLOCK = "blocked by max_orders_per_s"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _gate(w: _World, **risk: Any) -> _Clock:
    clock = _Clock()
    w.router.gate = Gate(GateConfig.model_validate({"max_orders_per_s": 1, **risk}),
                         lambda s: (None, None), lambda s: None, clock)
    return clock


def _probe(w: _World, seen: list[str | None]) -> None:
    """Another OMS session checks an order on the same symbol now (on its own thread, in the
    gateway): what the gate says. Blocked, it takes nothing."""
    assert w.router.gate is not None
    d = w.router.gate.check(GateOrder("BTC/USD", "1", Decimal("0.001"), Decimal("30000"), "2",
                                      "FIXGW->OTHER", ""))
    seen.append(d.rule)


def _send(w: _World, msg_type: str, fields: list[tuple[int, str]]) -> None:
    msg = m.new_message(msg_type)
    for tag, value in fields:
        msg.setField(tag, value)
    w.router.on_oms_message(msg, SID, {str(t): v for t, v in fields} | {"35": msg_type})


def _buy(w: _World, cl: str, qty: str = "0.02") -> None:
    _send(w, "D", order_fields(cl, "1", qty, "30000"))


def _answers(w: _World, cl: str) -> list[tuple[str, str]]:
    """(ExecType, Text) of the OMS's ExecutionReports for `cl`."""
    return [(r[150], r.get(58, "")) for r in w.oms_got if r.get(35) == "8" and r.get(11) == cl]


def _sent_to_venue(w: _World) -> list[str]:
    """The OMS ClOrdIDs of the NewOrderSingles the venue got."""
    by_venue_id = {o.venue_cl_ord_id: o.oms_cl_ord_id for o in w.store.orders.values()}
    return [by_venue_id[s[11]] for s in w.venue.sent if s[35] == "D"]


def _next_order_needs_the_slot(w: _World, qty: str = "0.02") -> None:
    """With max_orders_per_s = 1 and no order routed, an order now is sent: the slot is free."""
    _buy(w, "NEXT", qty)
    assert not [t for _, t in _answers(w, "NEXT") if RATE_BLOCK in t], _answers(w, "NEXT")
    assert _sent_to_venue(w) == ["NEXT"]


class _FailingVenue(_VenueRecorder):
    """The venue session drops while the order is sent (send returns False) after `during`."""

    def __init__(self, during: Callable[[], None]) -> None:
        super().__init__()
        self.during = during
        self.fail = True

    def send(self, msg: fix.Message) -> bool:
        if self.fail:
            self.fail = False
            self.during()
            return False
        return super().send(msg)


def test_send_failing_gives_the_slot_back(world: _World) -> None:
    w = world
    _gate(w)
    seen: list[str | None] = []
    w.venue = _FailingVenue(lambda: _probe(w, seen))
    w.router.venue.session = w.venue  # type: ignore[assignment]
    _buy(w, "R1")
    assert seen == ["max_orders_per_s"]  # R1 held the only slot while it was being sent
    assert _answers(w, "R1")[-1][0] == "8" and "disconnected while sending" in \
        _answers(w, "R1")[-1][1]
    _next_order_needs_the_slot(w)


def test_journal_refusing_gives_the_slot_back(world: _World,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    _gate(w)
    seen: list[str | None] = []
    add = w.store.add_order

    def disk_full(order: Any) -> None:
        _probe(w, seen)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(w.store, "add_order", disk_full)
    _buy(w, "J1")
    assert seen == ["max_orders_per_s"]
    assert "could not journal it" in _answers(w, "J1")[-1][1]
    assert _sent_to_venue(w) == []
    monkeypatch.setattr(w.store, "add_order", add)
    _next_order_needs_the_slot(w)


def test_reduction_the_venue_would_refuse_gives_the_slot_back(world: _World) -> None:
    """The gate reduces 0.02 to 0.005; the instrument's minimum is 0.01, so the router turns
    the reduction into a block, after the gate's check took the slot."""
    w = world
    _gate(w, max_order_qty={"*": "0.005"}, max_order_qty_action="reduce")
    seen: list[str | None] = []

    def minimum(symbol: str, qty: Decimal, price: Decimal | None) -> str | None:
        if qty < Decimal("0.01"):
            _probe(w, seen)
            return f"quantity {qty} is under the minimum 0.01 for {symbol}"
        return None

    w.router.validator = OrderValidator(lambda s: s == "BTC/USD", minimum)
    _buy(w, "Q1")
    assert seen == ["max_orders_per_s"]
    text = _answers(w, "Q1")[-1][1]
    assert text.startswith("reduced by max_order_qty") and "but quantity 0.005 is under" in text
    assert _sent_to_venue(w) == []
    w.router.validator = OrderValidator(lambda s: s == "BTC/USD")
    _next_order_needs_the_slot(w, "0.004")  # within the gate's limit: not reduced


def test_venue_down_gives_the_slot_back(world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    _gate(w)
    seen: list[str | None] = []
    up = w.router.venue.is_up

    def down() -> bool:
        _probe(w, seen)
        return False

    monkeypatch.setattr(w.router.venue, "is_up", down)
    _buy(w, "V1")
    assert seen and set(seen) == {"max_orders_per_s"}
    assert "order not sent (no fallback transport available)" in _answers(w, "V1")[-1][1]
    monkeypatch.setattr(w.router.venue, "is_up", up)
    _next_order_needs_the_slot(w)


def test_an_exception_on_the_way_gives_the_slot_back(world: _World,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    _gate(w)
    seen: list[str | None] = []
    build = Router._order_message

    def broken(*args: object, **kwargs: object) -> fix.Message:
        _probe(w, seen)
        raise RuntimeError("message build failed")

    monkeypatch.setattr(Router, "_order_message", staticmethod(broken))
    with pytest.raises(RuntimeError, match="message build failed"):
        _buy(w, "X1")
    assert seen == ["max_orders_per_s"]
    monkeypatch.setattr(Router, "_order_message", staticmethod(build))
    _next_order_needs_the_slot(w)


def test_routed_orders_count_once_and_a_replace_takes_no_slot(world: _World) -> None:
    w = world
    clock = _gate(w, max_orders_per_s=2)
    _buy(w, "A1")
    _buy(w, "A2")
    assert _sent_to_venue(w) == ["A1", "A2"]  # counted once each: the window holds two
    _buy(w, "A3")
    assert RATE_BLOCK in _answers(w, "A3")[-1][1]
    # A replace that adds quantity passes the gate without the rate, and takes no slot.
    _send(w, "G", [(m.CL_ORD_ID, "A1b"), (41, "A1"), (m.SYMBOL, "BTC/USD"), (m.SIDE, "1"),
                   (m.ORDER_QTY, "0.03"), (m.ORD_TYPE, "2"), (m.PRICE, "30000"),
                   (m.TRANSACT_TIME, m.utc_timestamp())])
    assert [s[35] for s in w.venue.sent] == ["D", "D", "G"]
    clock.now += 1.01
    _buy(w, "A4")
    _buy(w, "A5")
    assert _sent_to_venue(w) == ["A1", "A2", "A4", "A5"]
