"""The private WebSocket's executions items reach the OMS through an O(1) lookup of the order
by the item's ClOrdID, not a walk of every open order under the order store's lock (the lock
every OMS thread takes for each new order) for each item of the feed.

The gateway's router and fallback in process against the simulator's spot REST and WS v2 faces
over one matching engine on loopback (only the OMS FIX session is replaced by a recorder).
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest

from gateway.orders.model import Order
from gateway.venue_sim.engine import Side
from tests.integration.test_failover_amend import World, _place


def test_fills_from_the_feed_do_not_walk_the_open_orders(world: World,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    w = world
    for i in range(20):  # other open orders of ours, at prices nothing trades at
        w.oms("D", [(11, f"O{i}"), (55, "BTC/USD"), (54, "1"), (38, "0.01"), (40, "2"),
                    (44, "20000"), (59, "1"), (60, "20260101-00:00:00")])
    txid = _place(w, "P1")
    walks: list[str] = []
    real = w.store.open_orders

    def open_orders(oms_session: str | None = None) -> list[Order]:
        walks.append(threading.current_thread().name)
        return real(oms_session)

    monkeypatch.setattr(w.store, "open_orders", open_orders)
    w.engine.submit("MAKER", "m1", "BTC/USD", Side.SELL, Decimal("0.005"), Decimal("30000"))
    w.engine.submit("MAKER", "m2", "BTC/USD", Side.SELL, Decimal("0.015"), Decimal("30000"))
    deadline = time.monotonic() + 5
    while [r[39] for r in w.reports("P1") if r.get(150) == "F"] != ["1", "2"]:
        assert time.monotonic() < deadline, w.reports("P1")
        time.sleep(0.02)
    fills = [r for r in w.reports("P1") if r.get(150) == "F"]
    assert [(r[37], Decimal(r[32])) for r in fills] == [(txid, Decimal("0.005")),
                                                        (txid, Decimal("0.015"))]
    assert "kraken-ws-private" not in walks
