"""Post-only is the engine's check, made under its lock together with the matching: a face
that looked at the top of the book and then submitted let an order cross in between (the
synthetic flow trades the perp books too), and the post-only order filled as a taker."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gateway.venue_sim.engine import Event, MatchingEngine, PostOnlyRefused, Side
from gateway.venue_sim.futures_rest import FuturesRestServer

D = Decimal
SYMBOL = "PF_XBTUSD"


def _cross_just_before_submit(engine: MatchingEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a seller cross the book right before the engine takes the next order: the race
    with the synthetic flow, made deterministic."""
    real = engine.submit
    done = False

    def submit(*args: Any, **kwargs: Any) -> list[Event]:
        nonlocal done
        if not done:
            done = True
            real("SIM-FLOW", "cross", SYMBOL, Side.SELL, D("0.0010"), D("44000.0"))
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
