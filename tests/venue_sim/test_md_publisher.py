"""The simulator's FIX market data: a subscriber's snapshot comes before its incrementals, and a
client's subscriptions end with its session."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
import quickfix as fix

from gateway.fix import messages as m
from gateway.venue_sim.engine import MatchingEngine, Side
from gateway.venue_sim.fix_face import MD_COMP_ID, SimFixFace
from gateway.venue_sim.flow import SyntheticFlow
from gateway.venue_sim.md_publisher import Subscription

BTC = "BTC/USD"
RPT_SEQ = 83


class Sink:
    """A subscriber's outbox that keeps (MsgType, MDReqID, RptSeq) of what it is given."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, str | None]] = []

    def put(self, msg: fix.Message) -> None:
        rpt_seq = None
        if m.msg_type(msg) == "X":
            group = fix.Group(m.NO_MD_ENTRIES, m.MD_UPDATE_ACTION)
            msg.getGroup(1, group)
            rpt_seq = group.getField(RPT_SEQ) if group.isSetField(RPT_SEQ) else None
        self.got.append((m.msg_type(msg), msg.getField(m.MD_REQ_ID), rpt_seq))


@pytest.fixture
def face() -> Iterator[SimFixFace]:
    engine = MatchingEngine(seed=7)
    SyntheticFlow(engine, seed=7, symbols=(BTC,)).seed_books()
    face = SimFixFace(engine, None)
    yield face
    face.stop()


def md_request(req_id: str, symbol: str = BTC) -> fix.Message:
    msg = m.new_message("V")
    msg.setField(m.MD_REQ_ID, req_id)
    msg.setField(m.SUBSCRIPTION_REQUEST_TYPE, "1")
    msg.setField(m.MARKET_DEPTH, "10")
    group = fix.Group(m.NO_RELATED_SYM, m.SYMBOL)
    group.setField(m.SYMBOL, symbol)
    msg.addGroup(group)
    return msg


def move_the_book(engine: MatchingEngine, n: int) -> None:
    bid, _ = engine.top_of_book(BTC)
    assert bid is not None
    engine.submit("SIM-TEST", f"t{n}", BTC, Side.BUY, Decimal("0.01"), bid)


def test_the_snapshot_is_queued_before_an_incremental_that_follows_the_subscription(
        face: SimFixFace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A book change right after the subscription is registered (the synthetic flow runs on
    its own thread) must reach the client after the snapshot: an X first, with RptSeq 1, is a
    gap to the client's feed, which then resubscribes."""
    sink = Sink()
    monkeypatch.setattr(face, "_outbox", lambda session_id: sink)
    subscribe = face.md.subscribe

    def subscribe_then_the_flow_moves(client: str, sub: Subscription) -> object:
        out = subscribe(client, sub)
        move_the_book(face.engine, 1)  # the flow's step, just after the lock is released
        return out

    monkeypatch.setattr(face.md, "subscribe", subscribe_then_the_flow_moves)
    face._md_request(md_request("r1"), "C", fix.SessionID("FIX.4.4", MD_COMP_ID, "C"))
    assert sink.got[:2] == [("W", "r1", None), ("X", "r1", "1")]


def test_subscriptions_end_with_the_session_even_after_a_quick_logout_and_logon(
        face: SimFixFace) -> None:
    """QuickFIX keeps one Session per SessionID across logons, so an old subscription left in
    place after a logout would feed the new session updates for a MDReqID it never sent."""
    sink = Sink()
    face.md.subscribe("C", Subscription("r1", {BTC}, 10, sink))
    face.md.client_gone("C")  # MD logout, and no book change before the client is back
    face.md.subscribe("C", Subscription("r2", {BTC}, 10, sink))
    sink.got.clear()
    move_the_book(face.engine, 1)
    assert sink.got == [("X", "r2", "1")]
