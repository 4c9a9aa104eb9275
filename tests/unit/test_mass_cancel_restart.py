"""An OMS mass cancel killed between its per-order cancels, in process (the venue session is a
recorder, as in test_router_doubt; the kill is the test-only crash point "mass_cancel_sent").

Its ``U`` names the orders it covers, so the restart finds those still open with no cancel
under its ClOrdID and cancels them at the first reconcile: not an order placed after it, not
one whose cancel is on its way, and not again once done; a compaction keeps it while it is
unfinished and drops it once finished. The loopback case, with real processes, is in
tests/integration/test_answer_crash_window.py."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import quickfix as fix

from gateway.fix import messages as m
from gateway.orders.model import Order
from gateway.orders.store import OrderStore
from tests.unit.test_cancel_in_flight import _cancels_sent, _message, _resting
from tests.unit.test_router_doubt import KEY, SID, _World, world

__all__ = ["world"]  # the fixture, shared with test_router_doubt

MASS = "MASS-1"


class _Killed(BaseException):
    """What `os._exit` does at the armed crash point here: the handling stops dead."""


def _killed_mid_loop(w: _World, monkeypatch: pytest.MonkeyPatch, after: int = 1) -> None:
    """The OMS mass cancels every order (35=q, type 7); the gateway dies after its `after`-th
    per-order cancel was sent, before the next is journaled. Its journal is left as is."""
    w.router._crash_at = ("mass_cancel_sent", str(after))

    def exit_now(code: int) -> None:
        raise _Killed(code)

    monkeypatch.setattr(os, "_exit", exit_now)
    f = {"35": "q", "11": MASS, "530": "7", "60": "20260101-00:00:00"}
    msg = m.new_message("q")
    for tag, value in f.items():
        if tag != "35":
            msg.setField(int(tag), value)
    with pytest.raises(_Killed):
        w.router.on_oms_message(msg, SID, f)
    (rep,) = [r for r in w.oms_got if r[35] == "r"]
    assert (rep[11], rep[533]) == (MASS, "3")
    w.store.close()


def _journal(w: _World) -> list[list[str]]:
    return [ln.split("\t") for ln in w.store._journal.path.read_text().splitlines()]


def _restarted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _World:
    """The gateway started again on the same journal, its venue session logged on now."""
    w = _World(tmp_path, monkeypatch)
    w.router.find_unanswered_requests()
    time.sleep(0.002)
    w.router.venue.logged_on_ms = time.time_ns() // 1_000_000
    time.sleep(0.002)
    return w


def _venue_cancels(w: _World, vids: list[str]) -> None:
    """The venue answers each cancel `vids` with its order's Canceled."""
    for vid in vids:
        ref = w.store.venue_ref(vid)
        assert ref is not None
        o = w.store.orders[ref.order_key]
        w.report({"11": vid, "41": o.venue_cl_ord_id, "37": o.order_id, "17": f"X-{vid}",
                  "150": "4", "39": "4", "55": "BTC/USD", "54": "1", "38": "0.01", "14": "0",
                  "6": "0", "151": "0"}, "fix")
        assert not o.is_open


def _mass_cancels(w: _World, order: Order) -> list[dict[int, str]]:
    """The cancels sent to the venue for `order` under the mass cancel's ClOrdID."""
    out = []
    for s in w.venue.sent:
        ref = w.store.venue_ref(s[11]) if s[35] == "F" else None
        if ref is not None and ref.oms_cl_ord_id == MASS and s[41] == order.venue_cl_ord_id:
            out.append(s)
    return out


def test_the_rest_of_a_mass_cancel_killed_mid_loop_is_canceled_at_the_first_reconcile(
        world: _World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    for cl in ("A", "B", "C"):
        _resting(w, cl)
    _killed_mid_loop(w, monkeypatch)
    (first,) = _cancels_sent(w)  # A's only
    [u] = [f for f in _journal(w) if f[0] == "U" and f[2] == MASS]
    assert u[7:] == ["A", "B", "C"]  # the U names the orders it covers

    w2 = _restarted(tmp_path, monkeypatch)
    try:
        d = _resting(w2, "D")  # placed after the mass cancel: not its to cancel
        w2.router.reconcile()
        again = {k: w2.store.find(KEY, k) for k in "ABCD"}
        sent = _cancels_sent(w2)
        # A's cancel, journaled and unanswered, is sent again under its venue ClOrdID (not a
        # second one); B and C get theirs under the mass cancel's ClOrdID; D nothing.
        assert sent.count(first) == 1 and len(sent) == 3, sent
        for cl in "BC":
            o = again[cl]
            assert o is not None and len(_mass_cancels(w2, o)) == 1
        assert not [s for s in w2.venue.sent if s[35] == "F" and s[41] == d.venue_cl_ord_id]
        w2.router.reconcile()  # carried out once
        assert len(_cancels_sent(w2)) == 3
        assert w2.store.unfinished_mass_cancels() == []
    finally:
        w2.store.close()
    w3 = _World(tmp_path, monkeypatch)  # finished: a later restart has nothing left to do
    try:
        assert w3.store.unfinished_mass_cancels() == []
    finally:
        w3.store.close()


def test_an_order_whose_cancel_is_on_its_way_gets_no_second_one(
        world: _World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kill switch's re-sweep after the restart's logon runs before the reconcile (their
    timers race) and cancels B: the mass cancel's restart sends B no second cancel, C its."""
    w = world
    for cl in ("A", "B", "C"):
        _resting(w, cl)
    _killed_mid_loop(w, monkeypatch)
    w2 = _restarted(tmp_path, monkeypatch)
    try:
        b, c = w2.store.find(KEY, "B"), w2.store.find(KEY, "C")
        assert b is not None and c is not None
        assert w2.router.cancel_each_unasked([b], "KILL", "kill_switch", "test")[0] == 1
        w2.router.reconcile()
        assert _mass_cancels(w2, b) == [] and len(_mass_cancels(w2, c)) == 1
        assert [s[41] for s in w2.venue.sent if s[35] == "F"].count(b.venue_cl_ord_id) == 1
    finally:
        w2.store.close()


def test_a_compaction_keeps_an_unfinished_mass_cancel_and_drops_a_finished_one(
        world: _World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compaction's snapshot holds what the journal held: the mass cancel killed mid-loop is
    still unfinished after one (an ``M`` with the orders left), and once the restart has
    carried it out, the next snapshot has no ``M`` and a restart nothing to do."""
    w = world
    for cl in ("A", "B", "C"):
        _resting(w, cl)
    _killed_mid_loop(w, monkeypatch)
    store = OrderStore(w.store._journal.path, fsync_interval_ms=0)
    try:
        store.compact()  # the journal is now a snapshot of the crashed gateway's store
        snapshot = [ln.split("\t") for ln in store.snapshot()]
        assert [f for f in snapshot if f[0] == "M"] == [["M", KEY, MASS, "B", "C"]]
    finally:
        store.close()

    w2 = _restarted(tmp_path, monkeypatch)
    try:
        (mass,) = w2.router._unfinished_mass
        assert (mass.cl_ord_id, [o.oms_cl_ord_id for o in mass.orders]) == (MASS, ["B", "C"])
        w2.router.reconcile()
        for cl in "BC":
            o = w2.store.find(KEY, cl)
            assert o is not None and len(_mass_cancels(w2, o)) == 1
        assert not [ln for ln in w2.store.snapshot() if ln.startswith("M\t")]
        w2.store.compact()
        _venue_cancels(w2, _cancels_sent(w2))
    finally:
        w2.store.close()
    w3 = _World(tmp_path, monkeypatch)
    try:
        assert w3.store.unfinished_mass_cancels() == []
        w3.router.find_unanswered_requests()
        w3.router.reconcile()
        assert _cancels_sent(w3) == []
    finally:
        w3.store.close()


def test_a_mass_cancel_carried_out_whole_leaves_nothing_unfinished(
        world: _World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No kill: every covered order has its cancel journaled, so the store forgets the mass
    cancel at once (nothing held for it, nothing in a snapshot) and a restart does nothing."""
    w = world
    for cl in ("A", "B"):
        _resting(w, cl)
    f = {"35": "q", "11": MASS, "530": "7", "60": "20260101-00:00:00"}
    msg = m.new_message("q")
    for tag, value in f.items():
        if tag != "35":
            msg.setField(int(tag), value)
    w.router.on_oms_message(msg, SID, f)
    assert len(_cancels_sent(w)) == 2
    assert w.store._mass == {}
    assert not [ln for ln in w.store.snapshot() if ln.startswith("M\t")]
    w.store.close()
    w2 = _restarted(tmp_path, monkeypatch)
    try:
        assert w2.router._unfinished_mass == []
    finally:
        w2.store.close()


def test_a_snapshots_last_answer_does_not_double_an_unfinished_mass_cancel(
        world: _World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a compaction the journal's last answer is the snapshot's ``F``, which does not
    name the orders a mass cancel covered; redelivering its 35=r (the OMS store cannot tell
    whether it left) must not add the 35=r-scope fallback on top of the snapshot's ``M``."""
    w = world
    for cl in ("A", "B", "C"):
        _resting(w, cl)
    _killed_mid_loop(w, monkeypatch)
    store = OrderStore(w.store._journal.path, fsync_interval_ms=0)
    store.compact()
    store.close()
    w2 = _restarted(tmp_path, monkeypatch)
    try:
        pending = w2.router.unforwarded_report(tmp_path / "no-oms-store")
        assert pending is not None and pending.report.msg_type == "r"
        assert pending.report.covered is None
        w2.router.redeliver(pending)
        assert [x.cl_ord_id for x in w2.router._unfinished_mass] == [MASS]
        w2.router.reconcile()
        assert len(_cancels_sent(w2)) == 3  # A's sent again, B's and C's
    finally:
        w2.store.close()


def test_cancels_a_venue_drop_kept_from_going_out_are_sent_after_the_next_logon(
        world: _World) -> None:
    """The venue's FIX session drops while a mass cancel is sending its cancels: the OMS was
    told all three orders are affected and sends no other request for them, so the two not
    sent go out under the mass cancel's ClOrdID at the reconcile after the next logon (not
    only after a restart), once, and not for an order closed meanwhile."""
    w = world
    a, b, c = (_resting(w, cl) for cl in ("A", "B", "C"))
    record = w.venue.send

    def drop_after_one_cancel(msg: fix.Message) -> bool:
        ok = record(msg)
        if m.msg_type(msg) == "F":
            w.router.venue.logged_on = False  # the session drops right after the first
        return ok

    w.venue.send = drop_after_one_cancel  # type: ignore[method-assign]
    f = {"35": "q", "11": MASS, "530": "7", "60": "20260101-00:00:00"}
    w.router.on_oms_message(_message(f), SID, f)
    (rep,) = [r for r in w.oms_got if r[35] == "r"]
    assert (rep[11], rep[533]) == (MASS, "3")
    assert [len(_mass_cancels(w, o)) for o in (a, b, c)] == [1, 0, 0]
    # C is closed by the venue meanwhile (expired, say): not the mass cancel's any more.
    w.report({"11": c.venue_cl_ord_id, "37": c.order_id, "17": "X-C", "150": "C", "39": "C",
              "55": "BTC/USD", "54": "1", "38": "0.01", "14": "0", "6": "0", "151": "0"},
             "fix")
    assert not c.is_open
    w.venue.send = record  # type: ignore[method-assign]
    w.router.venue.logged_on = True  # the next logon
    w.router.venue.logged_on_ms = time.time_ns() // 1_000_000
    w.router.reconcile()
    assert [len(_mass_cancels(w, o)) for o in (a, b, c)] == [1, 1, 0]
    w.router.reconcile()  # carried out once
    assert [len(_mass_cancels(w, o)) for o in (a, b, c)] == [1, 1, 0]
