"""One per-pair rate model for the REST and WebSocket order paths (kraken-api.md §7: the
trading counter is one per account and pair, whatever the API).

The gateway's router and fallback in process against the simulator's spot REST and WS v2 faces
over one matching engine on loopback (only the OMS FIX session is replaced by a recorder). The
simulator's WS face charges no rate counter of its own, so the client's model is compared with
§7's figures, and with the simulator's REST counter for what goes over REST.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.kraken.auth import NonceSource
from gateway.kraken.ratelimits import RateTier
from gateway.transports.kraken_spot_rest import KrakenSpotRest
from gateway.venue_sim.engine import Side
from tests.integration.test_failover_amend import (
    KEY,
    SECRET,
    World,
    _amend,
    _place,
    _send_order,
)
from tests.spot_ws.conftest import ws_world

#: A slow decay, so a counter read a few seconds later is still what was charged (to ~0.1).
SLOW = Decimal("0.01")


class _Clock:
    """Monotonic time that a test can move forward (an order's age without the wait)."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.ahead


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: _Clock) -> Iterator[World]:
    """Failed over with the private WebSocket connected; a per-pair ceiling of 12."""
    with ws_world(tmp_path, monkeypatch, engine_tier=RateTier(Decimal(12), SLOW),
                  clock=clock) as (w, _face):
        yield w


@pytest.fixture
def starter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Failed over with the private WebSocket connected; the simulator's tier (starter)."""
    with ws_world(tmp_path, monkeypatch) as (w, _face):
        yield w


def _cancel(w: World, cl: str, orig: str) -> None:
    w.oms("F", [(11, cl), (41, orig), (55, "BTC/USD"), (54, "1"), (38, "0.02"),
                (60, "20260101-00:00:00")])


def _wait(cond: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _canceled(w: World, cl: str) -> bool:
    return any(r.get(150) == "4" for r in w.reports(cl))


def _model(w: World) -> float:
    return w.client.pair_counter("BTC/USD")


def _venue(w: World) -> float:
    return w.server.engine_counter("FIXGW", "BTC/USD")


def test_burst_split_between_ws_and_rest_is_paced_as_one(small: World) -> None:
    """A WS cancel is charged to the model REST orders are paced by: after an order placed
    and canceled over WS (+1, +8 for an order under 5 s old), two REST orders fit under the
    ceiling (12 less 0.5 headroom) and the third is refused before it is sent. The WS cancel
    used to cost the model nothing, so all three went out."""
    w = small
    _place(w, "W1")
    assert w.store.find("FIXGW->OMS", "W1").transport == "ws"  # type: ignore[union-attr]
    _cancel(w, "W1c", "W1")
    _wait(lambda: _canceled(w, "W1c"))
    assert 8.9 < _model(w) <= 9.0
    w.fallback.prefer("rest")
    _place(w, "R1")
    _place(w, "R2")
    assert w.store.find("FIXGW->OMS", "R2").transport == "rest"  # type: ignore[union-attr]
    _send_order(w, "R3")
    (rej,) = w.reports("R3")
    assert rej[150] == "8" and "per-pair rate limit (held locally" in rej[58]
    r3 = w.store.find("FIXGW->OMS", "R3")
    assert r3 is not None and w.engine.submission_count("FIXGW", r3.venue_cl_ord_id) == 0


def test_ws_amend_is_charged_and_restarts_the_orders_age(small: World, clock: _Clock) -> None:
    """§7: an amend costs +1 and an age part, and ages the order from the amend on. Over WS
    the amend cost the model nothing and left the age from the placement."""
    w = small
    _place(w, "A1")  # +1
    clock.ahead += 6.0  # the order is 6 s old: an amend costs 1 + 2
    _amend(w, "A2", "A1", "0.03", "30100")
    (rep,) = w.reports("A2")
    assert rep[150] == "5"
    assert 3.8 < _model(w) <= 4.0
    _cancel(w, "A3", "A2")  # under 5 s since the amend: +8, not the +6 of a 6 s old order
    _wait(lambda: _canceled(w, "A3"))
    assert 11.8 < _model(w) <= 12.0


def test_rest_cancel_of_a_ws_placed_order_is_charged_by_its_age(starter: World) -> None:
    """The REST client learns the txid of an order placed over WS from its ack, so a REST
    CancelOrder of it by txid is charged as the venue charges it (+8, under 5 s old). It
    used to be charged nothing: the client had never heard of that txid."""
    w = starter
    assert w.fallback.ws is not None
    w.fallback.ws.on_execution = None  # the ack alone tells the txid (the feed is next test's)
    txid = _place(w, "X1")
    order = w.store.find("FIXGW->OMS", "X1")
    assert order is not None and order.transport == "ws"
    assert w.client.pair_rate.txid_of(order.venue_cl_ord_id) == txid
    w.fallback.prefer("rest")
    model, venue = _model(w), _venue(w)
    _cancel(w, "X2", "X1")
    assert w.server.request_count("/0/private/CancelOrder") == 1
    model, venue = _model(w) - model, _venue(w) - venue
    assert 7.5 < venue <= 8.0
    assert abs(model - venue) < 0.2


def test_txid_of_a_ws_order_whose_ack_was_lost_is_learned_from_the_executions_feed(
        starter: World) -> None:
    """The add_order's answer misses the client's timeout; the executions feed tells the
    order (and the OMS gets its New from it). The model learns the txid from that item, so a
    later REST cancel by txid is charged by age, before any lookup has run."""
    w = starter
    ws = w.fallback.ws
    assert ws is not None
    ws.request_timeout = 0.0005  # the venue's answer always comes too late
    _send_order(w, "L1")
    order = w.store.find("FIXGW->OMS", "L1")
    assert order is not None and order.venue_cl_ord_id in w.fallback._unresolved
    _wait(lambda: w.reports("L1"))
    (ack,) = w.reports("L1")
    assert ack[150] == "0"
    assert w.client.pair_rate.txid_of(order.venue_cl_ord_id) == ack[37]
    assert w.server.request_count("/0/private/OpenOrders") == 0  # no lookup told it
    ws.request_timeout = 5.0
    w.fallback.prefer("rest")
    model, venue = _model(w), _venue(w)
    _cancel(w, "L2", "L1")
    model, venue = _model(w) - model, _venue(w) - venue
    assert 7.5 < venue <= 8.0
    assert abs(model - venue) < 0.2


def test_lookup_by_clordid_teaches_the_model_the_txid(tmp_path: Path) -> None:
    """An order charged for WS whose ack and executions item were both lost (no socket
    here) is found over REST by ClOrdID: the lookup tells the model its txid (the engine
    takes the order directly, as the venue would have from the lost add_order)."""
    w = World(tmp_path)
    try:
        c = w.client
        c.charge_add_elsewhere("BTC/USD", "lost-1")
        w.engine.submit("FIXGW", "lost-1", "BTC/USD", Side.BUY, Decimal("0.01"),
                        Decimal("30000"))
        found = c.find_order("lost-1")
        assert found is not None
        assert c.pair_rate.txid_of("lost-1") == found.txid
        model, venue = _model(w), _venue(w)
        assert c.cancel_order(txid=found.txid) == 1
        model, venue = _model(w) - model, _venue(w) - venue
        assert 7.5 < venue <= 8.0
        assert abs(model - venue) < 0.2
    finally:
        w.close()


def test_ws_rate_limit_refusal_fills_the_model_rest_orders_are_paced_by(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The venue refuses a WS add_order with EOrder:Rate limit exceeded (its counter filled
    by traffic the model cannot see; the simulator's WS face keeps no counter, so it is made
    to answer so here): the counter is one for both APIs, so the next order over REST is held
    back locally instead of being sent to the same refusal, as after a REST refusal."""
    with ws_world(tmp_path, monkeypatch) as (w, face):
        async def full(params: object, reply: Callable[..., None]) -> None:
            reply(False, error="EOrder:Rate limit exceeded")

        monkeypatch.setattr(face, "_add_order", full)
        _send_order(w, "Q1")
        (rej,) = w.reports("Q1")
        assert rej[150] == "8" and rej[58] == "WS fallback: venue per-pair rate limit"
        w.fallback.prefer("rest")
        _send_order(w, "Q2")
        (rej,) = w.reports("Q2")
        assert rej[150] == "8" and "per-pair rate limit (held locally" in rej[58]
        assert w.server.request_count("/0/private/AddOrder") == 0


def test_order_found_after_a_restart_is_charged_when_canceled(tmp_path: Path) -> None:
    """A client that never saw an order charged (a restart: its model is new) and finds it by
    ClOrdID, as the fallback looks up the orders left unanswered, charges its cancel too."""
    w = World(tmp_path)
    try:
        w.client.add_order("BTC/USD", "buy", "limit", Decimal("0.01"), Decimal("30000"),
                           cl_ord_id="before-restart")
        c = KrakenSpotRest(w.server.base_url, KEY, SECRET, NonceSource())
        found = c.find_order("before-restart")
        assert found is not None
        assert c.pair_rate.txid_of("before-restart") == found.txid
        model, venue = c.pair_counter("BTC/USD"), _venue(w)
        assert c.cancel_order(txid=found.txid) == 1
        model, venue = c.pair_counter("BTC/USD") - model, _venue(w) - venue
        assert 7.5 < venue <= 8.0
        assert abs(model - venue) < 0.2
    finally:
        w.close()
