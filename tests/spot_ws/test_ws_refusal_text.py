"""A cancel or replace the venue refuses over the private WebSocket reaches the OMS as a 35=9
whose Text says why in words, as the same refusal over REST does (the fallback's one
classification of Kraken's error strings), not as Kraken's raw code.

The gateway's router and fallback in process against the simulator's spot REST and WS v2 faces
over one matching engine on loopback (only the OMS FIX session is replaced by a recorder).
"""

from __future__ import annotations

from decimal import Decimal

from gateway.venue_sim.engine import Side
from tests.integration.test_failover_amend import World, _amend, _place


def _refusal(w: World, cl: str) -> dict[int, str]:
    (rej,) = w.reports(cl)
    assert rej[35] == "9"
    return rej


def test_ws_and_rest_refusals_of_a_replace_read_the_same(world: World) -> None:
    w = world
    _place(w, "P1")
    _amend(w, "P2", "P1", "0.02", "30000.05")  # off BTC/USD's 0.1 tick: the venue refuses
    over_ws = _refusal(w, "P2")
    assert over_ws[58] == ("WS fallback: invalid price (off tick or not positive): BTC/USD "
                           "price must be a multiple of 0.1")
    assert over_ws[102] == "2"
    w.fallback.prefer("rest")
    _amend(w, "P3", "P1", "0.02", "30000.05")
    over_rest = _refusal(w, "P3")
    assert over_rest[58] == "REST" + over_ws[58].removeprefix("WS")
    assert over_rest[102] == over_ws[102]


def test_ws_cancel_of_an_order_the_venue_no_longer_has_says_so(world: World) -> None:
    """The order filled at the venue before its report reached the gateway: the WS cancel is
    refused as too late (102=0) with Text in words."""
    w = world
    ws = w.fallback.ws
    assert ws is not None
    ws.on_execution = None  # the fill's report has not arrived yet
    _place(w, "F1")
    w.engine.submit("MAKER", "m1", "BTC/USD", Side.SELL, Decimal("0.02"), Decimal("30000"))
    w.oms("F", [(11, "F2"), (41, "F1"), (55, "BTC/USD"), (54, "1"), (38, "0.02"),
                (60, "20260101-00:00:00")])
    rej = _refusal(w, "F2")
    assert rej[102] == "0"
    assert rej[58].startswith("WS fallback: unknown order at the venue")
