"""The pre-trade gate as the router feeds it, in process (the venue session is a recorder, as
in tests/unit/test_router_doubt): what an OMS's NewOrderSingle becomes once the gate has
valued it - sent to the venue, or rejected with a Text naming the rule and its figures."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gateway.config.risk import GateConfig
from gateway.fix import messages as m
from gateway.marketdata.book import Book
from gateway.risk.gate import Gate
from tests.conftest import order_fields
from tests.unit.test_router_doubt import SID, _World, world

__all__ = ["world"]  # the fixture, shared with test_router_doubt


def _gate(w: _World, **risk: Any) -> None:
    """A gate with a fresh BTC/USD book at mid 45000."""
    w.router.gate = Gate(GateConfig.model_validate(risk),
                         lambda s: (Decimal("45000"), 0.1), lambda s: None)


def _send(w: _World, fields: list[tuple[int, str]]) -> None:
    msg = m.new_message("D")
    for tag, value in fields:
        msg.setField(tag, value)
    w.router.on_oms_message(msg, SID, {str(t): v for t, v in fields} | {"35": "D"})


def _answers(w: _World, cl: str) -> list[tuple[str, str]]:
    """(ExecType, Text) of the OMS's ExecutionReports for `cl`."""
    return [(r[150], r.get(58, "")) for r in w.oms_got if r.get(35) == "8" and r.get(11) == cl]


def _sent_to_venue(w: _World) -> list[str]:
    by_venue_id = {o.venue_cl_ord_id: o.oms_cl_ord_id for o in w.store.orders.values()}
    return [by_venue_id[s[11]] for s in w.venue.sent if s[35] == "D"]


def test_a_resting_bid_inside_the_notional_limit_reaches_the_venue(world: _World) -> None:
    """23 BTC bid at 43000 is 989,000 USD: inside a 1,000,000 USD limit whatever the book, as
    a buy pays its limit or less. It used to be valued at mid (1,035,000 USD) and rejected. A
    sell at the same price fills at the bids, so it is still valued at mid and rejected with
    the rule and the figures in Text."""
    w = world
    _gate(w, max_notional_usd="1000000")
    _send(w, order_fields("BID", "1", "23", "43000"))
    assert _sent_to_venue(w) == ["BID"], _answers(w, "BID")
    _send(w, order_fields("ASK", "2", "23", "43000"))
    assert _sent_to_venue(w) == ["BID"]
    assert _answers(w, "ASK") == [(
        "8", "blocked by max_notional: 1,035,000 USD > limit 1,000,000 USD (23 x mid 45000)")]


def test_a_market_buy_is_rejected_at_the_asks_it_would_pay_naming_them(world: _World) -> None:
    """22 BTC at mid 45000 is 990,000 USD, within a 990,000 limit; the book's best ask is
    45010, where a market buy of 22 pays 990,220 USD. Valued at mid it went to the venue;
    now it is rejected and the Text names the best ask it was valued at."""
    w = world
    book = Book("BTC/USD")
    book.apply_snapshot([(Decimal("44990"), Decimal("30"))], [(Decimal("45010"), Decimal("30"))])
    w.router.gate = Gate(GateConfig.model_validate({"max_notional_usd": "990000"}),
                         lambda s: (book.mid(), 0.1), lambda s: None, book=lambda s: book)
    _send(w, order_fields("MKT", "1", "22", None))
    assert _sent_to_venue(w) == []
    assert _answers(w, "MKT") == [(
        "8", "blocked by max_notional: 990,220 USD > limit 990,000 USD (22 x best ask 45010)")]
    _send(w, order_fields("MKT2", "1", "21.99", None))
    assert _sent_to_venue(w) == ["MKT2"]
