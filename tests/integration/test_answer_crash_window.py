"""kill -9 between journaling one of the gateway's answers that no OMS resend asks for again
and sending it, then restart: the OMS gets the answer.

Two such answers: the 35=9 the REST fallback's poller sends when it settles a request later
(here an amend whose answer was lost and which never landed: the OMS request was handled long
before, so QuickFIX will not have the OMS resend it), and a mass cancel's 35=r (its ClOrdID is
taken by the record that journals the 35=r, so the OMS's PossDup resend of the request is
ignored as one already taken). Each is journaled with its exact message (an R, resp. a U)
before it is sent; the restart looks it up in the OMS session's QuickFIX store, as for a
report, and sends it if it never left. A mass cancel killed there had none of its cancels
sent either, and one killed between its per-order cancels some of them: its U names the
orders it covers, so the restart carries out the rest. The windows are microseconds wide;
the test-only crash points "answer_journaled" and "mass_cancel_sent" open them on demand.
Real gateway and simulator processes over loopback FIX (and the simulator's REST face)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.fix import messages as m
from gateway.routing.router import CRASH_ENV
from tests.conftest import new_id
from tests.integration.test_failover import Recorder
from tests.integration.test_failover_orders import fallback_toml, fix_amend
from tests.integration.test_failover_request_restart import (
    _failed_over,
    _journal,
    _resting_order_over_fix,
)
from tests.integration.test_refusal_crash_window import _killed_at_the_crash_point, _one_refusal
from tests.procs import VenueStack

SENT_ON_RESTART = "was journaled but never sent to FIXGW->OMS before the restart; sending it now"


def test_a_cancel_reject_the_poller_journaled_is_sent_after_a_kill9(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the REST fallback: the venue holds the AmendOrder past the client's timeout and
    the amend's deadline (it never lands); once the order's polled figures say so, the poller
    journals the replace as answered with its 35=9 (an R with the message) and the kill comes
    before the send. The restart finds that 35=9 missing from the OMS store and sends it."""
    monkeypatch.setenv(CRASH_ENV, "answer_journaled:9")
    with VenueStack(tmp_path) as v:
        # timeout 1 s: the amend's deadline is 2 s away and its outcome final after 3 s.
        gw = v.gateway(venue_toml=fallback_toml(v.sim, timeout_s=1))
        oms = v.oms()
        rec = Recorder(oms)
        _failed_over(v, gw)
        a = oms.buy("0.02", "25000.0")  # rests: far below the book
        rec.report(a, "0")
        v.sim.control(cmd="rest_fault", fault="delay", seconds=4, n=1, after=False,
                      path_prefix="/0/private/AmendOrder")
        r = new_id("R")
        fix_amend(oms, r, a, "0.03", "25100.0")
        _killed_at_the_crash_point(gw)
        journal = _journal(tmp_path)
        [vid] = [f[1] for f in journal if f[0] == "Q" and f[4] == r]
        answered = [f for f in journal if f[0] == "R" and f[1] == vid]
        assert len(answered) == 1 and len(answered[0]) == 7, answered  # with the 35=9
        assert "\x0135=9\x01" in answered[0][6]
        assert not [x for x in rec.all if x.fields.get(11) == r]

        gw.start(wait_venue=False)
        gw.err.wait_for(r"order flow resumes on REST", 10)
        answer = _one_refusal(rec, r)
        assert (answer[41], answer[434], answer[102]) == (a, "2", "2")
        assert answer[58] == "REST fallback: the replace did not reach the venue"
        assert answer.get(97) != "Y"  # the OMS store could tell: never sent
        assert any(f"cancel reject {r} {SENT_ON_RESTART}" in ln for ln in gw.err.lines), \
            gw.err.text()[-3000:]


def test_a_mass_cancel_report_is_sent_after_a_kill9_and_its_cancels_carried_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over FIX: the mass cancel's U (with its 35=r) is journaled, the kill comes before the
    35=r is sent, so before any of its cancels. The restart sends the 35=r and, once the venue
    session is up, cancels the orders it covers under the mass cancel's ClOrdID."""
    monkeypatch.setenv(CRASH_ENV, "answer_journaled:r")
    with VenueStack(tmp_path) as v:
        gw, oms, rec, a = _resting_order_over_fix(v)
        b = oms.buy("0.01", "20100.0")  # rests too: far below the book
        rec.report(b, "0")
        # The OMS store, created at the gateway's start, must be from an earlier second than
        # the 35=r's record for the restart to trust it (else it sends it marked PossResend).
        time.sleep(1.1)
        mcl = new_id("M")
        oms.send("q", [(11, mcl), (530, "7"), (60, m.utc_timestamp())])
        _killed_at_the_crash_point(gw)
        taken = [f for f in _journal(tmp_path) if f[0] == "U" and f[2] == mcl]
        assert len(taken) == 1 and taken[0][7:] == [a, b], taken  # with what it covers
        assert "\x0135=r\x01" in taken[0][6]  # and its 35=r
        assert not [x for x in rec.all if x.fields.get(11) == mcl]

        gw.start()
        rep = rec.wait(lambda x: x.msg_type == "r" and x.fields.get(11) == mcl, 20)
        assert (rep.fields[531], rep.fields[533]) == ("7", "2")
        for cl in (a, b):
            rec.wait(lambda x, cl=cl: x.msg_type == "8" and x.fields.get(11) == mcl  # type: ignore[misc]
                     and x.fields.get(41) == cl and x.fields.get(150) == "4", 20)
        rec.drain(2.0)
        reports = [x for x in rec.all if x.msg_type == "r" and x.fields.get(11) == mcl]
        assert len(reports) == 1 and reports[0].fields.get(97) != "Y", [
            x.fields for x in reports]
        canceled = [x.fields[41] for x in rec.all if x.msg_type == "8"
                    and x.fields.get(11) == mcl and x.fields.get(150) == "4"]
        assert sorted(canceled) == sorted([a, b]), canceled
        assert not [x for x in rec.all if x.msg_type == "9" and x.fields.get(11) == mcl]
        assert any(f"mass cancel report {rep.fields[37]} {SENT_ON_RESTART}" in ln
                   for ln in gw.err.lines), gw.err.text()[-3000:]


def test_a_mass_cancel_killed_between_its_cancels_is_carried_out_after_a_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over FIX: the 35=r went out and the first order's cancel too; the kill comes before the
    second is journaled. The OMS's PossDup resend of the request is ignored (its ClOrdID is
    taken), so only the journal can say what is left: the restart cancels the two other
    orders under the mass cancel's ClOrdID at its first reconcile. Each order is canceled
    once at the venue (one cancel journaled each, none refused) and the OMS sees the three
    Canceled under the mass cancel's ClOrdID, after its one 35=r."""
    monkeypatch.setenv(CRASH_ENV, "mass_cancel_sent:1")
    with VenueStack(tmp_path) as v:
        gw = v.gateway()
        oms = v.oms()
        rec = Recorder(oms)
        covered = []
        for qty, px in (("0.02", "20000.0"), ("0.01", "20100.0"), ("0.03", "20200.0")):
            cl = oms.buy(qty, px)  # all rest: far below the book
            rec.report(cl, "0")
            covered.append(cl)
        mcl = new_id("M")
        oms.send("q", [(11, mcl), (530, "7"), (60, m.utc_timestamp())])
        _killed_at_the_crash_point(gw)
        journal = _journal(tmp_path)
        taken = [f for f in journal if f[0] == "U" and f[2] == mcl]
        assert len(taken) == 1 and taken[0][7:] == covered, taken
        assert len([f for f in journal if f[0] == "Q" and f[4] == mcl]) == 1  # one cancel

        gw.start()
        rep = rec.wait(lambda x: x.msg_type == "r" and x.fields.get(11) == mcl, 20)
        assert (rep.fields[531], rep.fields[533]) == ("7", "3")
        for cl in covered:
            rec.wait(lambda x, cl=cl: x.msg_type == "8" and x.fields.get(11) == mcl  # type: ignore[misc]
                     and x.fields.get(41) == cl and x.fields.get(150) == "4", 20)
        rec.drain(2.0)
        assert len([x for x in rec.all if x.msg_type == "r" and x.fields.get(11) == mcl]) == 1
        canceled = [x.fields[41] for x in rec.all if x.msg_type == "8"
                    and x.fields.get(11) == mcl and x.fields.get(150) == "4"]
        assert sorted(canceled) == sorted(covered), canceled
        assert not [x for x in rec.all if x.msg_type == "9"]
        mass_qs = [f for f in _journal(tmp_path) if f[0] == "Q" and f[4] == mcl]
        assert sorted(f[3] for f in mass_qs) == sorted(covered), mass_qs  # one each
        assert not [ln for ln in gw.err.lines if "venue refused to cancel" in ln], \
            gw.err.text()[-3000:]
        assert any(f"mass cancel {mcl} of FIXGW->OMS: 2 covered order(s)" in ln
                   for ln in gw.err.lines), gw.err.text()[-3000:]
