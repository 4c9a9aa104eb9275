"""An order or a replace sent over the private WebSocket whose request never reached the venue
is rejected, once its deadline has passed, with a Text that names the path it took ("WS
fallback: ..."), not "REST fallback", which sent ops looking at the wrong API.

The gateway's router and fallback in process against the simulator's spot REST and WS v2 faces
over one matching engine on loopback (only the OMS FIX session is replaced by a recorder).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError

from gateway.venue_sim.spot_ws import SpotWsServer
from tests.integration.test_failover_amend import (
    World,
    _amend,
    _place,
    _send_order,
)
from tests.spot_ws.conftest import ws_world


@pytest.fixture
def faced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[tuple[World, SpotWsServer]]:
    with ws_world(tmp_path, monkeypatch) as (w, face):
        w.fallback.request_deadline_s = 0.3
        yield w, face


def test_ws_order_that_never_left_is_rejected_as_a_ws_order(
        faced: tuple[World, SpotWsServer], monkeypatch: pytest.MonkeyPatch) -> None:
    w, _face = faced
    ws = w.fallback.ws
    assert ws is not None and ws._ws is not None

    async def closed(*_: object) -> None:
        raise ConnectionClosedError(None, None)

    monkeypatch.setattr(ws._ws, "send", closed)  # the socket closed as the order went out
    _send_order(w, "N1")
    order = w.store.find("FIXGW->OMS", "N1")
    assert order is not None and order.transport == "ws"
    time.sleep(0.35)  # past the request's deadline: "not found" is final
    assert w.fallback.poll() is True
    (rej,) = w.reports("N1")
    assert rej[150] == "8" and rej[58] == "WS fallback: the order did not reach the venue"


def test_ws_replace_that_never_landed_is_rejected_as_a_ws_replace(
        faced: tuple[World, SpotWsServer], monkeypatch: pytest.MonkeyPatch) -> None:
    w, face = faced
    ws = w.fallback.ws
    assert ws is not None
    _place(w, "A1")

    async def lost(params: object, reply: Callable[..., None]) -> None:
        return None  # the venue never got it: no answer, nothing applied

    monkeypatch.setattr(face, "_amend_order", lost)
    ws.request_timeout = 0.2
    _amend(w, "A2", "A1", "0.03", "30100")
    assert w.reports("A2") == []  # outcome unknown: the order's state settles it
    time.sleep(0.35)  # past the amend's give-up time
    w.fallback.poll()
    (rej,) = w.reports("A2")
    assert rej[35] == "9" and rej[102] == "2"
    assert rej[58] == "WS fallback: the replace did not reach the venue"
    o = w.store.find("FIXGW->OMS", "A1")
    assert o is not None and o.qty == Decimal("0.02")


def test_ws_order_the_venue_placed_but_answered_with_an_internal_error_is_looked_up(
        faced: tuple[World, SpotWsServer], monkeypatch: pytest.MonkeyPatch) -> None:
    """`EGeneral:Internal error` (or Busy) may answer an add_order the venue did place: an
    unknown outcome, settled by looking the ClOrdID up, not a reject of a live order."""
    w, face = faced
    real = face._add_order

    async def placed_then_error(params: Any, reply: Callable[..., None]) -> None:
        def internal_error(*_: object, **__: object) -> None:
            reply(False, error="EGeneral:Internal error")
        await real(params, internal_error)

    monkeypatch.setattr(face, "_add_order", placed_then_error)
    _send_order(w, "I1")
    time.sleep(0.35)  # past the request's deadline
    w.fallback.poll()
    reports = w.reports("I1")  # the executions feed's New, or the lookup's: never a reject
    assert [r[150] for r in reports] == ["0"], reports
    order = w.store.find("FIXGW->OMS", "I1")
    assert order is not None and order.is_open
    (live,) = w.engine.open_orders("FIXGW")  # placed once, never sent again
    assert live.cl_ord_id == order.venue_cl_ord_id and live.order_id == order.order_id
