"""The spot WS face makes up an engine ClOrdID where Kraken's request has none (an add_order
without cl_ord_id, every cancel_order), as the REST face does. Its were plain "WS-1" and
"WSX-1": a client's own cl_ord_id "WS-1" was then refused as a duplicate, the executions
channel showed the made-up id as the order's cl_ord_id (REST hid it), and a WS cancel went out
on the account's FIX session as 11=WSX-1 41=<the order's>, a ClOrdID no client sent. They are
now marked as made up (`is_made_up_cl_ord_id`) and shown to no client."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest

from gateway.transports.kraken_ws import KrakenWsPrivate, KrakenWsRejected
from gateway.venue_sim import engine as e
from gateway.venue_sim.accounts import ApiAccount
from gateway.venue_sim.server import VenueSimulator
from tests.fix_session.rawclient import fields_of
from tests.venue_sim.sim_rest import private_call
from tests.venue_sim.test_fix_face_fidelity import (
    OWNER,
    REST_KEY,
    REST_SECRET,
    new_order,
    report,
    trading_client,
)

D = Decimal


class _Ws:
    """The gateway's own WS client on the venue's private socket, its executions kept."""

    def __init__(self, venue: VenueSimulator) -> None:
        self.items: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.client = KrakenWsPrivate(venue.spot_ws.url,
                                      lambda: venue.accounts.issue_token(OWNER), self._on,
                                      request_timeout=5.0, backoff_initial=0.05)

    def _on(self, item: dict[str, Any]) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def item(self, order_id: str, exec_type: str) -> dict[str, Any]:
        with self._cond:
            assert self._cond.wait_for(lambda: any(
                i.get("order_id") == order_id and i.get("exec_type") == exec_type
                for i in self.items), 5.0), self.items
            return next(i for i in self.items if i.get("order_id") == order_id
                        and i.get("exec_type") == exec_type)

    def __enter__(self) -> KrakenWsPrivate:
        self.client.start()
        assert self.client.wait_connected(5.0)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.stop()


def _buy(ws: KrakenWsPrivate, cl_ord_id: str | None = None,
         price: str = "40000.0") -> dict[str, Any]:
    return ws.add_order(symbol="BTC/USD", side="buy", order_type="limit",
                        order_qty=D("0.01"), limit_price=D(price), cl_ord_id=cl_ord_id)


def test_an_order_without_cl_ord_id_leaves_every_cl_ord_id_to_the_client(
        venue: VenueSimulator) -> None:
    ws_client = _Ws(venue)
    with ws_client as ws:
        anon = _buy(ws)["order_id"]
        assert _buy(ws, "WS-1", "39000.0")["order_id"] != anon  # was: EOrder:Duplicate
        # Nor is a made-up one the client's to take.
        with pytest.raises(KrakenWsRejected):
            _buy(ws, e.SPOT_WS_CL_ORD_ID_PREFIX + "1", "38000.0")
        # Kraken's executions carry no cl_ord_id for an order placed without one, nor does
        # REST's order object (which showed the WS face's made-up one).
        assert "cl_ord_id" not in ws_client.item(anon, "new")
        venue.accounts.add(ApiAccount(REST_KEY, REST_SECRET, OWNER))
        listed = private_call(venue.spot_rest, REST_KEY, REST_SECRET, "OpenOrders")
        assert "cl_ord_id" not in listed["result"]["open"][anon], listed


def test_a_ws_cancel_goes_out_on_fix_under_the_order_s_own_cl_ord_id(
        venue: VenueSimulator) -> None:
    c = trading_client(venue)
    try:
        with _Ws(venue) as ws:
            new_order(c, "f1")
            oid = report(c, "f1", "0")[37]
            ws.cancel_order(order_id=[oid])
            canceled = report(c, "f1", "4")
            assert 41 not in canceled and canceled[37] == oid, canceled
            assert not any(e.is_made_up_cl_ord_id(fields_of(msg).get(11, ""))
                           or fields_of(msg).get(11, "").startswith("WSX")
                           for msg in c.quiet(0.3))
    finally:
        c.close()
