"""Kraken's matching-engine counter charges a cancel or an amend by the order's age "since it
was created or amended" (kraken-api.md section 7): an order amended a moment ago costs a cancel
+8, however old it is. The simulator aged it from its creation only, so a client cancelling
right after an amend was charged +2 (or nothing) and never met the refusal Kraken gives."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

from gateway.kraken.ratelimits import RateTier
from gateway.venue_sim.accounts import Accounts, ApiAccount
from gateway.venue_sim.engine import MatchingEngine
from gateway.venue_sim.spot_rest import SpotRestServer
from tests.venue_sim.sim_rest import private_call

KEY = "ages"
SECRET = base64.b64encode(b"rate age test secret, forty bytes long!!").decode()
OWNER = "AGES"
S = 1_000_000_000


class _Clock:
    """One wall clock for the engine's order times and the face's ages, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_700_000_000 * S

    def ns(self) -> int:
        return self.now


def _server(clock: _Clock) -> SpotRestServer:
    # No decay (the counter's own clock never moves), a ceiling far above the test's charges:
    # the counter's value is then exactly the sum of what was charged.
    return SpotRestServer(MatchingEngine(time_source=clock.ns),
                          Accounts([ApiAccount(KEY, SECRET, OWNER)]),
                          engine_tier=RateTier(Decimal(1000), Decimal(0)),
                          clock=lambda: 0.0, wall_clock_ns=clock.ns)


def _call(srv: SpotRestServer, method: str, **params: str) -> dict[str, Any]:
    answer = private_call(srv, KEY, SECRET, method, **params)
    assert answer["error"] == [], answer
    result: dict[str, Any] = answer["result"]
    return result


def _place(srv: SpotRestServer) -> str:
    txid: str = _call(srv, "AddOrder", pair="XBTUSD", type="buy", ordertype="limit",
                      price="40000.0", volume="0.01")["txid"][0]
    return txid


def test_a_cancel_right_after_an_amend_is_charged_as_for_a_fresh_order() -> None:
    clock = _Clock()
    srv = _server(clock)
    try:
        txid = _place(srv)                                   # +1
        clock.now += 60 * S
        _call(srv, "AmendOrder", txid=txid, order_qty="0.02")  # +1 (60 s old: no age part)
        before = srv.engine_counter(OWNER, "XBTUSD")
        _call(srv, "CancelOrder", txid=txid)                 # amended 0 s ago: +8
        assert srv.engine_counter(OWNER, "XBTUSD") - before == 8
    finally:
        srv.close()


def test_an_amend_right_after_an_amend_pays_the_young_order_part() -> None:
    clock = _Clock()
    srv = _server(clock)
    try:
        txid = _place(srv)
        clock.now += 60 * S
        _call(srv, "AmendOrder", txid=txid, limit_price="40001.0")
        clock.now += 6 * S
        before = srv.engine_counter(OWNER, "XBTUSD")
        _call(srv, "AmendOrder", txid=txid, limit_price="40002.0")  # 6 s after: 1 + 2
        assert srv.engine_counter(OWNER, "XBTUSD") - before == 3
    finally:
        srv.close()


def test_a_fill_does_not_make_an_order_young() -> None:
    """Only an amend restarts the age: a fill moves the order's last update, not its age."""
    clock = _Clock()
    srv = _server(clock)
    try:
        txid = _place(srv)                                   # 0.01 bid at 40000.0
        clock.now += 100 * S
        srv.engine.submit("SIM-FLOW", "hit", "BTC/USD", "2", Decimal("0.004"),
                          Decimal("40000.0"))
        before = srv.engine_counter(OWNER, "XBTUSD")
        _call(srv, "CancelOrder", txid=txid)                 # 100 s old: +1
        assert srv.engine_counter(OWNER, "XBTUSD") - before == 1
    finally:
        srv.close()
