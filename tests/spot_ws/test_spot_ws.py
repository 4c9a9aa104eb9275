"""Kraken spot WS v2 both sides: the simulator's face (SpotWsServer) over a real MatchingEngine
driven by a seeded SyntheticFlow, and the gateway's client (KrakenWsPublic/KrakenWsPrivate), over
real loopback WebSockets. No mocks: the client's book must equal the engine's levels after
thousands of updates, and faults (corrupt checksum, stalled feed, dropped sockets) must heal."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from gateway.transports.kraken_ws import (
    KrakenWsError,
    KrakenWsPrivate,
    KrakenWsPublic,
    KrakenWsRejected,
    loads,
)
from gateway.venue_sim.accounts import Accounts
from gateway.venue_sim.engine import MatchingEngine, Side
from gateway.venue_sim.flow import SyntheticFlow
from gateway.venue_sim.spot_ws import TEXT_INVALID_TOKEN, SpotWsServer
from tests.conftest import wait_until

D = Decimal
BTC, ETH = "BTC/USD", "ETH/USD"
OWNER = "FIXGW"


class Venue:
    def __init__(self) -> None:
        self.engine = MatchingEngine(seed=11)
        self.flow = SyntheticFlow(self.engine, seed=11, symbols=(BTC, ETH))
        self.flow.seed_books()
        self.accounts = Accounts()
        self.server = SpotWsServer(self.engine, self.accounts, heartbeat_interval=0.2)
        self.server.start()

    def steps(self, n: int = 1) -> None:
        for _ in range(n):
            self.flow.step()


@pytest.fixture
def venue() -> Iterator[Venue]:
    v = Venue()
    yield v
    v.server.stop()


def book_matches(client: KrakenWsPublic, engine: MatchingEngine, sym: str) -> bool:
    if not client.is_live(sym):
        return False
    bids, asks = engine.levels(sym, client.depth)
    d = client.books[sym].depth(client.depth)
    return [tuple(lv) for lv in d.bids] == bids and [tuple(lv) for lv in d.asks] == asks


def public(venue: Venue, depth: int = 10, **kw: Any) -> tuple[KrakenWsPublic, list[tuple[str,
                                                                                      str]]]:
    integrity: list[tuple[str, str]] = []
    c = KrakenWsPublic(venue.server.url, [BTC, ETH], depth,
                       on_integrity=lambda s, r: integrity.append((s, r)),
                       backoff_initial=0.05, backoff_max=0.5, **kw)
    c.start()
    wait_until(lambda: c.is_live(BTC) and c.is_live(ETH), what="initial snapshots")
    return c, integrity


# ---- public ------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [10, 25, 1000])
def test_client_book_equals_engine_levels_after_thousands_of_updates(venue: Venue,
                                                                     depth: int) -> None:
    trades: list[Any] = []
    c, integrity = public(venue, depth, on_trade=trades.append)
    try:
        for _ in range(6):
            venue.steps(250)
            for sym in (BTC, ETH):
                wait_until(lambda s=sym: book_matches(c, venue.engine, s),  # type: ignore[misc]
                           what=f"{sym} book to converge")
        assert c.book_updates > 2000
        assert c.resyncs == 0 and integrity == []
        assert trades and all(isinstance(t.price, Decimal) for t in trades)
        assert c.connects == 1
    finally:
        c.stop()


def test_official_checksum_vector_through_client_path() -> None:
    """kraken-api.md section 4 vector, fed as raw JSON text to the client's book handler."""
    bids = ("45283.5/0.10000000 45283.4/1.54582015 45282.1/0.10000000 45281.0/0.10000000 "
            "45280.3/1.54592586 45279.0/0.07990000 45277.6/0.03310103 45277.5/0.30000000 "
            "45277.3/1.54602737 45276.6/0.15445238")
    asks = ("45285.2/0.00100000 45286.4/1.54571953 45286.6/1.54571109 45289.6/1.54560911 "
            "45290.2/0.15890660 45291.8/1.54553491 45294.7/0.04454749 45296.1/0.35380000 "
            "45297.5/0.09945542 45299.5/0.18772827")

    def side(text: str) -> str:
        pairs = (lv.split("/") for lv in text.split())
        return ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in pairs)

    def frame(checksum: int) -> Any:
        return loads('{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",'
                     f'"bids":[{side(bids)}],"asks":[{side(asks)}],"checksum":{checksum},'
                     '"timestamp":"2023-10-06T17:35:55.440295Z"}]}')

    c = KrakenWsPublic("ws://unused/v2", [BTC], 10)
    c.precision[BTC] = (1, 8)
    assert asyncio.run(c._on_message(frame(3310070434))) is True
    assert c.is_live(BTC) and c.resyncs == 0
    assert c.books[BTC].top().bid == (D("45283.5"), D("0.10000000"))
    # One bit off: the client must distrust the book and try to resubscribe (no socket here).
    with pytest.raises(KrakenWsError):
        asyncio.run(c._on_message(frame(3310070435)))
    assert c.resyncs == 1 and not c.is_live(BTC)


def test_corrupted_checksum_resubscribes_and_heals(venue: Venue) -> None:
    c, integrity = public(venue)
    try:
        venue.server.corrupt_next_checksum(BTC)
        def step_until_integrity() -> bool:
            venue.steps(1)
            return bool(integrity)

        wait_until(step_until_integrity, what="integrity callback")
        assert integrity[0] == (BTC, "checksum")
        venue.steps(100)
        wait_until(lambda: book_matches(c, venue.engine, BTC), what="book after resync")
        assert c.resyncs == 1 and c.connects == 1
        # ETH's updates of the same steps may still be in flight when BTC's book matches.
        wait_until(lambda: book_matches(c, venue.engine, ETH), what="ETH book, never resynced")
        assert c.resyncs == 1
    finally:
        c.stop()


def test_stalled_feed_reconnects(venue: Venue) -> None:
    c, integrity = public(venue, heartbeat_timeout=1.0)
    try:
        venue.steps(20)
        wait_until(lambda: book_matches(c, venue.engine, BTC))
        venue.server.stall(None, 1.6)
        venue.steps(20)  # changes the venue does not publish while stalled
        wait_until(lambda: (BTC, "disconnected") in integrity, timeout=4.0,
                   what="silence deadline")
        assert c.stale_disconnects >= 1
        wait_until(lambda: c.connects >= 2 and book_matches(c, venue.engine, BTC)
                   and book_matches(c, venue.engine, ETH), timeout=10.0, what="fresh books")
        venue.steps(50)
        wait_until(lambda: book_matches(c, venue.engine, BTC), what="updates after reconnect")
    finally:
        c.stop()


def test_dropped_connection_reconnects(venue: Venue) -> None:
    c, _ = public(venue)
    try:
        venue.server.drop_all()
        venue.steps(30)
        wait_until(lambda: c.connects >= 2 and book_matches(c, venue.engine, BTC),
                   what="reconnect after drop")
    finally:
        c.stop()


def test_instrument_precision_and_unknown_symbol(venue: Venue) -> None:
    c = KrakenWsPublic(venue.server.url, [BTC, "DOGE/USD"], 10, backoff_initial=0.05)
    c.start()
    try:
        wait_until(lambda: c.is_live(BTC), what="BTC live")
        assert c.precision == {BTC: (1, 8)}
        assert not c.is_live("DOGE/USD")
    finally:
        c.stop()


# ---- private -----------------------------------------------------------------------------------


class Execs:
    def __init__(self) -> None:
        self.q: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []

    def __call__(self, item: dict[str, Any]) -> None:
        self.q.put(item)

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0,
             pump: Callable[[], None] | None = None) -> dict[str, Any]:
        for item in self.seen:
            if pred(item):
                return item
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pump is not None:
                pump()
            try:
                item = self.q.get(timeout=0.01)
            except queue.Empty:
                continue
            self.seen.append(item)
            if pred(item):
                return item
        raise AssertionError(f"no matching execution; seen {self.seen[-5:]}")


def private(venue: Venue, execs: Execs, token: Callable[[], str] | None = None
            ) -> tuple[KrakenWsPrivate, list[str]]:
    issued: list[str] = []

    def provider() -> str:
        t = venue.accounts.issue_token(OWNER)
        issued.append(t)
        return t

    p = KrakenWsPrivate(venue.server.url, token or provider, execs, request_timeout=3.0,
                        backoff_initial=0.05)
    p.start()
    assert p.wait_connected(5.0)
    return p, issued


def _resting_buy_price(venue: Venue) -> Decimal:
    """A BTC buy price far below the market (half the bid, on the tick): the order rests."""
    bid, _ = venue.engine.top_of_book(BTC)
    assert bid is not None
    return (bid * D("0.5")).quantize(D("0.1"))


def test_add_order_new_then_fill_then_cancel(venue: Venue) -> None:
    execs = Execs()
    p, issued = private(venue, execs)
    try:
        bid, ask = venue.engine.top_of_book(BTC)
        assert bid is not None and ask is not None
        px = bid + D("0.1") if ask - bid > D("0.1") else bid
        res = p.add_order(symbol=BTC, side="buy", order_type="limit", order_qty=D("0.0001"),
                          limit_price=px, time_in_force="gtc", cl_ord_id="ws-buy-1")
        assert res["cl_ord_id"] == "ws-buy-1" and res["order_id"].startswith("O")
        oid = res["order_id"]
        new = execs.wait(lambda i: i["order_id"] == oid and i["exec_type"] == "new")
        assert new["order_status"] == "new" and new["limit_price"] == px
        assert new["order_qty"] == D("0.00010000") and new["side"] == "buy"
        trade = execs.wait(lambda i: i["order_id"] == oid and i["exec_type"] == "trade",
                           timeout=15.0, pump=venue.steps)
        assert isinstance(trade["last_qty"], Decimal) and trade["last_price"] <= px
        done = execs.wait(lambda i: i["order_id"] == oid and i["exec_type"] == "filled",
                          timeout=15.0, pump=venue.steps)
        assert done["order_status"] == "filled" and done["cum_qty"] == D("0.0001")

        # A resting order far from the market, canceled by cl_ord_id.
        far = (bid * D("0.5")).quantize(D("0.1"))
        res2 = p.add_order(symbol=BTC, side="buy", order_type="limit", order_qty=D("0.001"),
                           limit_price=far, cl_ord_id="ws-buy-2")
        execs.wait(lambda i: i["order_id"] == res2["order_id"] and i["exec_type"] == "new")
        out = p.cancel_order(cl_ord_id=["ws-buy-2"])
        assert out == [{"order_id": res2["order_id"], "cl_ord_id": "ws-buy-2"}]
        cx = execs.wait(lambda i: i["order_id"] == res2["order_id"]
                        and i["exec_type"] == "canceled")
        assert cx["order_status"] == "canceled"
        assert venue.engine.open_orders(OWNER) == []

        with pytest.raises(KrakenWsRejected) as unknown:
            p.cancel_order(order_id=["OAAAAA-AAAAA-AAAAAA"])
        assert unknown.value.error.startswith("EOrder:Unknown order")
        with pytest.raises(KrakenWsRejected) as small:
            p.add_order(symbol=BTC, side="sell", order_type="limit", order_qty=D("0.00000001"),
                        limit_price=ask)
        assert small.value.error == "EOrder:Order minimum not met"
        # Kraken's deadline: a request that reaches the venue after it never reaches the book.
        with pytest.raises(KrakenWsRejected) as late:
            p.add_order(symbol=BTC, side="buy", order_type="limit", order_qty=D("0.001"),
                        limit_price=far, cl_ord_id="late-1", deadline="2020-01-01T00:00:00Z")
        assert late.value.error == "EService:Deadline elapsed"
        assert venue.engine.order_status(OWNER, cl_ord_id="late-1") is None
        assert len(issued) == 1
    finally:
        p.stop()


def test_amend_order_in_place_then_refusals(venue: Venue) -> None:
    execs = Execs()
    p, _issued = private(venue, execs)
    try:
        far = _resting_buy_price(venue)
        res = p.add_order(symbol=BTC, side="buy", order_type="limit", order_qty=D("0.001"),
                          limit_price=far, cl_ord_id="ws-amend-1")
        oid = res["order_id"]
        execs.wait(lambda i: i["order_id"] == oid and i["exec_type"] == "new")
        out = p.amend_order(order_id=oid, order_qty=D("0.002"), limit_price=far - 1)
        assert out["order_id"] == oid and out["amend_id"]
        amended = execs.wait(lambda i: i["order_id"] == oid and i["exec_type"] == "amended")
        assert amended["order_qty"] == D("0.002") and amended["limit_price"] == far - 1
        # In place: the same order_id and cl_ord_id, open, with the new figures.
        (snap,) = venue.engine.open_orders(OWNER)
        assert (snap.order_id, snap.cl_ord_id) == (oid, "ws-amend-1")
        assert (snap.qty, snap.price) == (D("0.002"), far - 1)
        # By cl_ord_id, quantity only.
        assert p.amend_order(cl_ord_id="ws-amend-1", order_qty=D("0.003"))["cl_ord_id"] == (
            "ws-amend-1")
        (snap,) = venue.engine.open_orders(OWNER)
        assert (snap.qty, snap.price) == (D("0.003"), far - 1)
        # Kraken's deadline, as for add_order: an amend that arrives after it is not applied
        # (the gateway settles an amend whose answer was lost by it).
        with pytest.raises(KrakenWsRejected) as late:
            p.amend_order(order_id=oid, order_qty=D("0.005"), deadline="2020-01-01T00:00:00Z")
        assert late.value.error == "EService:Deadline elapsed"
        (snap,) = venue.engine.open_orders(OWNER)
        assert snap.qty == D("0.003")

        p.cancel_order(order_id=[oid])
        execs.wait(lambda i: i["order_id"] == oid and i["exec_type"] == "canceled")
        with pytest.raises(KrakenWsRejected) as closed:
            p.amend_order(order_id=oid, order_qty=D("0.004"))
        assert closed.value.error.startswith("EOrder:Unknown order")
        with pytest.raises(KrakenWsRejected) as unknown:
            p.amend_order(order_id="OAAAAA-AAAAA-AAAAAA", limit_price=far)
        assert unknown.value.error.startswith("EOrder:Unknown order")
        with pytest.raises(ValueError, match="order_qty and/or limit_price"):
            p.amend_order(order_id=oid)
    finally:
        p.stop()


def test_amend_below_the_filled_quantity_cancels_the_remainder(venue: Venue) -> None:
    """Kraken's amend_order: below the filled quantity the remainder is canceled; the order
    keeps its fills and is not reported filled."""
    execs = Execs()
    p, _issued = private(venue, execs)
    try:
        bid, ask = venue.engine.top_of_book(BTC)
        assert bid is not None and ask is not None and ask - bid > D("0.1")
        px = bid + D("0.1")  # the best bid, so the sell below fills this order first
        oid = p.add_order(symbol=BTC, side="buy", order_type="limit", order_qty=D("0.003"),
                          limit_price=px, cl_ord_id="ws-amend-cx")["order_id"]
        venue.engine.submit("MAKER", "m-part", BTC, Side.SELL, D("0.002"), px)
        execs.wait(lambda i: i["order_id"] == oid and i["exec_type"] == "trade")
        assert p.amend_order(order_id=oid, order_qty=D("0.001"))["order_id"] == oid
        cx = execs.wait(lambda i: i["order_id"] == oid and i["exec_type"] == "canceled")
        assert (cx["order_status"], cx["cum_qty"], cx["leaves_qty"]) == (
            "canceled", D("0.002"), D(0))
        assert venue.engine.open_orders(OWNER) == []
        assert not any(i["order_id"] == oid and i["exec_type"] == "filled" for i in execs.seen)
    finally:
        p.stop()


def test_reconnect_refetches_token_and_snapshots_open_orders(venue: Venue) -> None:
    execs = Execs()
    p, issued = private(venue, execs)
    try:
        res = p.add_order(symbol=BTC, side="buy", order_type="limit", order_qty=D("0.001"),
                          limit_price=_resting_buy_price(venue), cl_ord_id="keep")
        venue.server.drop_all()
        snap = execs.wait(lambda i: bool(i.get("snapshot")) and i["order_id"] == res["order_id"])
        assert snap["cl_ord_id"] == "keep" and snap["order_status"] == "new"
        assert len(issued) == 2 and issued[0] != issued[1]
        wait_until(lambda: p.connected)
        assert p.cancel_order(order_id=[res["order_id"]]) == [{"order_id": res["order_id"]}]
    finally:
        p.stop()


def test_invalid_token_is_refused(venue: Venue) -> None:
    execs = Execs()
    p, _ = private(venue, execs, token=lambda: "not-a-token")
    try:
        wait_until(lambda: p.last_error is not None, what="executions refusal")
        assert p.last_error == TEXT_INVALID_TOKEN
        # The refused connection is dropped (a fresh token may work); while every token is
        # refused, an order is refused by the venue or finds no connection, never placed.
        wait_until(lambda: p.failed_attempts >= 2, what="reconnects after the refusal")
        with pytest.raises(KrakenWsError) as exc:
            p.add_order(symbol=BTC, side="buy", order_type="market", order_qty=D("0.001"))
        assert not isinstance(exc.value, KrakenWsRejected) or exc.value.error == \
            TEXT_INVALID_TOKEN
        assert venue.engine.open_orders(OWNER) == []
    finally:
        p.stop()


def test_request_timeout_is_a_clear_error(venue: Venue) -> None:
    """A venue that never answers: the caller gets KrakenWsTimeout, not a hang."""
    execs = Execs()
    p, _ = private(venue, execs)
    p.request_timeout = 0.3
    try:
        gate = threading.Event()
        real = venue.engine.submit

        def slow(*a: Any, **k: Any) -> Any:
            gate.wait(2.0)
            return real(*a, **k)

        venue.engine.submit = slow  # type: ignore[method-assign]
        with pytest.raises(KrakenWsError, match="no response"):
            p.add_order(symbol=BTC, side="buy", order_type="limit", order_qty=D("0.001"),
                        limit_price=D("1000.0"))
        gate.set()
    finally:
        p.stop()


def test_refused_token_reconnects_with_a_fresh_one(venue: Venue) -> None:
    """A token the venue refuses (expired: they are short-lived, kraken-api.md §4) must not
    leave a socket that looks connected but carries no executions: the connection is dropped
    and the next one fetches a fresh token, with backoff."""
    execs = Execs()
    issued: list[str] = []

    def provider() -> str:
        t = "expired-token" if not issued else venue.accounts.issue_token(OWNER)
        issued.append(t)
        return t

    p = KrakenWsPrivate(venue.server.url, provider, execs, request_timeout=3.0,
                        backoff_initial=0.05)
    p.start()
    try:
        wait_until(lambda: len(issued) >= 2, what="a second token")
        wait_until(lambda: p.connected)
        res = p.add_order(symbol=BTC, side="buy", order_type="limit", order_qty=D("0.001"),
                          limit_price=_resting_buy_price(venue), cl_ord_id="fresh")
        execs.wait(lambda i: i.get("order_id") == res["order_id"] and not i.get("snapshot"))
        assert p.failed_attempts >= 1
    finally:
        p.stop()
