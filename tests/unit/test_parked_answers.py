"""The gateway's own answers journaled with their message, on a full disk, in process (the
venue session is a recorder, as in test_router_doubt): the fallback poller's 35=9 and a mass
cancel's 35=r take the venue reports' parking path (`Router._journaled`, `flush_parked`), in
order with them, rather than being lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.fix import messages as m
from gateway.orders.store import OrderStore, RequestDetails, message_field
from tests.unit.test_cancel_in_flight import _resting
from tests.unit.test_router_doubt import KEY, SID, _er, _rest_order, _World, world

__all__ = ["world"]  # the fixture, shared with test_router_doubt


class _FullDisk:
    """The journal's disk: while `full`, every record is refused (ENOSPC), whichever store
    method writes it (the existing parked-report tests refuse `commit_forward` alone)."""

    def __init__(self, w: _World, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = True
        journal = w.store._journal
        self._append = journal.append_line
        monkeypatch.setattr(journal, "append_line", self._append_line)

    def _append_line(self, line: str) -> None:
        if self.full:
            raise OSError(28, "No space left on device")
        self._append(line)


def _replayed_last_answer(path: Path) -> tuple[str, str]:
    """(MsgType, ClOrdID) of the last answer a restart finds journaled for sending."""
    again = OrderStore(path, fsync_interval_ms=0)
    try:
        last = again.last_forward
        assert last is not None
        return last.msg_type, message_field(last.message, "11")
    finally:
        again.close()


def test_the_pollers_cancel_reject_waits_behind_a_parked_report_then_goes(
        world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The poller settles a REST cancel as refused while the disk is full, right after a
    fill it reported was parked: the 35=9 is not lost (its request is answered already, so
    nothing would send it again); it waits behind the fill and both go, in order, once the
    journal takes records; a restart then finds the 35=9 as the last answer journaled."""
    w = world
    order = _rest_order(w)
    w.report(_er("P-new", "0", "0", "0"), "ws")
    w.store.add_request("500", (KEY, "S1"), "X1", "cancel",
                        RequestDetails(time.time_ns() // 1_000_000, None, None, "rest"))
    disk = _FullDisk(w, monkeypatch)
    w.report(_er("P-fill1", "F", "1", "0.01", "0.01"), "ws")
    w.router.cancel_reject_for(order, "500", "X1", "1", "0", "too late to cancel")
    assert [r[35] for r in w.oms_got] == ["8"]  # P-new only
    assert w.router.flush_parked() == 2
    disk.full = False
    assert w.router.flush_parked() == 0
    assert [(r[35], r.get(17) or r[11]) for r in w.oms_got] == [
        ("8", "P-new"), ("8", "P-fill1"), ("9", "X1")]
    assert w.oms_got[-1][58] == "too late to cancel" and w.oms_got[-1][41] == "S1"
    w.store.close()
    assert _replayed_last_answer(w.store._journal.path) == ("9", "X1")


def test_a_mass_cancel_on_a_full_disk_is_answered_then_carried_out(
        world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mass cancel while the disk is full: its 35=r is parked (no answer at all before),
    its ClOrdID is taken at once (the OMS's resend is a duplicate), and none of its cancels
    goes before the 35=r has: once the journal takes records, the OMS gets the 35=r, then
    each order's cancel is sent to the venue (under the mass cancel's ClOrdID)."""
    w = world
    orders = [_resting(w, "MC-A"), _resting(w, "MC-B")]
    disk = _FullDisk(w, monkeypatch)
    got = len(w.oms_got)
    f = {"35": "q", "11": "MASS-9", "530": "7", "60": "20260101-00:00:00"}
    msg = m.new_message("q")
    for tag, value in f.items():
        if tag != "35":
            msg.setField(int(tag), value)
    w.router.on_oms_message(msg, SID, f)
    assert w.oms_got[got:] == [] and [s for s in w.venue.sent if s[35] == "F"] == []
    assert w.store.is_used(KEY, "MASS-9")
    assert w.router.flush_parked() == 1
    disk.full = False
    assert w.router.flush_parked() == 0
    (rep,) = w.oms_got[got:]
    assert (rep[35], rep[11], rep[531], rep[533]) == ("r", "MASS-9", "7", "2")
    cancels = [s for s in w.venue.sent if s[35] == "F"]
    assert sorted(c[41] for c in cancels) == sorted(o.venue_cl_ord_id for o in orders)
    for o in orders:
        asked = w.store.cancel_asked(o)
        ref = None if asked is None else w.store.venue_ref(asked)
        assert ref is not None and (ref.oms_cl_ord_id, ref.kind) == ("MASS-9", "mass")
    assert w.router.flush_parked() == 0  # carried out once
    assert len([s for s in w.venue.sent if s[35] == "F"]) == 2
    w.store.close()
    assert _replayed_last_answer(w.store._journal.path) == ("r", "MASS-9")
