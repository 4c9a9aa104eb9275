"""OrdStatusReqID (790) on the answers to OrderStatusRequests the venue is asked, in process (the
venue session is a recorder, as in tests/unit/test_router_doubt, so that two questions about
one order can both be on their way): FIX 4.4 echoes each request's 790 on its own answer, and
the venue answers in the order it was asked."""

from __future__ import annotations

import time

import pytest

from gateway.routing.router import ORD_STATUS_REQ_ID
from tests.unit.test_cancel_in_flight import _message, _resting
from tests.unit.test_router_doubt import SID, _World, world

__all__ = ["world"]  # the fixture, shared with test_router_doubt


def _ask(w: _World, cl: str, req_id: str | None) -> None:
    f = {"35": "H", "11": cl, "55": "BTC/USD", "54": "1"}
    if req_id is not None:
        f["790"] = req_id
    w.router.on_oms_message(_message(f), SID, f)


def _venue_answers(w: _World, vid: str, n: int) -> None:
    w.report({"11": vid, "37": "O-A", "17": f"S-{n}", "150": "I", "39": "0", "55": "BTC/USD",
              "54": "1", "38": "0.01", "14": "0", "6": "0", "151": "0.01"}, "fix")


def test_each_status_answer_echoes_its_own_request_id(world: _World) -> None:
    """Three questions about one order (790 ASK-1, none, ASK-3) before the venue answers: the
    answers carry ASK-1, none and ASK-3, in that order. The gateway kept one 790 per order, so
    the first answer took the last request's (ASK-3) and the others none."""
    w = world
    order = _resting(w, "A")
    for req_id in ("ASK-1", None, "ASK-3"):
        _ask(w, "A", req_id)
    assert [s[11] for s in w.venue.sent if s[35] == "H"] == [order.venue_cl_ord_id] * 3
    for n in range(3):
        _venue_answers(w, order.venue_cl_ord_id, n)
    answers = [r for r in w.oms_got if r.get(35) == "8" and r.get(150) == "I"]
    assert [r.get(ORD_STATUS_REQ_ID) for r in answers] == ["ASK-1", None, "ASK-3"]


def test_a_question_whose_answer_was_lost_does_not_take_the_next_answers_id(
        world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    """ASK-1 went out just before the connection dropped (the venue never got it: the session
    keeps no copy to resend); a minute later the OMS asks again with ASK-2. The answer that
    comes is ASK-2's, not the lost ASK-1's."""
    w = world
    order = _resting(w, "A")
    _ask(w, "A", "ASK-1")
    now = time.monotonic() + 60
    monkeypatch.setattr(time, "monotonic", lambda: now)
    _ask(w, "A", "ASK-2")
    _venue_answers(w, order.venue_cl_ord_id, 0)
    (answer,) = [r for r in w.oms_got if r.get(35) == "8" and r.get(150) == "I"]
    assert answer.get(ORD_STATUS_REQ_ID) == "ASK-2"
