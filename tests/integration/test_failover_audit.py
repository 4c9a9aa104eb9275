"""Audit findings on the REST/WebSocket fallback: what must hold whatever goes wrong on the
way, each against the simulator's spot REST (and WS) faces over loopback, with the gateway's
router, journal and fallback in process (only the OMS FIX session is replaced by a recorder).

* An order request that may have left and got no usable answer, whatever the exception, is
  looked up (never resent, never left without an answer for the OMS).
* One order on the account we cannot read (another desk's odd pair) does not stop polling,
  failback or held orders; no step of the poller stops the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError

from gateway.routing.failover import TransportPolicy
from gateway.transports.kraken_spot_rest import AddOrderResult
from gateway.venue_sim.engine import MatchingEngine
from gateway.venue_sim.instruments import INSTRUMENTS, Instrument, InstrumentKind
from gateway.venue_sim.spot_ws import SpotWsServer
from tests.integration.test_failover_amend import (
    World,
    _amend,
    _place,
    _send_order,
    connect_private_ws,
    world,
)

__all__ = ["world"]  # the fixture, shared with test_failover_amend


@pytest.fixture
def ws_world(world: World) -> Iterator[World]:
    """`world` with the private WebSocket connected (orders, cancels, amends go over it)."""
    server, _ws = connect_private_ws(world)
    try:
        yield world
    finally:
        world.fallback.stop()
        server.stop()
        server.stop()


def _wait(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# ---- A: unexpected errors after a request may have left -----------------------------------


def test_ws_send_on_a_connection_just_closed_is_looked_up(ws_world: World,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """The socket closes between the `connected` check and the send: websockets raises its
    ConnectionClosed, which used to escape to the OMS thread with the order journaled SENT
    and no lookup. (The close is made to happen in that instant by the connection's `send`;
    the race itself cannot be timed from a test.)"""
    w = ws_world
    w.fallback.request_deadline_s = 0.3
    ws = w.fallback.ws
    assert ws is not None and ws._ws is not None

    async def closed(*_: object) -> None:
        raise ConnectionClosedError(None, None)

    monkeypatch.setattr(ws._ws, "send", closed)
    _send_order(w, "C1")
    order = w.store.find("FIXGW->OMS", "C1")
    assert order is not None and order.transport == "ws"
    assert order.venue_cl_ord_id in w.fallback._unresolved
    assert w.reports("C1") == []
    time.sleep(0.35)
    assert w.fallback.poll() is True
    (rej,) = w.reports("C1")  # it never left: rejected once its deadline has passed
    assert rej[150] == "8" and "did not reach the venue" in rej[58]
    assert w.engine.submission_count("FIXGW", order.venue_cl_ord_id) == 0


def test_unreadable_lookup_answer_after_a_timeout_is_looked_up_again(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The AddOrder lands, its answer is lost, and the client's own lookup gets an answer it
    cannot read (here a ValueError, as parse_order raises): the order is looked up later,
    acknowledged once, never sent again."""
    w = world
    w.server.set_delay(0.8, 1, after=True, path_prefix="/0/private/AddOrder")
    real = w.client.find_order
    calls: list[str] = []

    def unreadable_once(clid: str, since_epoch_s: Decimal | None = None) -> Any:
        calls.append(clid)
        if len(calls) == 1:
            raise ValueError("order X: descr.price: not a decimal: 'abc'")
        return real(clid, since_epoch_s)

    monkeypatch.setattr(w.client, "find_order", unreadable_once)
    _send_order(w, "L1")
    order = w.store.find("FIXGW->OMS", "L1")
    assert order is not None and order.venue_cl_ord_id in w.fallback._unresolved
    assert w.reports("L1") == []
    assert w.fallback.poll() is True
    (ack,) = w.reports("L1")
    assert ack[150] == "0"
    assert w.engine.submission_count("FIXGW", order.venue_cl_ord_id) == 1


def test_add_order_answer_without_txid_is_looked_up(world: World,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An AddOrder answer with no txid (the simulator always sends one, so the answer is
    stripped of it here) used to leave the order SENT with nothing to look it up."""
    w = world
    real = w.client.add_order

    def no_txid(*a: Any, **k: Any) -> AddOrderResult:
        real(*a, **k)
        return AddOrderResult(None, "")

    monkeypatch.setattr(w.client, "add_order", no_txid)
    _send_order(w, "T1")
    order = w.store.find("FIXGW->OMS", "T1")
    assert order is not None and order.venue_cl_ord_id in w.fallback._unresolved
    assert w.fallback.poll() is True
    (ack,) = w.reports("T1")
    assert ack[150] == "0"
    assert w.engine.submission_count("FIXGW", order.venue_cl_ord_id) == 1


def test_unexpected_error_after_an_amend_is_settled_by_the_order_state(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    txid = _place(w, "M1")
    real = w.client.amend_order

    def lands_then_fails(**k: Any) -> str:
        real(**k)
        raise ValueError("amend answer not understood")

    monkeypatch.setattr(w.client, "amend_order", lands_then_fails)
    _amend(w, "M2", "M1", "0.03", "30100")
    assert w.reports("M2") == [] and txid in w.fallback._amends
    w.fallback.poll()
    (rep,) = w.reports("M2")
    assert rep[150] == "5" and Decimal(rep[38]) == Decimal("0.03")


# ---- B: an order we cannot read does not stop the poller ------------------------------------

ODD = Instrument(symbol="FOO/ZZZ", base="FOO", quote="ZZZ", kind=InstrumentKind.SPOT,
                 price_tick=Decimal("0.01"), lot_size=Decimal("0.00000001"),
                 min_qty=Decimal("0.001"), price_decimals=2, qty_decimals=8,
                 ref_price=Decimal("1.00"))


@pytest.fixture
def odd_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A venue listing, on the gateway's account, an order of another desk on a pair the
    gateway cannot split (``FOOZZZ``: no quote currency it knows)."""
    engine = MatchingEngine({**INSTRUMENTS, ODD.symbol: ODD})
    w = World(tmp_path, engine=engine)
    w.capture(monkeypatch)
    engine.submit("FIXGW", "other-desk-1", ODD.symbol, "1", Decimal("1"), Decimal("0.50"))
    try:
        yield w
    finally:
        w.fallback.stop()
        w.close()


def test_unreadable_order_of_another_desk_does_not_block_failback(odd_world: World) -> None:
    w = odd_world
    assert set(w.client.open_orders()) == set()  # skipped, not an exception
    txid = _place(w, "F1")
    assert set(w.client.open_orders()) == {txid}
    fix_up = [False]
    w.fallback.policy = TransportPolicy(lambda: fix_up[0], lambda: True, failover_after_s=0,
                                        failback_after_s=0, on_switch=lambda *a: None,
                                        before_failback=w.fallback.reconcile)
    w.fallback.policy.evaluate()
    assert w.fallback.active()
    w.fallback.start()
    fix_up[0] = True  # FIX is back: reconcile (OpenOrders lists the odd order) then failback
    _wait(lambda: not w.fallback.active())


def test_a_failing_poller_step_does_not_stop_the_others(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Held orders go out (and the poll runs) even while another step of the poller's tick
    keeps failing (here the policy's evaluation)."""
    w = world
    w.fallback.hold_max_s = 30
    assert w.fallback.policy is not None

    def broken() -> str:
        raise RuntimeError("policy evaluation failed")

    monkeypatch.setattr(w.fallback.policy, "evaluate", broken)
    w.fallback.rest_ok = False  # no transport up (until the poller's status check): held
    _send_order(w, "H1")
    assert [r[150] for r in w.reports("H1")] == ["A"]
    poller = threading.Thread(target=w.fallback._run, daemon=True)  # start()'s thread
    poller.start()
    try:
        _wait(lambda: [r[150] for r in w.reports("H1")] == ["A", "0"])
    finally:
        w.fallback._stop.set()
        poller.join(5)
    assert w.fallback.held_count() == 0


# ---- C: an order held before the fallback starts is queued once ----------------------------


def test_order_held_before_start_is_queued_and_sent_once(world: World) -> None:
    """The OMS acceptor starts before the fallback: an order held in between is in the
    queue when `start` re-queues the orders journaled as held. Queued twice, it went out
    twice (the second AddOrder refused as a duplicate ClOrdID and the live order reported
    rejected)."""
    w = world
    w.fallback.hold_max_s = 30
    w.fallback.rest_ok = False  # no transport up: held
    _send_order(w, "S1")
    assert [r[150] for r in w.reports("S1")] == ["A"]
    w.fallback.start()  # its first status check finds REST up: the queue is released
    _wait(lambda: w.fallback.held_count() == 0 and len(w.reports("S1")) >= 2)
    time.sleep(0.3)
    assert [r[150] for r in w.reports("S1")] == ["A", "0"]
    order = w.store.find("FIXGW->OMS", "S1")
    assert order is not None
    assert w.engine.submission_count("FIXGW", order.venue_cl_ord_id) == 1


# ---- G: bounded memory, a cancel that met a fill, a WS item without its average price -------


def test_clordid_to_txid_memory_is_bounded(world: World,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    monkeypatch.setattr(w.client.pair_rate, "remembered_max", 3)
    for i in range(5):
        w.client.add_order("BTC/USD", "buy", "limit", Decimal("0.01"), Decimal("30000"),
                           cl_ord_id=f"bound-{i}")
    rate = w.client.pair_rate
    assert list(rate._txid_of) == ["bound-2", "bound-3", "bound-4"]
    assert list(rate._by_clid) == ["bound-2", "bound-3", "bound-4"]
    assert len(rate._by_txid) == 3


def _cancel(w: World, cl: str, orig: str, qty: str) -> None:
    w.oms("F", [(11, cl), (41, orig), (55, "BTC/USD"), (54, "1"), (38, qty),
                (60, "20260101-00:00:00")])


def test_cancel_that_met_a_fill_is_answered_too_late(ws_world: World) -> None:
    """The WS cancel gets no answer in time and the REST cancel then finds no order: it
    filled. That "unknown order" used to be taken as the WS cancel having landed, so the
    OMS's cancel waited for a Canceled that never came (and the pending cancel stayed
    for ever). The poll shows the fill: reported, then the cancel answered too late."""
    w = ws_world
    ws = w.fallback.ws
    assert ws is not None
    _send_order(w, "G1")
    (ack,) = w.reports("G1")
    assert ack[150] == "0"
    ws.on_execution = None  # the executions feed misses what follows (a gap): polls tell
    w.engine.submit("MAKER", "g-maker", "BTC/USD", "2", Decimal("0.02"), Decimal("30000"))
    ws.request_timeout = 0  # the venue's answer to the WS cancel comes too late
    _cancel(w, "G2", "G1", "0.02")
    assert w.reports("G2") == []  # nothing known yet
    w.fallback.poll()
    assert [r[150] for r in w.reports("G1")] == ["0", "F"]
    (rej,) = w.reports("G2")
    assert rej[35] == "9" and rej[41] == "G1" and rej[434] == "1" and rej[102] == "0"
    assert rej[58] == "too late: order filled"
    assert w.fallback._cancels == {}
    w.fallback.poll()
    assert len(w.reports("G2")) == 1


def test_ws_item_without_average_price_is_not_understood(world: World) -> None:
    w = world
    txid = _place(w, "P1")
    order = w.store.find("FIXGW->OMS", "P1")
    assert order is not None
    item = {"exec_type": "trade", "order_status": "partially_filled", "order_id": txid,
            "cl_ord_id": order.venue_cl_ord_id, "side": "buy", "order_type": "limit",
            "limit_price": Decimal("30000"), "order_qty": Decimal("0.02"),
            "cum_qty": Decimal("0.01")}
    w.fallback.on_ws_execution(item)  # a fill at an average price of 0 would be booked
    assert [r[150] for r in w.reports("P1")] == ["0"]
    w.fallback.on_ws_execution({**item, "avg_price": Decimal("30000")})
    fill = w.reports("P1")[-1]
    assert fill[150] == "F" and Decimal(fill[6]) == 30000


# ---- F: the private WebSocket survives a failed token request ------------------------------


def test_private_ws_connects_after_its_token_request_failed(world: World) -> None:
    """GetWebSocketsToken fails (every retry of the client answered busy): that connection
    attempt fails, the next one fetches a token and connects. It used to end the client's
    reconnect loop for good, with the fallback still holding the dead client."""
    w = world
    server = SpotWsServer(w.engine, w.server.accounts)
    server.start()
    try:
        w.server.fail_next(4, 200, "EService:Busy", path_prefix="/0/private/GetWebSocketsToken")
        w.fallback.ws_url = server.url
        w.fallback._manage_ws()
        ws = w.fallback.ws
        assert ws is not None
        assert ws.wait_connected(5)
        assert w.server.request_count("/0/private/GetWebSocketsToken") == 5
    finally:
        w.fallback.stop()
        server.stop()


# ---- D: a pending amend is answered even if its order closes through FIX ----------------------


def test_pending_amend_of_an_order_closed_through_fix_is_answered(world: World) -> None:
    """The AmendOrder's answer is lost; the order is then canceled at the venue and FIX tells
    it first. Polls used to look at open orders only: the replace never got an answer, and
    the pending amend kept the poller querying every open order for ever."""
    w = world
    txid = _place(w, "D1")
    order = w.store.find("FIXGW->OMS", "D1")
    assert order is not None
    # Held before processing past the client's timeout and the amend's deadline: it never
    # lands.
    w.server.set_delay(2.3, 1, after=False, path_prefix="/0/private/AmendOrder")
    _amend(w, "D2", "D1", "0.03", "30100")
    assert w.reports("D2") == [] and txid in w.fallback._amends
    w.engine.cancel("FIXGW", "ops-cancel-1", order_id=txid)  # ops, at the venue
    w.router.on_venue_report({  # the venue's FIX report of it, first to arrive
        "11": order.venue_cl_ord_id, "37": txid, "17": "FIX-EXEC-1", "150": "4", "39": "4",
        "55": "BTC/USD", "54": "1", "38": "0.02", "40": "2", "59": "1", "44": "30000",
        "151": "0", "14": "0", "6": "0", "60": "20260101-00:00:00"}, "fix")
    assert not order.is_open
    w.fallback.poll()
    (rej,) = w.reports("D2")
    assert rej[35] == "9" and rej[434] == "2" and rej[102] == "0"
    assert w.fallback._amends == {}


def test_second_replace_while_one_is_pending_is_refused(world: World) -> None:
    """A replace whose answer is lost, then another one: the second used to overwrite the
    first's pending record, so the first (which landed) was later judged not landed (the
    order shows the second's figures) and never got a true answer."""
    w = world
    _place(w, "E1")
    w.server.set_delay(1.5, 1, after=True, path_prefix="/0/private/AmendOrder")
    _amend(w, "E2", "E1", "0.03", "30100")
    assert w.reports("E2") == []
    _amend(w, "E3", "E1", "0.04", "30200")
    (rej,) = w.reports("E3")
    assert rej[35] == "9" and rej[434] == "2" and "no answer yet" in rej[58]
    time.sleep(1.2)  # the first amend has landed
    w.fallback.poll()
    (rep,) = w.reports("E2")
    assert rep[150] == "5" and Decimal(rep[38]) == Decimal("0.03")
    assert w.server.request_count("/0/private/AmendOrder") == 1


# ---- E: an amend is not judged "did not land" before its last retry's deadline ----------------


def test_amend_retried_late_is_not_judged_before_its_last_deadline(world: World) -> None:
    """AmendOrder answered busy three times (each after 0.4 s), then the fourth attempt waits
    in the venue's queue past the client's timeout and lands ~1.7 s later, inside its own
    deadline. The give-up time was set before the call, from the first attempt: a poll past
    it saw the old figures and rejected a replace that then landed."""
    w = world
    _place(w, "K1")
    path = "/0/private/AmendOrder"
    w.server.fail_next(3, 200, "EService:Busy", path_prefix=path)
    w.server.set_delay(0.4, 3, after=False, path_prefix=path)
    w.server.set_delay(1.7, 1, queued=True, path_prefix=path)
    t0 = time.monotonic()
    _amend(w, "K2", "K1", "0.03", "30100")
    assert w.reports("K2") == []
    assert w.server.request_count(path) == 4
    time.sleep(max(0.0, t0 + 2.6 - time.monotonic()))  # past a give-up time set at t0
    w.fallback.poll()
    assert w.reports("K2") == []  # old figures, but the last attempt may still land
    deadline = time.monotonic() + 5
    while not w.reports("K2"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
        w.fallback.poll()
    (rep,) = w.reports("K2")
    assert rep[150] == "5" and Decimal(rep[38]) == Decimal("0.03")


# ---- H: a REST cancel in flight at failback is still reported ----------------------------------


def test_cancel_in_flight_at_failback_is_reported(world: World) -> None:
    """FIX comes back while a REST cancel is on its way (the venue takes it 0.6 s later).
    The reconciliation saw the order open and failed back, after which nothing polled: the
    order stayed open at the record and the OMS's cancel never got its Canceled."""
    w = world
    fix_up = [False]
    policy = TransportPolicy(lambda: fix_up[0], lambda: True, failover_after_s=0,
                             failback_after_s=0, on_switch=lambda *a: None,
                             before_failback=w.fallback.reconcile)
    w.fallback.policy = policy
    policy.evaluate()
    assert w.fallback.active()
    _place(w, "Z1")
    w.fallback.poll_interval_s = 0.2
    w.fallback.start()
    w.server.set_delay(0.6, 1, after=False, path_prefix="/0/private/CancelOrder")
    canceling = threading.Thread(target=_cancel, args=(w, "Z2", "Z1", "0.02"), daemon=True)
    canceling.start()
    time.sleep(0.1)
    fix_up[0] = True
    _wait(lambda: [r[150] for r in w.reports("Z2")] == ["4"])
    _wait(lambda: not w.fallback.active())  # once nothing is pending
    canceling.join(5)
    assert w.fallback._cancels == {}


def test_ws_new_item_without_average_price_is_understood(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing filled, no average price to give: the item still tells the New (it used to
    default to 0, so refusing every item without one would lose the prompt New)."""
    w = world
    real = w.client.add_order

    def no_txid(*a: Any, **k: Any) -> AddOrderResult:  # the New is not known from the answer
        real(*a, **k)
        return AddOrderResult(None, "")

    monkeypatch.setattr(w.client, "add_order", no_txid)
    _send_order(w, "Q1")
    order = w.store.find("FIXGW->OMS", "Q1")
    assert order is not None and w.reports("Q1") == []
    (snap,) = w.engine.open_orders("FIXGW")
    w.fallback.on_ws_execution({
        "exec_type": "new", "order_status": "new", "order_id": snap.order_id,
        "cl_ord_id": order.venue_cl_ord_id, "side": "buy", "order_type": "limit",
        "limit_price": Decimal("30000"), "order_qty": Decimal("0.02"),
        "cum_qty": Decimal("0")})
    (ack,) = w.reports("Q1")
    assert ack[150] == "0" and ack[37] == snap.order_id
