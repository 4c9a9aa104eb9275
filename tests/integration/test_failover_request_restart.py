"""kill -9 the gateway with a cancel or replace (amend) sent over the REST fallback and not
answered yet, restart it: the journal holds the request (its transport, an amend's figures),
so the restarted gateway looks its outcome up, sends a cancel that may never have left again,
and the OMS gets its answer once. Real gateway and simulator processes; the simulator's REST
face holds the amend's answer back, a test-only crash point stops the gateway between
journaling a cancel and sending it."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.routing.router import CRASH_ENV
from tests.conftest import Oms, new_id
from tests.integration.test_failover import Recorder
from tests.integration.test_failover_orders import fallback_toml, fix_amend
from tests.procs import GatewayProcess, VenueStack


def _journal(tmp_path: Path) -> list[list[str]]:
    return [ln.split("\t") for ln in
            (tmp_path / "gw" / "var" / "orders.journal").read_text().splitlines()]


def _wait_journaled(tmp_path: Path, kind: str, cl: str) -> str:
    """The venue ClOrdID of request `cl` of `kind`, once its Q record is journaled."""
    deadline = time.monotonic() + 10
    while True:
        for f in _journal(tmp_path):
            if f[0] == "Q" and f[5] == kind and f[4] == cl:
                assert f[-1] == "rest", f  # journaled with its transport
                return f[1]
        assert time.monotonic() < deadline, f"{kind} {cl} never journaled"
        time.sleep(0.02)


def _failed_over(v: VenueStack, gw: GatewayProcess) -> None:
    mark = v.drop_fix(120)  # FIX stays refused for the whole test: REST answers everything
    gw.err.wait_for(r"order flow moved from FIX to REST", 15, start=mark)


def _resting_order_over_fix(v: VenueStack) -> tuple[GatewayProcess, Oms, Recorder, str]:
    """A gateway on the venue's FIX session and an OMS order resting there, far below the
    book: (gateway, OMS, its recorder, the order's ClOrdID)."""
    gw = v.gateway()
    oms = v.oms()
    rec = Recorder(oms)
    a = oms.buy("0.02", "20000.0")
    rec.report(a, "0")
    return gw, oms, rec, a


def _resting_order_over_rest(v: VenueStack) -> tuple[GatewayProcess, Oms, Recorder, str]:
    """A gateway with the REST fallback, failed over, and an OMS order resting at the venue
    (placed over REST): (gateway, OMS, its recorder, the order's ClOrdID)."""
    gw = v.gateway(venue_toml=fallback_toml(v.sim))
    oms = v.oms()
    rec = Recorder(oms)
    _failed_over(v, gw)
    a = oms.buy("0.02", "25000.0")
    rec.report(a, "0")
    return gw, oms, rec, a


def test_rest_amend_in_flight_at_a_kill9_is_answered_after_the_restart(
        tmp_path: Path) -> None:
    with VenueStack(tmp_path) as v:
        gw, oms, rec, a = _resting_order_over_rest(v)
        # The venue applies the amend at once and holds its answer back well past the kill.
        v.sim.control(cmd="rest_fault", fault="delay", seconds=8, n=1, after=True,
                      path_prefix="/0/private/AmendOrder")
        r = new_id("R")
        fix_amend(oms, r, a, "0.03", "25100.0")
        _wait_journaled(tmp_path, "amend", r)
        time.sleep(1.0)  # the venue has it; its answer is 7 s away
        gw.kill()
        assert not [x for x in rec.all if x.fields.get(11) == r]

        gw.start(wait_venue=False)
        gw.err.wait_for(r"order flow resumes on REST", 10)
        rep = rec.report(r, "5", 20)
        assert rep.fields[41] == a
        assert Decimal(rep.fields[38]) == Decimal("0.03")
        assert Decimal(rep.fields[44]) == Decimal("25100")
        rec.drain(3.0)
        replaced = [x for x in rec.all if x.msg_type == "8" and x.fields.get(11) == r]
        assert [x.fields[150] for x in replaced] == ["5"], [x.fields for x in replaced]
        assert not [x for x in rec.all if x.msg_type == "9" and x.fields.get(11) == r]
        # The order's record has the new figures.
        news = [f for f in _journal(tmp_path) if f[0] == "E" and f[2] == a and f[10]]
        assert news and Decimal(news[-1][10]) == Decimal("0.03"), news
        assert Decimal(news[-1][11]) == Decimal("25100")


def test_rest_cancel_journaled_but_never_sent_is_sent_after_the_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CRASH_ENV, "request_journaled:cancel")
    with VenueStack(tmp_path) as v:
        gw, oms, rec, a = _resting_order_over_rest(v)
        c = new_id("C")
        oms.send("F", [(11, c), (41, a), (55, "BTC/USD"), (54, "1"), (38, "0.02"),
                       (60, "20260101-00:00:00")])
        assert gw.proc is not None
        assert gw.proc.wait(timeout=15) == 137, gw.err.text()[-3000:]
        gw._env.pop(CRASH_ENV)
        vid = _wait_journaled(tmp_path, "cancel", c)
        assert not [f for f in _journal(tmp_path) if f[0] in ("E", "R") and vid in f]

        gw.start(wait_venue=False)
        gw.err.wait_for(r"order flow resumes on REST", 10)
        done = rec.report(c, "4", 20)
        assert (done.fields[41], done.fields[39]) == (a, "4")
        rec.drain(3.0)
        answers = [x for x in rec.all if x.msg_type in ("8", "9") and x.fields.get(11) == c]
        assert [(x.msg_type, x.fields.get(150)) for x in answers] == [("8", "4")]
