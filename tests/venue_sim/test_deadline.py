"""Kraken's ``deadline`` is checked where the request is processed, under the engine's lock: a
request that waits for the engine past its deadline never lands. A client's failover treats
"deadline passed and not found" as final, so one that landed late would be an order it never
knows about."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from gateway.transports.kraken_ws import KrakenWsPrivate, KrakenWsRejected
from gateway.venue_sim.accounts import Accounts, ApiAccount
from gateway.venue_sim.deadline import TEXT_ELAPSED, Deadline, DeadlineRefused
from gateway.venue_sim.engine import Event, MatchingEngine, Side
from gateway.venue_sim.spot_rest import SpotRestServer
from gateway.venue_sim.spot_ws import SpotWsServer
from tests.venue_sim.sim_rest import private_call

D = Decimal
BTC = "BTC/USD"
OWNER = "FIXGW"
KEY = "k"
SECRET = base64.b64encode(b"deadline test secret, forty bytes or more").decode()


class WallClock:
    """Epoch seconds that move only when the test says; records the threads that read it."""

    def __init__(self) -> None:
        self.now = time.time()
        self.readers: list[int] = []

    def __call__(self) -> float:
        self.readers.append(threading.get_ident())
        return self.now

    def ns(self) -> int:
        return int(self() * 1e9)


class EngineBusy:
    """Holds the engine's lock: another caller's call whose listener blocks until released,
    as a long call (or a slow face) keeps every other request waiting for the engine."""

    def __init__(self, engine: MatchingEngine) -> None:
        self.engine = engine
        self.inside = threading.Event()
        self.release = threading.Event()
        self._armed = True
        engine.add_listener(self._listener)

    def _listener(self, events: tuple[Event, ...]) -> None:
        if self._armed:
            self._armed = False
            self.inside.set()
            self.release.wait(10.0)

    def __enter__(self) -> EngineBusy:
        threading.Thread(target=self.engine.submit, daemon=True,
                         args=("OTHER", "busy", BTC, Side.BUY, D("0.001"), D("1000.0"))).start()
        assert self.inside.wait(5.0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()


def rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")


def waits_for_the_engine(clock: WallClock, fn: Any) -> tuple[threading.Thread, list[Any]]:
    """Run ``fn`` on a thread until the request has read the clock (its arrival check passed;
    on the WS face's own thread for WS) and then a moment more, so it is waiting for the
    engine's lock."""
    out: list[Any] = []
    before = len(clock.readers)
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    deadline = time.monotonic() + 5.0
    while len(clock.readers) == before:
        assert time.monotonic() < deadline, "the request never checked its deadline"
        time.sleep(0.01)
    time.sleep(0.2)
    return t, out


def test_engine_refuses_a_request_whose_deadline_passed_without_a_trace() -> None:
    clock = WallClock()
    engine = MatchingEngine()
    seen: list[Event] = []
    engine.add_listener(seen.extend)
    late = Deadline(clock.now - 0.001, clock)
    with pytest.raises(DeadlineRefused) as refused:
        engine.submit(OWNER, "c1", BTC, Side.BUY, D("0.001"), D("1000.0"), deadline=late)
    assert refused.value.error == TEXT_ELAPSED
    assert seen == [] and engine.submission_count(OWNER, "c1") == 0
    engine.submit(OWNER, "c2", BTC, Side.BUY, D("0.001"), D("1000.0"),
                  deadline=Deadline(clock.now + 1, clock))
    with pytest.raises(DeadlineRefused):
        engine.replace(OWNER, "c2", "c2", D("0.002"), deadline=late)
    snap = engine.order_status(OWNER, "c2")
    assert snap is not None and snap.qty == D("0.001")


# ---- REST ----------------------------------------------------------------------------------------

def rest(srv: SpotRestServer, method: str, **params: str) -> dict[str, Any]:
    return private_call(srv, KEY, SECRET, method, **params)


@pytest.fixture
def rest_venue() -> Iterator[tuple[MatchingEngine, SpotRestServer, WallClock]]:
    clock = WallClock()
    engine = MatchingEngine()
    srv = SpotRestServer(engine, Accounts([ApiAccount(KEY, SECRET, OWNER)]),
                         wall_clock_ns=clock.ns)
    yield engine, srv, clock
    srv.close()


def test_rest_add_order_that_waited_past_its_deadline_for_the_engine_never_lands(
        rest_venue: tuple[MatchingEngine, SpotRestServer, WallClock]) -> None:
    engine, srv, clock = rest_venue
    with EngineBusy(engine):
        t, out = waits_for_the_engine(clock, lambda: rest(
            srv, "AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="1000.0",
            volume="0.001", cl_ord_id="late-1", deadline=rfc3339(clock.now + 2)))
        clock.now += 3  # the deadline passes while the request waits for the engine
    t.join(5.0)
    assert [o["error"] for o in out] == [[TEXT_ELAPSED]]
    assert engine.order_status(OWNER, cl_ord_id="late-1") is None
    assert engine.submission_count(OWNER, "late-1") == 0


def test_rest_amend_that_waited_past_its_deadline_for_the_engine_changes_nothing(
        rest_venue: tuple[MatchingEngine, SpotRestServer, WallClock]) -> None:
    engine, srv, clock = rest_venue
    placed = rest(srv, "AddOrder", pair="XBTUSD", type="buy", ordertype="limit",
                  price="1000.0", volume="0.001", cl_ord_id="a1")
    assert placed["error"] == []
    with EngineBusy(engine):
        t, out = waits_for_the_engine(clock, lambda: rest(
            srv, "AmendOrder", cl_ord_id="a1", order_qty="0.002",
            deadline=rfc3339(clock.now + 2)))
        clock.now += 3
    t.join(5.0)
    assert [o["error"] for o in out] == [[TEXT_ELAPSED]]
    snap = engine.order_status(OWNER, cl_ord_id="a1")
    assert snap is not None and snap.qty == D("0.001")


# ---- WS v2 ---------------------------------------------------------------------------------------


def test_ws_add_order_that_waited_past_its_deadline_for_the_engine_never_lands() -> None:
    clock = WallClock()
    engine = MatchingEngine()
    accounts = Accounts()
    server = SpotWsServer(engine, accounts, heartbeat_interval=0.2, wall_clock=clock)
    server.start()
    seen: list[dict[str, Any]] = []
    p = KrakenWsPrivate(server.url, lambda: accounts.issue_token(OWNER), seen.append,
                        request_timeout=5.0, backoff_initial=0.05)
    p.start()
    try:
        assert p.wait_connected(5.0)
        # Once an execution arrives, the face has taken the executions subscription (whose
        # open-orders snapshot would otherwise wait for the busy engine on the face's loop).
        p.add_order(symbol=BTC, side="buy", order_type="limit", order_qty=D("0.001"),
                    limit_price=D("1000.0"), cl_ord_id="ws-first")
        deadline = time.monotonic() + 5.0
        while not any(i.get("cl_ord_id") == "ws-first" for i in seen):
            assert time.monotonic() < deadline, "no execution for the first order"
            time.sleep(0.01)

        def add() -> object:
            try:
                return p.add_order(symbol=BTC, side="buy", order_type="limit",
                                   order_qty=D("0.001"), limit_price=D("1000.0"),
                                   cl_ord_id="ws-late", deadline=rfc3339(clock.now + 2))
            except KrakenWsRejected as exc:
                return exc.error

        with EngineBusy(engine):
            t, out = waits_for_the_engine(clock, add)
            clock.now += 3
        t.join(5.0)
        assert out == [TEXT_ELAPSED]
        assert engine.order_status(OWNER, cl_ord_id="ws-late") is None
    finally:
        p.stop()
        server.stop()
