"""An order or a cancel/replace over REST whose answer is lost: the gateway's router and REST
fallback in process, against the simulator's spot REST face on a real loopback HTTP server
over a real matching engine (only the OMS FIX session is replaced by a recorder).

The amend is never sent twice; the order's next polled state settles it: the new figures mean
it landed (35=8 ExecType 5 under the replace's ClOrdID), the old ones past the amend's
deadline mean it never will (35=9). An order whose AddOrder outcome is unknown is looked up,
and "not found" is taken as final only past the request's deadline."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import quickfix as fix

from gateway.fix import messages as m
from gateway.kraken.auth import NonceSource
from gateway.kraken.ratelimits import RateTier
from gateway.orders.store import OrderStore
from gateway.risk.validation import OrderValidator
from gateway.routing.failover import RestFallback, TransportPolicy
from gateway.routing.router import OmsContext, Router
from gateway.transports.kraken_spot_rest import KrakenSpotRest
from gateway.venue_sim.accounts import Accounts, ApiAccount
from gateway.venue_sim.engine import MatchingEngine
from gateway.venue_sim.spot_rest import SpotRestServer
from tests.conftest import tag_fields

KEY = "fixgw-amend-key"
SECRET = base64.b64encode(b"fixgw amend test secret, long enough for HMAC-SHA512").decode()


class World:
    def __init__(self, tmp: Path, max_attempts: int = 4,
                 engine: MatchingEngine | None = None,
                 engine_tier: RateTier | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine or MatchingEngine()
        self.server = SpotRestServer(self.engine, Accounts([ApiAccount(KEY, SECRET, "FIXGW")]))
        self.server.start()
        self.client = KrakenSpotRest(self.server.base_url, KEY, SECRET, NonceSource(),
                                     timeout_s=0.5, backoff_initial_s=0.01, backoff_max_s=0.05,
                                     max_attempts=max_attempts, engine_tier=engine_tier,
                                     clock=clock)
        self.store = OrderStore(tmp / "orders.journal", fsync_interval_ms=0)
        self.router = Router(self.store, OrderValidator(lambda s: s == "BTC/USD"))
        self.sid = fix.SessionID("FIX.4.4", "FIXGW", "OMS")
        self.router.register_oms(self.sid, ())
        self.sent: list[dict[int, str]] = []
        # request_deadline_s: the client sends deadline = now + 2 s (its floor), so past 2.5 s an
        # amend that has not landed never will.
        self.fallback = RestFallback(self.router, self.client, poll_interval_s=60,
                                     request_deadline_s=2.5)
        self.fallback.rest_ok = True
        self.fallback.policy = TransportPolicy(lambda: False, lambda: True, failover_after_s=0,
                                               failback_after_s=60, on_switch=lambda *a: None,
                                               force="rest")
        self.fallback.policy.evaluate()
        self.router.fallback = self.fallback

    def capture(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def send(ctx: OmsContext, msg: fix.Message) -> None:
            self.sent.append(tag_fields(msg))
        monkeypatch.setattr(OmsContext, "send", send)

    def oms(self, msg_type: str, fields: list[tuple[int, str]]) -> None:
        msg = m.new_message(msg_type)
        for tag, value in fields:
            msg.setField(tag, value)
        f = {str(tag): value for tag, value in fields}
        f["35"] = msg_type
        self.router.on_oms_message(msg, self.sid, f)

    def reports(self, cl: str) -> list[dict[int, str]]:
        return [r for r in self.sent if r.get(11) == cl]

    def close(self) -> None:
        self.fallback.stop()  # its poller and WebSocket, if a test started them
        self.store.close()
        self.server.close()



@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    w = World(tmp_path)
    w.capture(monkeypatch)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def one_try_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A client that makes one AddOrder attempt: a timeout is final at once, with no lookup
    of its own (as after its last retry)."""
    w = World(tmp_path, max_attempts=1)
    w.capture(monkeypatch)
    try:
        yield w
    finally:
        w.close()


def _send_order(w: World, cl: str) -> None:
    w.oms("D", [(11, cl), (55, "BTC/USD"), (54, "1"), (38, "0.02"), (40, "2"), (44, "30000"),
                (59, "1"), (60, "20260101-00:00:00")])


def _place(w: World, cl: str) -> str:
    w.oms("D", [(11, cl), (55, "BTC/USD"), (54, "1"), (38, "0.02"), (40, "2"), (44, "30000"),
                (59, "1"), (60, "20260101-00:00:00")])
    (ack,) = w.reports(cl)
    assert ack[150] == "0" and ack[17].startswith("R")
    return ack[37]


def _amend(w: World, cl: str, orig: str, qty: str, price: str) -> None:
    w.oms("G", [(11, cl), (41, orig), (55, "BTC/USD"), (54, "1"), (38, qty), (40, "2"),
                (44, price), (59, "1"), (60, "20260101-00:00:00")])


def test_lost_answer_amend_that_landed_is_reported_once(world: World) -> None:
    w = world
    txid = _place(w, "A1")
    # The venue applies the amend but its answer comes after the client's 0.5 s timeout.
    w.server.set_delay(1.5, 1, after=True, path_prefix="/0/private/AmendOrder")
    _amend(w, "A2", "A1", "0.03", "30100")
    assert w.reports("A2") == []  # nothing known yet; and nothing sent again
    assert w.server.request_count("/0/private/AmendOrder") == 1
    time.sleep(1.2)
    w.fallback.poll()
    (rep,) = w.reports("A2")
    assert (rep[150], rep[41], rep[37]) == ("5", "A1", txid)
    assert Decimal(rep[38]) == Decimal("0.03") and Decimal(rep[44]) == 30100
    w.fallback.poll()  # the same state again: no second report
    assert len(w.reports("A2")) == 1
    assert w.server.request_count("/0/private/AmendOrder") == 1
    # The order is known under the replace's ClOrdID from now on, at the venue's ClOrdID.
    o = w.store.find("FIXGW->OMS", "A1")
    assert o is not None and o.oms_cl_ord_id == "A2" and o.qty == Decimal("0.03")
    assert w.engine.submission_count("FIXGW", o.venue_cl_ord_id) == 2  # order once, amend once
    venue = w.client.query_orders([txid])[txid]
    assert venue.cl_ord_id == o.venue_cl_ord_id


def test_lost_answer_amend_that_never_landed_is_rejected_after_its_deadline(
        world: World) -> None:
    w = world
    txid = _place(w, "B1")
    # Held before processing past the client's timeout and the amend's deadline: the venue
    # refuses it (EService:Deadline elapsed) when it finally looks, so it never lands.
    w.server.set_delay(2.3, 1, after=False, path_prefix="/0/private/AmendOrder")
    _amend(w, "B2", "B1", "0.03", "30100")
    assert w.reports("B2") == []
    w.fallback.poll()  # old figures, deadline not passed yet: still unknown
    assert w.reports("B2") == []
    time.sleep(2.7)
    w.fallback.poll()
    (rej,) = w.reports("B2")
    assert rej[35] == "9" and rej[41] == "B1" and rej[434] == "2"
    assert "did not reach the venue" in rej[58]
    assert w.server.request_count("/0/private/AmendOrder") == 1  # never resent
    venue = w.client.query_orders([txid])[txid]
    assert venue.volume == Decimal("0.02") and venue.price == Decimal("30000.0")
    o = w.store.find("FIXGW->OMS", "B1")
    assert o is not None and o.oms_cl_ord_id == "B1" and o.qty == Decimal("0.02")


def connect_private_ws(w: World) -> tuple[Any, Any]:
    """A simulator WS face on `w`'s engine and the fallback's private WebSocket connected to
    it, as the poller connects it once failed over: (the face, the client). The caller stops
    the face."""
    from gateway.venue_sim.spot_ws import SpotWsServer

    server = SpotWsServer(w.engine, w.server.accounts)
    server.start()
    w.fallback.ws_url = server.url
    w.fallback._manage_ws()  # what the poller does once failed over
    ws = w.fallback.ws
    assert ws is not None and ws.wait_connected(5)
    time.sleep(0.3)  # token fetched and executions subscribed
    return server, ws


def test_ws_add_order_without_an_answer_is_looked_up_not_resent(world: World) -> None:
    """Orders over the private WebSocket while failed over: one whose answer misses the
    client's timeout is looked up over REST by ClOrdID (found: acknowledged once), never sent
    again; with the socket down the next order goes over REST under its own ClOrdID."""
    w = world
    ws_server, ws = connect_private_ws(w)
    try:
        ws.request_timeout = 0.0005  # the venue's answer always comes too late
        w.oms("D", [(11, "W1"), (55, "BTC/USD"), (54, "1"), (38, "0.01"), (40, "2"),
                    (44, "30000"), (59, "1"), (60, "20260101-00:00:00")])
        order = w.store.find("FIXGW->OMS", "W1")
        assert order is not None and order.transport == "ws"
        assert order.venue_cl_ord_id in w.fallback._unresolved  # to be looked up, not resent
        time.sleep(0.3)
        # The executions feed may have told it already (matched by our ClOrdID); the lookup
        # by ClOrdID finds the same order: one acknowledgement either way.
        w.fallback.poll()
        assert order.venue_cl_ord_id not in w.fallback._unresolved
        (ack,) = w.reports("W1")
        assert ack[150] == "0" and ack[17].startswith("R")
        assert w.engine.submission_count("FIXGW", order.venue_cl_ord_id) == 1
        w.fallback.poll()
        assert len(w.reports("W1")) == 1

        ws_server.stop()
        deadline = time.monotonic() + 5
        while ws.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        w.oms("D", [(11, "W2"), (55, "BTC/USD"), (54, "1"), (38, "0.01"), (40, "2"),
                    (44, "30000"), (59, "1"), (60, "20260101-00:00:00")])
        (ack2,) = w.reports("W2")
        assert ack2[150] == "0"
        o2 = w.store.find("FIXGW->OMS", "W2")
        assert o2 is not None and o2.transport == "rest"
        assert w.engine.submission_count("FIXGW", o2.venue_cl_ord_id) == 1
    finally:
        w.fallback.stop()
        ws_server.stop()


def test_order_not_found_before_its_deadline_is_looked_up_again(one_try_world: World) -> None:
    """The AddOrder times out on the client while the venue takes it a little later. A
    lookup in between does not find it; that is not final while the request's deadline has
    not passed, so the order is looked up again and found: no reject, one acknowledgement."""
    w = one_try_world
    w.server.set_delay(1.2, 1, queued=True, path_prefix="/0/private/AddOrder")
    _send_order(w, "U1")
    assert w.reports("U1") == []  # outcome unknown: nothing to tell the OMS yet
    order = w.store.find("FIXGW->OMS", "U1")
    assert order is not None
    assert w.fallback.poll() is False  # not found yet, and not final
    assert w.reports("U1") == []
    deadline = time.monotonic() + 5
    while w.engine.submission_count("FIXGW", order.venue_cl_ord_id) == 0:
        assert time.monotonic() < deadline, "the delayed AddOrder never reached the engine"
        time.sleep(0.05)
    assert w.fallback.poll() is True
    (ack,) = w.reports("U1")
    assert ack[150] == "0" and ack[39] == "0"
    assert w.engine.submission_count("FIXGW", order.venue_cl_ord_id) == 1


def test_order_not_found_past_its_deadline_is_rejected(one_try_world: World) -> None:
    """The AddOrder reaches the venue only after its deadline, which refuses it: once that
    deadline has passed, "not found" is final and the OMS gets the reject."""
    w = one_try_world
    w.server.set_delay(3.0, 1, queued=True, path_prefix="/0/private/AddOrder")
    _send_order(w, "U2")
    order = w.store.find("FIXGW->OMS", "U2")
    assert order is not None
    assert w.fallback.poll() is False
    assert w.reports("U2") == []
    time.sleep(w.fallback.request_deadline_s)
    assert w.fallback.poll() is True
    (rej,) = w.reports("U2")
    assert rej[150] == "8" and "did not reach the venue" in rej[58]
    time.sleep(1.0)  # the delayed request is processed now, past its deadline
    assert w.engine.order_status("FIXGW", cl_ord_id=order.venue_cl_ord_id) is None


def test_failed_lookup_after_a_lost_answer_is_an_unknown_outcome_not_a_reject(
        world: World) -> None:
    """The AddOrder lands but its answer is lost; the client's own lookup then fails (the
    venue busy on every try). That says nothing about the order: it is looked up later, not
    reported rejected, and its acknowledgement reaches the OMS once."""
    w = world
    w.server.set_delay(0.8, 1, after=True, path_prefix="/0/private/AddOrder")
    w.server.fail_next(4, 200, "EService:Busy", path_prefix="/0/private/OpenOrders")
    _send_order(w, "U3")
    order = w.store.find("FIXGW->OMS", "U3")
    assert order is not None
    assert w.reports("U3") == []
    assert w.engine.submission_count("FIXGW", order.venue_cl_ord_id) == 1
    assert w.fallback.poll() is True
    (ack,) = w.reports("U3")
    assert ack[150] == "0"
    assert w.engine.submission_count("FIXGW", order.venue_cl_ord_id) == 1
