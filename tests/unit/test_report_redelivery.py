"""The pieces of "journal the report, then forward it" without processes: the journal keeps the
exact OMS message of the last forwarded report, a QuickFIX FileStore read from outside tells
whether it was sent, and the router decides from both what a restart must send."""

from __future__ import annotations

import os
import time
from decimal import Decimal
from pathlib import Path

import pytest
import quickfix as fix

from gateway.fix.store_reader import SentStore, store_prefix
from gateway.orders.model import Order
from gateway.orders.store import OrderStore
from gateway.risk.validation import OrderValidator
from gateway.routing import router as r

SID = fix.SessionID("FIX.4.4", "FIXGW", "OMS")


def _er(exec_id: str, text: str = "ok") -> str:
    msg = fix.Message()
    msg.getHeader().setField(35, "8")
    for tag, value in ((37, "O1"), (11, "C1"), (17, exec_id), (150, "F"), (39, "1"),
                       (55, "BTC/USD"), (54, "1"), (151, "0.01"), (14, "0.01"), (6, "30000"),
                       (32, "0.01"), (31, "30000"), (58, text)):
        msg.setField(tag, value)
    return str(msg.toString())


def _journal_fill(store: OrderStore, exec_id: str, message: str) -> None:
    t = store.resolve_report("100", None, exec_id)
    assert t is not None
    _, rec = store.apply_report(t, venue_cl_ord_id="100", exec_id=exec_id, exec_type="F",
                                ord_status="1", cum_qty="0.01", avg_px="30000", order_id="O1",
                                qty=None, price=None)
    store.commit_forward(rec, message)


def _store_with_order(path: Path) -> OrderStore:
    s = OrderStore(path, fsync_interval_ms=0)
    s.add_order(Order(oms_session="FIXGW->OMS", oms_cl_ord_id="C1", venue_cl_ord_id="100",
                      symbol="BTC/USD", side="1", ord_type="2", qty=Decimal("0.02"),
                      price=Decimal("30000"), tif="1", transport="rest", oms_history=["C1"]))
    return s


def test_journal_keeps_the_last_forwarded_message_exactly(tmp_path: Path) -> None:
    path = tmp_path / "orders.journal"
    s = _store_with_order(path)
    _journal_fill(s, "E1", _er("E1"))
    odd = _er("E2", "tab\there, newline\nthere, back\\slash \\t")
    _journal_fill(s, "E2", odd)
    s.commit("E\tFIXGW->OMS\tC1\tE3\t1\t0.01\t30000\tO1\t\t\t\t")  # an old-style record
    s.close()
    assert len(path.read_text().splitlines()) == 4  # one line per record, whatever the Text
    again = OrderStore(path, fsync_interval_ms=0)
    try:
        last = again.last_forward
        assert last is not None and last.exec_id == "E2" and last.message == odd
        assert last.oms_session == "FIXGW->OMS"
        assert abs(last.epoch_ms - time.time() * 1000) < 60_000
        o = again.find("FIXGW->OMS", "C1")
        assert o is not None and o.cum_qty == Decimal("0.01")
        assert again.resolve_report("100", None, "E3").duplicate  # type: ignore[union-attr]
    finally:
        again.close()


def _quickfix_store(store_dir: Path) -> fix.MessageStore:
    return fix.FileStoreFactory(str(store_dir)).create(fix.UtcTimeStamp(), SID)


def test_sent_store_reads_what_quickfix_sent(tmp_path: Path) -> None:
    d = tmp_path / "oms"
    prefix = store_prefix(d, "FIX.4.4", "FIXGW", "OMS")
    assert SentStore.load(prefix) is None  # never used: no files
    qs = _quickfix_store(d)
    for seq, exec_id in ((1, "A"), (2, "B")):
        qs.set(seq, _er(exec_id))
        qs.incrNextSenderMsgSeqNum()
    qs.set(3, "8=FIX.4.4\x019=20\x0135=9\x0111=X\x0117=C\x0110=000\x01")  # not an ER
    qs.incrNextSenderMsgSeqNum()
    qs.set(4, _er("D"))  # stored, but killed before the sequence number moved: never sent
    sent = SentStore.load(prefix)
    assert sent is not None and sent.next_sender == 4
    assert sent.created_epoch_s is not None and abs(sent.created_epoch_s - time.time()) < 60
    assert sent.sent_execution_reports(["A", "B", "C", "D", "Z"]) == {"A", "B"}
    qs.set(2, _er("E"))  # QuickFIX reuses a number: the later index entry wins
    again = SentStore.load(prefix)
    assert again is not None and again.sent_execution_reports(["B", "E"]) == {"E"}


def _router(tmp_path: Path) -> r.Router:
    s = _store_with_order(tmp_path / "orders.journal")
    _journal_fill(s, "E1", _er("E1"))
    s.close()
    router = r.Router(OrderStore(tmp_path / "orders.journal", fsync_interval_ms=0),
                      OrderValidator(known_symbol=lambda s: True))
    router.register_oms(SID, ())
    return router


def test_restart_sends_only_a_report_the_oms_store_lacks(tmp_path: Path) -> None:
    d = tmp_path / "store"
    router = _router(tmp_path)
    # No OMS store at all: nothing can tell, so it goes marked PossResend.
    pending = router.unforwarded_report(d)
    assert pending is not None and pending.poss_resend and pending.report.exec_id == "E1"
    qs = _quickfix_store(d)
    qs.set(1, _er("E0"))
    qs.incrNextSenderMsgSeqNum()
    created = SentStore.load(store_prefix(d, "FIX.4.4", "FIXGW", "OMS"))
    assert created is not None and created.created_epoch_s is not None
    # The store is older than the record and lacks it: sent as a new message.
    last = router.store.last_forward
    assert last is not None
    if last.epoch_ms // 1000 == int(created.created_epoch_s):  # same second: PossResend
        old = created.created_epoch_s - 5
        session = Path(f"{store_prefix(d, 'FIX.4.4', 'FIXGW', 'OMS')}session")
        session.write_text(time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(old)))
    pending = router.unforwarded_report(d)
    assert pending is not None and not pending.poss_resend
    # Once the store has it, it was sent.
    qs.set(2, _er("E1"))
    qs.incrNextSenderMsgSeqNum()
    assert router.unforwarded_report(d) is None


def test_restart_ignores_a_record_older_than_the_oms_store(tmp_path: Path) -> None:
    """A store created (reset for a new session period) after the record no longer holds what
    was sent before: the record was settled by the run that saw the reset."""
    d = tmp_path / "store"
    router = _router(tmp_path)
    _quickfix_store(d)
    session = Path(f"{store_prefix(d, 'FIX.4.4', 'FIXGW', 'OMS')}session")
    later = time.time() + 3600
    session.write_text(time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(later)))
    assert router.unforwarded_report(d) is None


def test_crash_point_env_is_test_only_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(r.CRASH_ENV, raising=False)
    assert r._crash_point_from_env() is None
    monkeypatch.setenv(r.CRASH_ENV, "after_journal")
    assert r._crash_point_from_env() == ("after_journal", "F")
    monkeypatch.setenv(r.CRASH_ENV, "after_forward:0")
    assert r._crash_point_from_env() == ("after_forward", "0")
    monkeypatch.setenv(r.CRASH_ENV, "sometime")
    with pytest.raises(ValueError):
        r._crash_point_from_env()
    assert os.environ[r.CRASH_ENV] == "sometime"


class _Capture:
    def __init__(self) -> None:
        self.sent: list[fix.Message] = []

    def send(self, msg: fix.Message) -> None:
        self.sent.append(msg)


@pytest.mark.parametrize("poss_resend", [False, True])
def test_redeliver_sends_the_journaled_message_as_it_was(tmp_path: Path,
                                                         poss_resend: bool) -> None:
    router = _router(tmp_path)
    last = router.store.last_forward
    assert last is not None
    cap = _Capture()
    router.redeliver(r.UnforwardedReport(cap, last, poss_resend))  # type: ignore[arg-type]
    (msg,) = cap.sent
    assert msg.toString() == _er("E1") if not poss_resend else msg.getHeader().getField(97) == "Y"
    assert msg.getField(17) == "E1" and msg.getField(32) == "0.01"


def test_a_gateway_reject_is_journaled_with_its_message_before_it_is_sent(
        tmp_path: Path) -> None:
    """A reject the gateway makes itself for an order it journaled as accepted (the venue
    dropped while sending, a held order expired) takes the same path as a venue report: the
    journal gets the exact message under the ExecID the OMS receives, before the send, so a
    restart can tell whether it left."""
    router = _router(tmp_path)
    order = router.store.find("FIXGW->OMS", "C1")
    assert order is not None
    journal = tmp_path / "orders.journal"
    seen_at_send: list[str] = []

    class _JournalAtSend(_Capture):
        key = "FIXGW->OMS"

        def send(self, msg: fix.Message) -> None:
            seen_at_send.append(journal.read_text())
            super().send(msg)

    cap = _JournalAtSend()
    router._reject_recorded(cap, order, "venue trading session disconnected while sending")  # type: ignore[arg-type]
    (msg,) = cap.sent
    exec_id = msg.getField(17)
    assert msg.getField(150) == "8" and msg.getField(39) == "8" and msg.getField(11) == "C1"
    assert f"\t{exec_id}\t" in seen_at_send[0]  # journaled before the send
    router.store.close()
    again = OrderStore(journal, fsync_interval_ms=0)
    last = again.last_forward
    assert last is not None and last.exec_id == exec_id
    assert last.message == msg.toString()  # what redeliver() would send
    again.close()


def _cancel_reject(cl: str) -> str:
    msg = fix.Message()
    msg.getHeader().setField(35, "9")
    for tag, value in ((37, "O1"), (11, cl), (41, "C1"), (39, "0"), (434, "2"), (102, "2"),
                       (58, "REST fallback: the replace did not reach the venue")):
        msg.setField(tag, value)
    return str(msg.toString())


def _mass_report(cl: str, report_id: str) -> str:
    msg = fix.Message()
    msg.getHeader().setField(35, "r")
    for tag, value in ((11, cl), (37, report_id), (530, "7"), (531, "7"), (533, "1")):
        msg.setField(tag, value)
    return str(msg.toString())


def test_a_poller_cancel_reject_and_a_mass_cancel_report_are_journaled_answers(
        tmp_path: Path) -> None:
    """The poller's 35=9 (in its R) and a mass cancel's 35=r (in its U) are the journal's last
    answer like a report, found by ClOrdID resp. report OrderID, through replay and through a
    compaction's snapshot; neither counts as the session's last refusal (the one a PossDup
    resend of the request being handled is answered again with)."""
    path = tmp_path / "orders.journal"
    s = _store_with_order(path)
    s.mark_used("FIXGW->OMS", "X1", ("2", "held"))  # the OMS thread's own refusal
    s.add_request("101", ("FIXGW->OMS", "C1"), "R1", "amend")
    s.mark_answered("101", answer=("FIXGW->OMS", _cancel_reject("R1")))
    s.close()
    again = OrderStore(path, fsync_interval_ms=0)
    last = again.last_forward
    assert last is not None and (last.msg_type, last.id_tag, last.exec_id) == ("9", "11", "R1")
    assert last.oms_session == "FIXGW->OMS" and last.message == _cancel_reject("R1")
    assert again.refusal("FIXGW->OMS", "X1") == ("2", "held")
    again.mark_used("FIXGW->OMS", "M1", answer=_mass_report("M1", "MASS-1"))
    again.close()
    third = OrderStore(path, fsync_interval_ms=0)
    last = third.last_forward
    assert last is not None and (last.msg_type, last.id_tag, last.exec_id) == ("r", "37",
                                                                              "MASS-1")
    assert third.is_used("FIXGW->OMS", "M1")
    assert third.refusal("FIXGW->OMS", "X1") == ("2", "held")
    third.compact()
    third.close()
    fourth = OrderStore(path, fsync_interval_ms=0)
    assert fourth.last_forward == last
    fourth.close()


def test_sent_store_finds_a_cancel_reject_and_a_mass_cancel_report(tmp_path: Path) -> None:
    d = tmp_path / "oms"
    qs = _quickfix_store(d)
    qs.set(1, _cancel_reject("R1"))
    qs.incrNextSenderMsgSeqNum()
    qs.set(2, _mass_report("M1", "MASS-1"))
    qs.incrNextSenderMsgSeqNum()
    qs.set(3, _cancel_reject("R2"))  # killed before the sequence number moved: never sent
    sent = SentStore.load(store_prefix(d, "FIX.4.4", "FIXGW", "OMS"))
    assert sent is not None
    assert sent.sent_messages("9", "11", ["R1", "R2", "M1"]) == {"R1"}
    assert sent.sent_messages("r", "37", ["MASS-1", "MASS-2"]) == {"MASS-1"}
    assert sent.sent_messages("8", "11", ["R1"]) == set()  # a 35=9, not an ER


def test_restart_sends_a_poller_cancel_reject_the_oms_store_lacks(tmp_path: Path) -> None:
    d = tmp_path / "store"
    qs = _quickfix_store(d)
    session = Path(f"{store_prefix(d, 'FIX.4.4', 'FIXGW', 'OMS')}session")
    session.write_text(time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(time.time() - 5)))
    qs.set(1, _er("R1"))  # an ER with ExecID R1: not the 35=9 of request R1
    qs.incrNextSenderMsgSeqNum()
    s = _store_with_order(tmp_path / "orders.journal")
    s.add_request("101", ("FIXGW->OMS", "C1"), "R1", "amend")
    s.mark_answered("101", answer=("FIXGW->OMS", _cancel_reject("R1")))
    s.close()
    router = r.Router(OrderStore(tmp_path / "orders.journal", fsync_interval_ms=0),
                      OrderValidator(known_symbol=lambda s: True))
    router.register_oms(SID, ())
    pending = router.unforwarded_report(d)
    assert pending is not None and not pending.poss_resend
    cap = _Capture()
    router.redeliver(r.UnforwardedReport(cap, pending.report, False))  # type: ignore[arg-type]
    (msg,) = cap.sent
    assert msg.toString() == _cancel_reject("R1")
    qs.set(2, _cancel_reject("R1"))
    qs.incrNextSenderMsgSeqNum()
    assert router.unforwarded_report(d) is None
