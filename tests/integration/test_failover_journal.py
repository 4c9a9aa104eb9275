"""The order journal's failover records, replayed as a restart does (no processes needed):
which transport carried each order (``N``, ``S`` for a held order released), the ClOrdID the
venue keeps after an in-place REST amend (its ``E``; ``A`` in older journals), and the last
transport switch (``T``)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from gateway.orders import state
from gateway.orders.model import Order
from gateway.orders.store import OrderStore


def _order(cl: str, vid: str, transport: str) -> Order:
    return Order(oms_session="FIXGW->OMS", oms_cl_ord_id=cl, venue_cl_ord_id=vid,
                 symbol="BTC/USD", side="1", ord_type="2", qty=Decimal("0.02"),
                 price=Decimal("30000"), tif="1", transport=transport, oms_history=[cl])


def test_transport_amend_rebind_and_switch_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "orders.journal"
    s = OrderStore(path, fsync_interval_ms=0)
    assert s.last_transport == "fix"
    s.record_switch("fix", "rest")
    held = _order("H1", "100", "held")
    s.add_order(held)
    s.set_transport(held, "rest")
    amended = _order("A1", "200", "rest")
    s.add_order(amended)
    t = s.resolve_report("200", None, "R-new")
    assert t is not None
    _, rec = s.apply_report(t, venue_cl_ord_id="200", exec_id="R-new", exec_type="0",
                            ord_status="0", cum_qty="0", avg_px="0", order_id="OTX-1",
                            qty=None, price=None)
    s.commit(rec)
    s.add_request("201", ("FIXGW->OMS", "A1"), "A2", "amend")
    t = s.resolve_report("201", "200", "R-amend")
    assert t is not None and t.oms_orig_cl_ord_id == "A1"
    _, rec = s.apply_report(t, venue_cl_ord_id="201", exec_id="R-amend", exec_type="5",
                            ord_status="0", cum_qty="0", avg_px="0", order_id="OTX-1",
                            qty="0.03", price="30100")
    # The Replaced report is the amend's only record: the venue kept the order's cl_ord_id,
    # and a kill right after this one record must not leave it naming the old ClOrdID.
    s.commit(rec)
    assert amended.venue_cl_ord_id == "200"
    t = s.resolve_report("200", None, "E-live")
    assert t is not None and t.oms_cl_ord_id == "A2"
    s.close()

    r = OrderStore(path, fsync_interval_ms=0)
    try:
        assert r.last_transport == "rest"
        h = r.find("FIXGW->OMS", "H1")
        assert h is not None and h.transport == "rest" and h.status == state.SENT
        a = r.find("FIXGW->OMS", "A2")
        assert a is not None and a is r.find("FIXGW->OMS", "A1")
        assert (a.oms_cl_ord_id, a.venue_cl_ord_id, a.order_id) == ("A2", "200", "OTX-1")
        assert (a.qty, a.price) == (Decimal("0.03"), Decimal("30100"))
        # A later report under the ClOrdID the venue kept reaches the OMS as the replace's.
        t = r.resolve_report("200", None, "E-fill")
        assert t is not None and t.oms_cl_ord_id == "A2" and t.order is a
        r.record_switch("rest", "fix")
    finally:
        r.close()
    assert OrderStore(path, fsync_interval_ms=0).last_transport == "fix"


def test_an_older_journals_separate_amend_rebind_still_replays(tmp_path: Path) -> None:
    """Journals written before the rebind moved into the amend's report kept it as an ``A``
    record after a Replaced that switched the venue ClOrdID: replay must still end bound."""
    path = tmp_path / "orders.journal"
    s = OrderStore(path, fsync_interval_ms=0)
    s.add_order(_order("A1", "200", "rest"))
    s.add_request("201", ("FIXGW->OMS", "A1"), "A2", "replace")
    t = s.resolve_report("201", "200", "R-amend")
    assert t is not None
    _, rec = s.apply_report(t, venue_cl_ord_id="201", exec_id="R-amend", exec_type="5",
                            ord_status="0", cum_qty="0", avg_px="0", order_id="OTX-1",
                            qty="0.03", price="30100")
    s.commit(rec)
    s.commit("A\t200\tFIXGW->OMS\tA1\tA2")
    s.close()
    r = OrderStore(path, fsync_interval_ms=0)
    try:
        a = r.find("FIXGW->OMS", "A2")
        assert a is not None and (a.oms_cl_ord_id, a.venue_cl_ord_id) == ("A2", "200")
        t = r.resolve_report("200", None, "E-fill")
        assert t is not None and t.oms_cl_ord_id == "A2"
    finally:
        r.close()
