"""A restart with the kill switch on, in process (the venue session is a recorder, as in
test_router_doubt): the kill switch's re-sweep after the venue logon and the first reconcile
run on timers of their own, and a cancel journaled before the restart and never answered,
which that reconcile sends again, must not get a second one from the sweep, whichever runs
first and however long ago it was journaled."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.orders.store import RequestDetails
from gateway.server.kill_switch import KillSwitchSweeper
from tests.unit.test_cancel_in_flight import _cancels_sent, _resting, _sweep
from tests.unit.test_mass_cancel_restart import _restarted
from tests.unit.test_router_doubt import KEY, _World, world

__all__ = ["world"]  # the fixture, shared with test_router_doubt


def _re_sweep(w: _World) -> tuple[int, int]:
    """The kill switch's re-sweep after the venue's logon: (sent, skipped as on their way)."""
    sweeper = KillSwitchSweeper(w.store.open_orders, w.router.cancel_each_unasked,
                                lambda: True, "FIXGW->KRAKEN-TRD")
    result = sweeper.sweep("kill switch still on: venue logged on again")
    return result.sent, len(result.already)


def _swept_then_restarted(w: _World, cl: str, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> tuple[str, _World]:
    """Order `cl` resting, the kill switch's cancel of it journaled and sent (its venue
    ClOrdID), and the gateway restarted on that journal before the venue answered."""
    _resting(w, cl)
    assert _sweep(w, w.store.orders[(KEY, cl)])[0] == 1
    (vid,) = _cancels_sent(w)
    w.store.close()
    return vid, _restarted(tmp_path, monkeypatch)


def test_the_re_sweep_before_the_reconcile_sends_no_second_cancel(
        world: _World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kill switch's cancel of C9 was journaled and sent, then the gateway stopped before
    the venue answered, and came back more than `cancel_in_flight_s` later. After the logon
    the re-sweep runs first: C9's cancel is the one the reconcile sends again, so the sweep
    skips it; the reconcile then sends it, and C9 gets that one cancel only."""
    vid, w2 = _swept_then_restarted(world, "C9", tmp_path, monkeypatch)
    try:
        w2.router.cancel_in_flight_s = 0.05
        time.sleep(0.1)  # journaled longer ago than a cancel counts as on its way
        assert _re_sweep(w2) == (0, 1)
        w2.router.reconcile()
        assert _cancels_sent(w2) == [vid]
        assert _re_sweep(w2) == (0, 1)  # sent again now: on its way
        assert _cancels_sent(w2) == [vid]
    finally:
        w2.store.close()


def test_a_cancel_from_before_the_restart_is_not_sent_again_over_a_later_one(
        world: _World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other order: the FIX session was down after the restart and the order flow moved
    to the REST fallback, whose re-sweep sent C8 a cancel there; then FIX logs on. The
    reconcile does not send C8's cancel from before the restart again: one is on its way."""
    vid, w2 = _swept_then_restarted(world, "C8", tmp_path, monkeypatch)
    try:
        order = w2.store.orders[(KEY, "C8")]
        rest_vid = w2.store.venue_ids.next()  # the sweep's cancel over REST, as the fallback
        w2.store.add_request(rest_vid, (KEY, "C8"), "KILL-rest", "mass",  # journals it
                             RequestDetails(time.time_ns() // 1_000_000, None, None, "rest"))
        on_its_way = w2.router.cancel_in_flight(order)
        assert on_its_way is not None and on_its_way.venue_cl_ord_id == rest_vid
        w2.router.reconcile()
        assert vid not in _cancels_sent(w2) and _cancels_sent(w2) == []
    finally:
        w2.store.close()
