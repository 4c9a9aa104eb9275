"""A post-only order is an order first: invalid input (an off-tick price, a quantity under the
minimum, a ClOrdID in use) is refused as such wherever the book is, and only a valid order is
then refused for crossing. Refused as "post-only", a client moves the price away from the book
and is refused again for the tick it never heard about. And post-only is for limit orders: a
market order flagged post-only took liquidity as a taker."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest

from gateway.venue_sim.accounts import Accounts, ApiAccount
from gateway.venue_sim.engine import (
    TEXT_DUPLICATE,
    TEXT_INVALID_PRICE,
    TEXT_INVALID_VOLUME,
    TEXT_ORDER_MINIMUM,
    TEXT_POST_ONLY_LIMIT,
    MatchingEngine,
    OrdType,
    RejectCode,
    Rejected,
    Side,
    TimeInForce,
)
from gateway.venue_sim.spot_rest import SpotRestServer
from tests.venue_sim.sim_rest import private_call

D = Decimal
BTC = "BTC/USD"  # tick 0.1, min 0.0001


def _engine_with_ask(price: str = "45000.0") -> MatchingEngine:
    engine = MatchingEngine()
    engine.submit("M", "s1", BTC, Side.SELL, D("0.01"), D(price))
    return engine


@pytest.mark.parametrize(("cl", "qty", "price", "code", "text"), [
    ("b1", "0.01", "45000.05", RejectCode.OTHER, TEXT_INVALID_PRICE),          # off the tick
    ("b1", "0.00001", "45000.0", RejectCode.INCORRECT_QUANTITY, TEXT_ORDER_MINIMUM),
    ("b1", "0.000000001", "45000.0", RejectCode.INCORRECT_QUANTITY, TEXT_INVALID_VOLUME),
    ("live", "0.01", "45000.0", RejectCode.DUPLICATE_ORDER, TEXT_DUPLICATE),  # ClOrdID in use
])
def test_an_invalid_post_only_order_that_would_cross_is_rejected_for_what_is_invalid(
        cl: str, qty: str, price: str, code: RejectCode, text: str) -> None:
    engine = _engine_with_ask()
    engine.submit("A", "live", BTC, Side.BUY, D("0.01"), D("44000.0"))
    (ev,) = engine.submit("A", cl, BTC, Side.BUY, D(qty), D(price), post_only=True)
    assert isinstance(ev, Rejected) and ev.reason_code is code, ev
    assert ev.text.startswith(text), ev.text
    assert engine.levels(BTC)[1] == [(D("45000.0"), D("0.01"))]  # the ask is untouched


def test_a_post_only_market_order_is_rejected_not_filled_as_a_taker() -> None:
    engine = _engine_with_ask()
    (ev,) = engine.submit("A", "m1", BTC, Side.BUY, D("0.01"), None, OrdType.MARKET,
                          TimeInForce.IOC, post_only=True)
    assert isinstance(ev, Rejected), ev
    assert (ev.reason_code, ev.text) == (RejectCode.UNSUPPORTED_ORDER_CHARACTERISTIC,
                                         TEXT_POST_ONLY_LIMIT)
    assert engine.levels(BTC)[1] == [(D("45000.0"), D("0.01"))]


KEY = "pv"
SECRET = base64.b64encode(b"post-only validation secret, 40 bytes!!").decode()


def test_spot_rest_off_tick_post_order_that_would_cross_answers_invalid_price() -> None:
    engine = _engine_with_ask()
    srv = SpotRestServer(engine, Accounts([ApiAccount(KEY, SECRET, "A")]))
    try:
        answer = private_call(srv, KEY, SECRET, "AddOrder", pair="XBTUSD", type="buy",
                              ordertype="limit", price="45000.05", volume="0.01",
                              oflags="post")
        (error,) = answer["error"]
        assert error.startswith(TEXT_INVALID_PRICE), answer
    finally:
        srv.close()
