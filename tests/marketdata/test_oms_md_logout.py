"""OMS market-data subscriptions end when the OMS session logs out (rules of engagement,
section 3), also when it logs back on and subscribes again before the book next moves."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import quickfix as fix

from gateway.fix import messages as m
from gateway.marketdata.book import Book
from gateway.marketdata.fanout import OmsMarketData

D = Decimal


def _request(req_id: str, symbol: str) -> fix.Message:
    v = m.new_message("V")
    for tag, value in ((262, req_id), (263, "1"), (264, "5"), (265, "1")):
        v.setField(tag, value)
    g = fix.Group(146, 55)
    g.setField(55, symbol)
    v.addGroup(g)
    return v


def test_a_subscription_from_before_a_logout_is_not_revived_by_a_new_one() -> None:
    book = Book("BTC/USD")
    book.apply_snapshot([(D("100"), D("1"))], [(D("101"), D("1"))])
    feed = SimpleNamespace(books={"BTC/USD": book}, depth=10, instruments={}, listeners=[])
    fanout = OmsMarketData(feed)  # type: ignore[arg-type]
    got: list[str] = []

    def send(msg: fix.Message) -> None:
        got.append(f"{m.msg_type(msg)}:{msg.getField(m.MD_REQ_ID)}")

    fanout.on_request(_request("OLD", "BTC/USD"), "FIXGW->OMS", send)
    fanout.drop("FIXGW->OMS")  # logged out; the book has not moved since
    fanout.on_request(_request("NEW", "BTC/USD"), "FIXGW->OMS", send)
    assert got == ["W:OLD", "W:NEW"]
    book.apply_update("bid", D("100"), D("2"))
    fanout.on_update("BTC/USD", book, [])
    assert got[2:] == ["X:NEW"]
    assert fanout.subscriber_count() == 1
