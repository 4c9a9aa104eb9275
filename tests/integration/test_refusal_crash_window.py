"""kill -9 between journaling the gateway's own refusal of an OMS cancel or replace and sending
its 35=9, then restart: the OMS gets the 35=9.

The refusal takes the request's ClOrdID in the journal (a U record, or the request's Q and an
R); QuickFIX never advanced the OMS session's incoming sequence, so after the restart it asks
the OMS to resend the request, which arrives with PossDupFlag=Y. That resend must get the
refusal again (the journal keeps its CxlRejReason and Text): ignoring it as a request already
taken, as for one that went to the venue, leaves the OMS waiting for ever. The window is
microseconds wide; the test-only crash point "refusal_journaled" opens it on demand. Real
gateway and simulator processes over loopback FIX (and the simulator's REST face)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.routing.router import CRASH_ENV
from tests.conftest import new_id
from tests.integration.test_failover import Recorder
from tests.integration.test_failover_orders import fix_amend
from tests.integration.test_failover_request_restart import (
    _journal,
    _resting_order_over_fix,
    _resting_order_over_rest,
)
from tests.procs import GatewayProcess, VenueStack

ANSWERED_AGAIN = "the gateway refused it before (its answer may never have left): answered again"


def _killed_at_the_crash_point(gw: GatewayProcess) -> None:
    """Wait for the armed crash point, then disarm it for the restart (read at start)."""
    assert gw.proc is not None
    assert gw.proc.wait(timeout=15) == 137, gw.err.text()[-3000:]
    gw._env.pop(CRASH_ENV)


def _one_refusal(rec: Recorder, cl: str) -> dict[int, str]:
    """The OMS's one 35=9 for request `cl` (waited for, then no second one for a while) and
    no ExecutionReport for it."""
    rec.wait(lambda r: r.msg_type == "9" and r.fields.get(11) == cl, 20)
    rec.drain(2.0)
    answers = [r for r in rec.all if r.fields.get(11) == cl]
    assert [r.msg_type for r in answers] == ["9"], [r.fields for r in answers]
    return answers[0].fields


def test_a_replace_the_gateway_refused_is_answered_after_a_kill9(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over FIX: a replace that changes TimeInForce is the gateway's to refuse (nothing goes to
    the venue); the kill comes after its U record, before the 35=9."""
    monkeypatch.setenv(CRASH_ENV, "refusal_journaled:G")
    with VenueStack(tmp_path) as v:
        gw, oms, rec, a = _resting_order_over_fix(v)
        x = new_id("X")
        fix_amend(oms, x, a, "0.03", "20000.0", tif="3")
        _killed_at_the_crash_point(gw)
        taken = [f for f in _journal(tmp_path) if f[0] == "U" and f[2] == x]
        assert len(taken) == 1 and len(taken[0]) == 6, taken  # with its answer
        assert not [r for r in rec.all if r.fields.get(11) == x]

        gw.start()
        answer = _one_refusal(rec, x)
        assert (answer[41], answer[434], answer[102]) == (a, "2", "2")
        assert answer[58] == ("a replace may change only OrderQty and Price (not Side, "
                              "OrdType or TimeInForce)")
        assert any(ANSWERED_AGAIN in ln for ln in gw.err.lines), gw.err.text()[-3000:]


def test_a_rest_cancel_refused_is_answered_after_a_kill9(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the REST fallback: the cancel is journaled (Q), REST refuses it (not a doubt: an
    error the venue answered), the refusal is journaled (R, with its answer), and the kill
    comes before the 35=9. The restart does not take the cancel up as unanswered, and the
    OMS's resend of it gets the venue's refusal again."""
    monkeypatch.setenv(CRASH_ENV, "refusal_journaled:F")
    with VenueStack(tmp_path) as v:
        gw, oms, rec, a = _resting_order_over_rest(v)
        v.sim.control(cmd="rest_fault", fault="fail", n=1, status=200,
                      error="EGeneral:Permission denied", path_prefix="/0/private/CancelOrder")
        c = new_id("C")
        oms.send("F", [(11, c), (41, a), (55, "BTC/USD"), (54, "1"), (38, "0.02"),
                       (60, "20260101-00:00:00")])
        _killed_at_the_crash_point(gw)
        journal = _journal(tmp_path)
        [vid] = [f[1] for f in journal if f[0] == "Q" and f[4] == c]
        refused = [f for f in journal if f[0] == "R" and f[1] == vid]
        assert len(refused) == 1 and refused[0][2] == "2", refused  # with its answer
        assert not [r for r in rec.all if r.fields.get(11) == c]

        gw.start(wait_venue=False)
        gw.err.wait_for(r"order flow resumes on REST", 10)
        answer = _one_refusal(rec, c)
        assert (answer[41], answer[434], answer[102]) == (a, "1", "2")
        assert answer[58].startswith("REST fallback: API key lacks permission"), answer[58]
        assert any(ANSWERED_AGAIN in ln for ln in gw.err.lines), gw.err.text()[-3000:]
