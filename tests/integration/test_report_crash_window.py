"""kill -9 inside the router's report path ("the forward-then-journal window"), then restart:
the OMS gets every execution exactly once in effect, whichever transport carried it.

The gateway journals a venue report (with the exact message for the OMS) before it sends it;
at restart the last journaled report missing from the OMS session's QuickFIX store is sent.
The window is microseconds wide, so the test-only FIXGW_TEST_CRASH_IN_REPORT makes the
gateway exit (137) right after the journal write or right after the send, on its first fill.
While it is dead the venue fills the rest of the order: a fallback report re-derived after the
restart would merge both fills under a new ExecID, which is the double count this guards.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.fix import messages as m
from gateway.fix.client import Received
from gateway.routing.router import CRASH_ENV
from tests.conftest import Oms, new_id, order_fields
from tests.integration.test_failover import Recorder
from tests.integration.test_failover_orders import fallback_toml
from tests.integration.test_failover_request_restart import _resting_order_over_fix
from tests.procs import GatewayProcess, VenueStack

JOURNALED_NOT_SENT = r"was journaled but never sent to FIXGW->OMS before the restart"


def _crashed(gw: GatewayProcess) -> None:
    """Wait for the armed crash point, then restart without it (the env is read at start)."""
    assert gw.proc is not None
    assert gw.proc.wait(timeout=15) == 137, gw.err.text()[-3000:]
    gw._env.pop(CRASH_ENV)


def assert_each_execution_once(rec: Recorder, cl: str, qty: Decimal) -> None:
    """Per ExecID one report, repeats only as PossResend (97=Y); fills add up to `qty` once."""
    ers = [r for r in rec.all if r.msg_type == "8" and r.fields.get(11) == cl]
    by_id: dict[str, list[Received]] = {}
    for r in ers:
        by_id.setdefault(r.fields[17], []).append(r)
    for exec_id, reps in by_id.items():
        assert sum(1 for r in reps if r.fields.get(97) != "Y") <= 1, (exec_id, reps)
        assert len({r.fields[150] for r in reps}) == 1, (exec_id, reps)
    fills = [reps[0] for reps in by_id.values() if reps[0].fields[150] == "F"]
    assert sum(Decimal(r.fields[32]) for r in fills) == qty, [r.fields for r in fills]
    cums = [Decimal(r.fields[14]) for r in fills]
    assert cums == sorted(cums) and len(set(cums)) == len(cums) and cums[-1] == qty, cums
    assert [r.fields[39] for r in fills][-1] == "2"


@pytest.mark.parametrize("point", ["after_journal", "after_forward"])
def test_crash_in_report_over_rest_fallback(tmp_path: Path, point: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CRASH_ENV, point)
    with VenueStack(tmp_path, clients=("FIXGW", "MAKER")) as v:
        gw = v.gateway(venue_toml=fallback_toml(v.sim))
        oms, maker = v.oms(), v.maker()
        rec = Recorder(oms)
        mark = v.drop_fix(60)
        gw.err.wait_for(r"order flow moved from FIX to REST", 15, start=mark)
        a = oms.buy("0.02", "31000.0")
        rec.report(a, "0")
        maker.send("D", order_fields(new_id("M"), "2", "0.01", "31000.0"))
        _crashed(gw)  # the poller's report of the partial fill
        _fill_the_rest_while_dead(maker)
        gw.start(wait_venue=False)
        _assert_filled_once(gw, rec, a, point)


@pytest.mark.parametrize("point", ["after_journal", "after_forward"])
def test_crash_in_report_over_fix(tmp_path: Path, point: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CRASH_ENV, point)
    with VenueStack(tmp_path, clients=("FIXGW", "MAKER")) as v:
        gw = v.gateway()
        oms, maker = v.oms(), v.maker()
        rec = Recorder(oms)
        a = oms.buy("0.02", "31000.0")
        rec.report(a, "0")
        maker.send("D", order_fields(new_id("M"), "2", "0.01", "31000.0"))
        _crashed(gw)  # the venue's FIX report of the partial fill
        _fill_the_rest_while_dead(maker)
        time.sleep(0.2)  # the venue has stored its reports to us for the resend
        gw.start()
        _assert_filled_once(gw, rec, a, point)


def _fill_the_rest_while_dead(maker: Oms) -> None:
    """While the gateway is dead the venue fills the rest of the 0.02 order."""
    mk = new_id("M")
    maker.send("D", order_fields(mk, "2", "0.01", "31000.0"))
    maker.report(mk, "F")


def _assert_filled_once(gw: GatewayProcess, rec: Recorder, cl: str, point: str) -> None:
    """After the restart the OMS has each execution of `cl` once, and the gateway sent the
    journaled report itself only when it died before sending it."""
    rec.wait(lambda r: r.msg_type == "8" and r.fields.get(11) == cl
             and r.fields.get(39) == "2", 20)
    rec.drain(1.5)
    assert_each_execution_once(rec, cl, Decimal("0.02"))
    redelivered = any(JOURNALED_NOT_SENT in ln for ln in gw.err.lines)
    assert redelivered == (point == "after_journal"), gw.err.text()[-3000:]


@pytest.mark.parametrize("msg_type", ["F", "G"])
def test_a_request_journaled_but_never_sent_is_sent_after_the_restart(
        tmp_path: Path, msg_type: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 between journaling an OMS's cancel (or replace) and sending it to the venue:
    the OMS's resend of the request is taken as the one journaled, so after the restart the
    gateway itself sends it (once the venue's resend has shown it was never answered), and
    the OMS gets its one answer."""
    monkeypatch.setenv(CRASH_ENV, f"request_journaled:{msg_type}")
    with VenueStack(tmp_path) as v:
        gw, oms, rec, a = _resting_order_over_fix(v)
        x = new_id("X")
        common = [(11, x), (41, a), (55, "BTC/USD"), (54, "1"), (60, m.utc_timestamp())]
        if msg_type == "F":
            oms.send("F", [*common, (38, "0.02")])
        else:
            oms.send("G", [*common, (38, "0.03"), (40, "2"), (44, "20000.0"), (59, "1")])
        _crashed(gw)  # the request is in the journal; the venue never got it
        gw.start()
        answer = rec.report(x, "4" if msg_type == "F" else "5", 20)
        if msg_type == "G":
            assert Decimal(answer.fields[38]) == Decimal("0.03")
        rec.drain(1.5)
        answers = [r for r in rec.all if r.fields.get(11) == x and r.fields.get(97) != "Y"]
        assert len(answers) == 1, [r.fields for r in answers]
        assert any("journaled before the restart and never answered: sent to the venue again"
                   in ln for ln in gw.err.lines), gw.err.text()[-3000:]
