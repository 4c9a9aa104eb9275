from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from gateway.orders import state
from gateway.orders.journal import Journal
from gateway.orders.model import Order
from gateway.orders.store import OrderStore


def _order(cl: str = "A1", venue: str = "100") -> Order:
    return Order(oms_session="FIXGW->OMS", oms_cl_ord_id=cl, venue_cl_ord_id=venue,
                 symbol="BTC/USD", side="1", ord_type="2", qty=Decimal("1"),
                 price=Decimal("45000.0"), tif="1", oms_history=[cl])


def test_state_machine() -> None:
    assert state.can_transition(state.SENT, state.NEW)
    assert state.can_transition(state.NEW, state.PARTIALLY_FILLED)
    assert state.can_transition(state.PARTIALLY_FILLED, state.FILLED)
    assert not state.can_transition(state.FILLED, state.NEW)
    assert not state.can_transition(state.CANCELED, state.PARTIALLY_FILLED)
    assert state.can_transition(state.NEW, state.NEW)


def test_store_rebuilds_every_mapping_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "orders.journal"
    s = OrderStore(path, fsync_interval_ms=0)
    o = _order()
    s.add_order(o)
    s.add_request("101", ("FIXGW->OMS", "A1"), "A2", "replace")
    t = s.resolve_report("101", "100", "E1")
    assert t is not None and t.oms_cl_ord_id == "A2" and t.oms_orig_cl_ord_id == "A1"
    _legal, rec = s.apply_report(t, venue_cl_ord_id="101", exec_id="E1", exec_type="5",
                                 ord_status="0", cum_qty="0", avg_px="0", order_id="OABC",
                                 qty="0.5", price="44000.0")
    s.commit(rec)
    s.mark_used("FIXGW->OMS", "BAD1")
    s.close()

    s2 = OrderStore(path, fsync_interval_ms=0)
    o2 = s2.find("FIXGW->OMS", "A2")
    assert o2 is not None and o2 is s2.find("FIXGW->OMS", "A1")
    assert (o2.oms_cl_ord_id, o2.venue_cl_ord_id, o2.order_id) == ("A2", "101", "OABC")
    assert o2.qty == Decimal("0.5") and o2.price == Decimal("44000.0")
    assert s2.is_used("FIXGW->OMS", "BAD1")
    dup = s2.resolve_report("101", None, "E1")
    assert dup is not None and dup.duplicate
    # New venue ClOrdIDs continue above every one issued before the restart.
    assert int(s2.venue_ids.next()) > 101
    s2.close()


def _journal_torn_by_a_crash(p: Path) -> None:
    """One whole record, then a torn one: the process died mid-write."""
    j = Journal(p, 0)
    j.append_line("U\tx\t1")
    j.close()
    with p.open("ab") as f:
        f.write(b"U\ty")


def test_journal_ignores_a_torn_last_record(tmp_path: Path) -> None:
    p = tmp_path / "j"
    _journal_torn_by_a_crash(p)
    assert list(Journal.replay_lines(p)) == ["U\tx\t1"]


def test_journal_cuts_a_torn_last_record_before_appending(tmp_path: Path) -> None:
    p = tmp_path / "j"
    _journal_torn_by_a_crash(p)
    j = Journal(p, 0)  # the next run appends
    j.append_line("U\tz\t3")
    j.close()
    assert list(Journal.replay_lines(p)) == ["U\tx\t1", "U\tz\t3"]
    # A file that is nothing but a torn record, and one that is whole, are handled too.
    q = tmp_path / "k"
    q.write_bytes(b"N\tpartial")
    Journal(q, 0).close()
    assert q.read_bytes() == b""
    whole = p.read_bytes()
    Journal(p, 0).close()
    assert p.read_bytes() == whole
