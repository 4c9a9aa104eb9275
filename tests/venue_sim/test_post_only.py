"""Post-only is the engine's check, made under its lock together with the matching: a face
that looked at the top of the book and then submitted let an order cross in between (the
synthetic flow trades the perp books too), and the post-only order filled as a taker."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pytest

from gateway.transports.kraken_ws import KrakenWsPrivate, KrakenWsRejected
from gateway.venue_sim.accounts import Accounts, ApiAccount
from gateway.venue_sim.engine import Event, MatchingEngine, PostOnlyRefused, Side
from gateway.venue_sim.futures_rest import FuturesRestServer
from gateway.venue_sim.spot_rest import SpotRestServer
from gateway.venue_sim.spot_ws import SpotWsServer
from tests.venue_sim.sim_rest import private_call

D = Decimal
SYMBOL = "PF_XBTUSD"


def _cross_just_before_submit(engine: MatchingEngine, monkeypatch: pytest.MonkeyPatch,
                              symbol: str = SYMBOL, price: str = "44000.0",
                              qty: str = "0.0010") -> None:
    """Make a seller cross the book right before the engine takes the next order: the race
    with the synthetic flow, made deterministic."""
    real = engine.submit
    done = False

    def submit(*args: Any, **kwargs: Any) -> list[Event]:
        nonlocal done
        if not done:
            done = True
            real("SIM-FLOW", "cross", symbol, Side.SELL, D(qty), D(price))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "submit", submit)


def test_futures_post_order_crossed_while_placed_is_refused_not_filled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine = MatchingEngine()
    srv = FuturesRestServer("default", engine=engine, owner="FUT")
    try:
        assert srv.orders is not None
        _cross_just_before_submit(engine, monkeypatch)
        answer: Any = srv.orders.handle("/sendorder", {
            "orderType": ["post"], "side": ["buy"], "symbol": [SYMBOL], "size": ["0.0010"],
            "limitPrice": ["44500.0"], "cliOrdId": ["p1"]})
        assert answer["sendStatus"]["status"] == "postWouldExecute", answer
        assert answer["sendStatus"]["orderEvents"] == []
        assert engine.open_orders("FUT") == [] and engine.order_status("FUT", "p1") is None
        assert engine.levels(SYMBOL)[1] == [(D("44000.0"), D("0.0010"))]  # the seller is intact
        assert engine.submission_count("FUT", "p1") == 0
    finally:
        srv.close()


def test_engine_post_only_rests_when_it_does_not_cross_and_is_refused_when_it_does() -> None:
    engine = MatchingEngine()
    engine.submit("M", "s1", SYMBOL, Side.SELL, D("0.0010"), D("45000.0"))
    with pytest.raises(PostOnlyRefused) as refused:
        engine.submit("A", "b1", SYMBOL, Side.BUY, D("0.0010"), D("45000.0"), post_only=True)
    assert refused.value.error.startswith("EOrder:")
    assert engine.submission_count("A", "b1") == 0
    events = engine.submit("A", "b2", SYMBOL, Side.BUY, D("0.0010"), D("44999.5"),
                           post_only=True)
    assert engine.open_orders("A")[0].cl_ord_id == "b2" and events


KEY = "kp"
SECRET = base64.b64encode(b"post-only test secret, forty bytes long!").decode()
BTC = "BTC/USD"


def test_spot_rest_post_order_crossed_while_placed_is_refused_not_filled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """AddOrder oflags=post: Kraken spot refuses it (EOrder:Post only order) rather than let
    it take; the simulator ignored the flag and filled it as a taker."""
    engine = MatchingEngine()
    srv = SpotRestServer(engine, Accounts([ApiAccount(KEY, SECRET, "FIXGW")]))
    try:
        _cross_just_before_submit(engine, monkeypatch, BTC, "44000.0", "0.01")
        out = private_call(srv, KEY, SECRET, "AddOrder", pair="XBTUSD", type="buy",
                           ordertype="limit", price="44500.0", volume="0.01", oflags="post",
                           cl_ord_id="sp1")
        assert out["error"] == ["EOrder:Post only order"], out
        assert engine.order_status("FIXGW", "sp1") is None
        assert engine.levels(BTC)[1] == [(D("44000.0"), D("0.01000000"))]
        rests = private_call(srv, KEY, SECRET, "AddOrder", pair="XBTUSD", type="buy",
                             ordertype="limit", price="43000.0", volume="0.01",
                             oflags="fciq,post", cl_ord_id="sp2")
        assert rests["error"] == [] and engine.open_orders("FIXGW")[0].cl_ord_id == "sp2"
    finally:
        srv.close()


def test_spot_ws_post_only_order_crossed_while_placed_is_refused_not_filled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine = MatchingEngine()
    accounts = Accounts()
    server = SpotWsServer(engine, accounts, heartbeat_interval=0.2)
    server.start()
    p = KrakenWsPrivate(server.url, lambda: accounts.issue_token("FIXGW"), lambda _: None,
                        request_timeout=3.0, backoff_initial=0.05)
    p.start()
    try:
        assert p.wait_connected(5.0)
        _cross_just_before_submit(engine, monkeypatch, BTC, "44000.0", "0.01")
        with pytest.raises(KrakenWsRejected) as refused:
            p.add_order(symbol=BTC, side="buy", order_type="limit", order_qty=D("0.01"),
                        limit_price=D("44500.0"), cl_ord_id="wp1", post_only=True)
        assert refused.value.error == "EOrder:Post only order"
        assert engine.order_status("FIXGW", "wp1") is None
        assert engine.levels(BTC)[1] == [(D("44000.0"), D("0.01000000"))]
    finally:
        p.stop()
        server.stop()
