"""A cancel or replace the gateway refuses itself is journaled with its answer before the 35=9
goes out, so that after a kill -9 in between, the OMS's PossDup resend of the request (QuickFIX
asks for it: the gateway never advanced its incoming sequence) gets that answer again rather
than being ignored as a request the venue will answer. A request that went to the venue is
still ignored on its resend: the venue's answer comes its own way.

In process: the venue session is a recorder, the OMS session's sends are collected, and the
kill is the router's test-only crash point raising instead of exiting; the restart is a new
store and router on the same journal."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import quickfix as fix

from gateway.fix import messages as m
from gateway.orders.model import Order
from gateway.orders.store import OrderStore
from gateway.risk.validation import OrderValidator
from gateway.routing.router import BROKER_OPTION, OmsContext, Router
from tests.conftest import tag_fields

SID = fix.SessionID("FIX.4.4", "FIXGW", "OMS")
KEY = "FIXGW->OMS"
NOT_ONLY_QTY_AND_PRICE = ("a replace may change only OrderQty and Price (not Side, OrdType or "
                          "TimeInForce)")
# A Text that needs escaping in the journal (a venue's may hold anything).
TOO_LATE_ANSWER = ("0", "too late:\torder filled\nand a back\\slash")


class _Killed(Exception):
    """The gateway died at the armed crash point."""


class _Venue:
    """Stands in for the venue's fix.Session: records what it is sent; `up` False makes the
    send fail (the session dropped between the router's check and its send)."""

    def __init__(self) -> None:
        self.sent: list[dict[int, str]] = []
        self.up = True

    def send(self, msg: fix.Message) -> bool:
        if not self.up:
            return False
        self.sent.append(tag_fields(msg))
        return True


class _Gateway:
    """One run of the gateway's order path on the journal at `path`."""

    def __init__(self, path: Path, oms_got: list[dict[int, str]]) -> None:
        self.store = OrderStore(path, fsync_interval_ms=0, compact_min_records=10**9)
        self.router = Router(self.store, OrderValidator(lambda s: s == "BTC/USD"))
        self.router.register_oms(SID, ())
        self.venue = _Venue()
        self.router.venue.session = self.venue  # type: ignore[assignment]
        self.router.venue.logged_on = True
        self.oms_got = oms_got

    def oms(self, msg_type: str, fields: dict[str, str], poss_dup: bool = False) -> None:
        """A message from the OMS, handled on its session's thread (this one)."""
        f = dict(fields, **{"35": msg_type})
        if poss_dup:
            f["43"] = "Y"
        msg = m.new_message(msg_type)
        for tag, value in f.items():
            if tag != "35":
                msg.setField(int(tag), value)
        self.router.on_oms_message(msg, SID, f)

    def new_order(self, cl: str) -> str:
        """An order resting at the venue (acknowledged); returns its venue ClOrdID."""
        self.oms("D", {"11": cl, "55": "BTC/USD", "54": "1", "38": "0.01", "40": "2",
                       "44": "30000", "59": "1", "60": "20260101-00:00:00"})
        vid = self.venue.sent[-1][11]
        new = {"11": vid, "37": f"O-{vid}", "17": f"E-{vid}", "150": "0", "39": "0",
               "55": "BTC/USD", "54": "1", "38": "0.01", "14": "0", "6": "0", "151": "0.01"}
        msg = m.new_message("8")
        for tag, value in new.items():
            msg.setField(int(tag), value)
        self.router.on_venue_message(msg, dict(new, **{"35": "8"}))
        return vid


@pytest.fixture
def oms_got(monkeypatch: pytest.MonkeyPatch) -> list[dict[int, str]]:
    """What the gateway sends the OMS, in every run of a test."""
    got: list[dict[int, str]] = []
    monkeypatch.setattr(OmsContext, "send", lambda ctx, msg: got.append(tag_fields(msg)))
    return got


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[list[_Gateway]]:
    opened: list[_Gateway] = []
    yield opened
    for g in opened:
        g.store.close()


@pytest.fixture
def armed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Crash points ("refusal_journaled:G") at which the gateway dies (raises `_Killed`), as
    CRASH_ENV would make it exit there; cleared for the restart."""
    points: list[str] = []

    def crash(router: Router, at: str, exec_type: str) -> None:
        if f"{at}:{exec_type}" in points:
            raise _Killed(at)

    monkeypatch.setattr(Router, "maybe_crash", crash)
    return points


def _order(cl: str, venue: str) -> Order:
    return Order(oms_session=KEY, oms_cl_ord_id=cl, venue_cl_ord_id=venue, symbol="BTC/USD",
                 side="1", ord_type="2", qty=Decimal("1"), price=Decimal("45000.0"), tif="1",
                 oms_history=[cl])


def _start(tmp_path: Path, oms_got: list[dict[int, str]], runs: list[_Gateway]) -> _Gateway:
    """A (re)start on the test's journal. The run before is gone first: its journal file is
    left as a kill leaves it once the next start has cut the unused space after its last
    record (which closing it does now: two journals must not map one file)."""
    while runs:
        runs.pop().store.close()
    g = _Gateway(tmp_path / "orders.journal", oms_got)
    runs.append(g)
    return g


def _replace_changing_tif(g: _Gateway, cl: str, orig: str, poss_dup: bool = False) -> None:
    g.oms("G", {"11": cl, "41": orig, "55": "BTC/USD", "54": "1", "38": "0.02", "40": "2",
                "44": "30000", "59": "3", "60": "20260101-00:00:00"}, poss_dup)


def _cancel(g: _Gateway, cl: str, orig: str, poss_dup: bool = False) -> None:
    g.oms("F", {"11": cl, "41": orig, "55": "BTC/USD", "54": "1", "38": "0.01",
                "60": "20260101-00:00:00"}, poss_dup)


def _refusals(got: list[dict[int, str]], cl: str) -> list[dict[int, str]]:
    return [r for r in got if r[35] == "9" and r[11] == cl]


@pytest.mark.parametrize("compact_at_restart", [False, True])
def test_a_replace_refused_by_the_gateway_is_answered_again_after_a_kill(
        tmp_path: Path, oms_got: list[dict[int, str]], runs: list[_Gateway],
        armed: list[str], compact_at_restart: bool) -> None:
    """Refused with nothing sent to the venue (a U record with the answer); the restart may
    compact the journal first (its snapshot keeps the answer)."""
    g = _start(tmp_path, oms_got, runs)
    g.new_order("A1")
    armed.append("refusal_journaled:G")
    with pytest.raises(_Killed):
        _replace_changing_tif(g, "X1", "A1")
    assert _refusals(oms_got, "X1") == []  # the kill came before the 35=9
    armed.clear()

    again = _start(tmp_path, oms_got, runs)
    if compact_at_restart:  # and a second restart replays the snapshot written by the first
        again.store.compact()
        again = _start(tmp_path, oms_got, runs)
    _replace_changing_tif(again, "X1", "A1", poss_dup=True)
    [answer] = _refusals(oms_got, "X1")
    assert (answer[41], answer[434], answer[102], answer[58]) == (
        "A1", "2", BROKER_OPTION, NOT_ONLY_QTY_AND_PRICE)
    assert [s[35] for s in again.venue.sent] == []
    # A new message reusing the ClOrdID (no PossDupFlag) is a duplicate, as before.
    _replace_changing_tif(again, "X1", "A1")
    assert _refusals(oms_got, "X1")[-1][102] == "6"


def test_a_cancel_refused_after_it_was_journaled_is_answered_again_after_a_kill(
        tmp_path: Path, oms_got: list[dict[int, str]], runs: list[_Gateway],
        armed: list[str]) -> None:
    """The venue session dropped between the router's check and its send: the cancel was
    journaled (a Q), then refused with an R carrying the answer. The restart neither sends
    it to the venue again nor ignores the OMS's resend of it; a compaction at the restart
    keeps the answer."""
    g = _start(tmp_path, oms_got, runs)
    g.new_order("A1")
    g.venue.up = False
    armed.append("refusal_journaled:F")
    with pytest.raises(_Killed):
        _cancel(g, "C1", "A1")
    assert _refusals(oms_got, "C1") == []
    armed.clear()

    again = _start(tmp_path, oms_got, runs)
    assert again.router.find_unanswered_requests() == 0  # answered (refused), not in doubt
    again.store.compact()
    again = _start(tmp_path, oms_got, runs)  # replays the snapshot the last run wrote
    _cancel(again, "C1", "A1", poss_dup=True)
    [answer] = _refusals(oms_got, "C1")
    assert (answer[41], answer[434], answer[102], answer[58]) == (
        "A1", "1", BROKER_OPTION, "venue trading session disconnected while sending")
    assert again.venue.sent == []


def test_the_resend_of_a_request_sent_to_the_venue_is_still_ignored(
        tmp_path: Path, oms_got: list[dict[int, str]], runs: list[_Gateway]) -> None:
    """The cancel reached the venue, whose answer comes its own way: the OMS's resend gets
    nothing from the gateway (and is not sent again), even though the gateway refused
    another request of the session before it."""
    g = _start(tmp_path, oms_got, runs)
    g.new_order("A1")
    _replace_changing_tif(g, "X1", "A1")  # refused: the session's last refusal
    _cancel(g, "C1", "A1")
    assert g.venue.sent[-1][35] == "F"
    before = len(oms_got)

    again = _start(tmp_path, oms_got, runs)
    _cancel(again, "C1", "A1", poss_dup=True)
    assert oms_got[before:] == [] and again.venue.sent == []


def test_a_refusal_journaled_without_its_answer_is_answered_with_what_can_be_said(
        tmp_path: Path, oms_got: list[dict[int, str]], runs: list[_Gateway]) -> None:
    """A journal written before refusals carried their answer: the ClOrdID taken names no
    order, so the gateway refused it; its resend is refused again, saying so."""
    g = _start(tmp_path, oms_got, runs)
    g.new_order("A1")
    g.store.mark_used(KEY, "X1")  # the refusal as older gateways journaled it

    again = _start(tmp_path, oms_got, runs)
    _replace_changing_tif(again, "X1", "A1", poss_dup=True)
    [answer] = _refusals(oms_got, "X1")
    assert answer[102] == BROKER_OPTION and "was refused before" in answer[58]


def test_a_refusal_keeps_its_answer_in_the_journal_and_across_a_compaction(
        tmp_path: Path) -> None:
    """The store's side: the last refusal per OMS session, from a U or an R, with a Text that
    holds a tab, replays and survives a compaction; records without an answer replay as
    before."""
    path = tmp_path / "orders.journal"
    s = OrderStore(path, fsync_interval_ms=0, compact_min_records=10**9)
    s.add_order(_order("A1", "100"))
    assert s.refusal(KEY, "U1") is None
    s.mark_used(KEY, "U1", ("2", "no\tway"))
    assert s.refusal(KEY, "U1") == ("2", "no\tway") and s.refusal(KEY, "U2") is None
    s.add_request("101", (KEY, "A1"), "R1", "cancel")
    s.mark_answered("101", TOO_LATE_ANSWER)
    assert s.refusal(KEY, "R1") == TOO_LATE_ANSWER
    assert s.refusal(KEY, "U1") is None  # only the session's last
    s.mark_used("FIXGW->OMS2", "V1", ("2", "other session"))
    s.add_request("102", (KEY, "A1"), "R2", "cancel")
    s.mark_answered("102")  # the venue's refusal: no answer of the gateway's
    assert s.refusal(KEY, "R1") is not None and s.refusal(KEY, "R2") is None
    s.close()
    r = OrderStore(path, fsync_interval_ms=0)
    assert r.refusal(KEY, "R1") == TOO_LATE_ANSWER
    assert r.refusal("FIXGW->OMS2", "V1") == ("2", "other session")
    assert r.refusal(KEY, "U1") is None and r.refusal(KEY, "R2") is None
    r.compact()
    r.close()
    r = OrderStore(path, fsync_interval_ms=0)  # the snapshot the last run wrote
    assert r.refusal(KEY, "R1") == TOO_LATE_ANSWER
    assert r.refusal("FIXGW->OMS2", "V1") == ("2", "other session")
    assert r.is_used("FIXGW->OMS2", "V1") and r.is_used(KEY, "U1")
    r.close()
