"""The kill switch against orders on their way out, in process (the venue session is a
recorder, as in test_router_doubt): the operator's sweep of open orders runs on the admin
thread while an OMS thread may be between the gate and the venue with a new order."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.config.risk import GateConfig
from gateway.risk.gate import Gate, GateDecision, GateOrder
from tests.unit.test_router_doubt import _World, hold_order_building, world
from tests.unit.test_router_gate_rate import _answers, _buy, _sent_to_venue

__all__ = ["world"]  # the fixture, shared with test_router_doubt


def _gate(w: _World) -> Gate:
    gate = Gate(GateConfig.model_validate({}), lambda s: (None, None), lambda s: None,
                time.time)
    w.router.gate = gate
    return gate


def test_an_order_past_the_gate_when_the_switch_goes_on_is_not_sent(
        world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The switch goes on after the order's gate check and before it is in the store, so the
    operator's sweep cannot see it: the router must, before it sends."""
    w = world
    gate = _gate(w)
    check = gate.check

    def check_then_switch_on(order: GateOrder, amend: bool = False) -> GateDecision:
        decision = check(order, amend)
        gate.kill_switch = True  # the operator, on the admin thread, in this instant
        return decision

    monkeypatch.setattr(gate, "check", check_then_switch_on)
    _buy(w, "K1")
    assert _sent_to_venue(w) == []
    answers = _answers(w, "K1")
    assert [t for t, _ in answers] == ["8"], answers
    assert "kill switch" in answers[0][1]
    (order,) = w.store.orders.values()
    assert not order.is_open


def test_a_sweep_cancel_follows_the_order_it_finds_being_sent(
        world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    """An order in the store but still being sent when the sweep reaches it: its cancel must
    not overtake the NewOrderSingle (the venue would refuse it as for an unknown order, and
    the order would rest)."""
    w = world
    building, release = hold_order_building(monkeypatch)
    oms = threading.Thread(target=_buy, args=(w, "K2"), daemon=True)
    oms.start()
    assert building.wait(5)
    (order,) = w.store.open_orders()
    refused: list[str | None] = []
    sweep = threading.Thread(target=lambda: refused.append(
        w.router.cancel_unasked(order, "KILL-1", "kill_switch", "test")), daemon=True)
    sweep.start()
    time.sleep(0.05)  # the sweep is waiting for the send, not sending its cancel
    assert [s[35] for s in w.venue.sent] == []
    release.set()
    oms.join(5)
    sweep.join(5)
    assert refused == [None]
    assert [s[35] for s in w.venue.sent] == ["D", "F"]


def test_a_sweep_gives_up_on_an_order_whose_send_does_not_end(
        world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    _buy(w, "K3")
    (order,) = w.store.open_orders()
    w.router._sending.add(order.venue_cl_ord_id)  # as if its send never ended
    refused = w.router.cancel_unasked(order, "KILL-2", "kill_switch", "test")
    assert refused is not None and "still being sent" in refused
    assert [s[35] for s in w.venue.sent] == ["D"]
