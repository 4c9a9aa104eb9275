from __future__ import annotations

import errno
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.orders import journal as journal_module
from gateway.orders import state
from gateway.orders.journal import Journal
from gateway.orders.model import Order
from gateway.orders.store import OrderStore, RequestDetails


def _order(cl: str = "A1", venue: str = "100") -> Order:
    return Order(oms_session="FIXGW->OMS", oms_cl_ord_id=cl, venue_cl_ord_id=venue,
                 symbol="BTC/USD", side="1", ord_type="2", qty=Decimal("1"),
                 price=Decimal("45000.0"), tif="1", oms_history=[cl])


def test_state_machine() -> None:
    assert state.can_transition(state.SENT, state.NEW)
    assert state.can_transition(state.NEW, state.PARTIALLY_FILLED)
    assert state.can_transition(state.PARTIALLY_FILLED, state.FILLED)
    assert not state.can_transition(state.FILLED, state.NEW)
    assert not state.can_transition(state.CANCELED, state.PARTIALLY_FILLED)
    assert state.can_transition(state.NEW, state.NEW)
    # A cancel or replace of an order the venue has not acknowledged yet (FIX 4.4 Appendix D):
    # its Pending Cancel / Pending Replace may come before any New.
    for pending in (state.PENDING_CANCEL, state.PENDING_REPLACE):
        assert state.can_transition(state.PENDING_NEW, pending)
        assert state.can_transition(state.SENT, pending)
    assert not state.can_transition(state.PENDING_NEW, state.REPLACED)


def test_store_rebuilds_every_mapping_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "orders.journal"
    s = OrderStore(path, fsync_interval_ms=0)
    o = _order()
    s.add_order(o)
    s.add_request("101", ("FIXGW->OMS", "A1"), "A2", "replace")
    t = s.resolve_report("101", "100", "E1")
    assert t is not None and t.oms_cl_ord_id == "A2" and t.oms_orig_cl_ord_id == "A1"
    _legal, rec = s.apply_report(t, venue_cl_ord_id="101", exec_id="E1", exec_type="5",
                                 ord_status="0", cum_qty="0", avg_px="0", order_id="OABC",
                                 qty="0.5", price="44000.0")
    s.commit(rec)
    s.mark_used("FIXGW->OMS", "BAD1")
    s.close()

    s2 = OrderStore(path, fsync_interval_ms=0)
    o2 = s2.find("FIXGW->OMS", "A2")
    assert o2 is not None and o2 is s2.find("FIXGW->OMS", "A1")
    assert (o2.oms_cl_ord_id, o2.venue_cl_ord_id, o2.order_id) == ("A2", "101", "OABC")
    assert o2.qty == Decimal("0.5") and o2.price == Decimal("44000.0")
    assert s2.is_used("FIXGW->OMS", "BAD1")
    dup = s2.resolve_report("101", None, "E1")
    assert dup is not None and dup.duplicate
    # New venue ClOrdIDs continue above every one issued before the restart.
    assert int(s2.venue_ids.next()) > 101
    s2.close()


def _journal_torn_by_a_crash(p: Path) -> None:
    """One whole record, then a torn one: the process died mid-write."""
    j = Journal(p, 0)
    j.append_line("U\tx\t1")
    j.close()
    with p.open("ab") as f:
        f.write(b"U\ty")


def test_only_fix_requests_without_an_answer_are_unanswered_after_a_restart(
        tmp_path: Path) -> None:
    path = tmp_path / "orders.journal"
    s = OrderStore(path, fsync_interval_ms=0)
    s.add_order(_order())
    key = ("FIXGW->OMS", "A1")
    s.add_request("101", key, "A2", "replace", RequestDetails(1, Decimal("0.5"), Decimal("44000")))
    t = s.resolve_report("101", "100", "E1")
    assert t is not None
    _legal, rec = s.apply_report(t, venue_cl_ord_id="101", exec_id="E1", exec_type="5",
                                 ord_status="0", cum_qty="0", avg_px="0", order_id="OABC",
                                 qty="0.5", price="44000.0")
    s.commit(rec)  # answered: 101 became the order's version
    s.add_request("102", key, "A3", "replace", RequestDetails(2, Decimal("0.4"), None))
    s.add_request("103", key, "A4", "cancel", RequestDetails(3, None, None))
    s.mark_answered("103")  # the venue refused it
    s.add_request("104", key, "A5", "cancel", RequestDetails(4, None, None))
    s.add_request("105", key, "A6", "cancel")  # over REST: not the FIX session's to send
    s.close()

    s2 = OrderStore(path, fsync_interval_ms=0)
    assert s2.unanswered_fix_requests() == {
        "102": RequestDetails(2, Decimal("0.4"), None), "104": RequestDetails(4, None, None)}
    assert s2.unanswered_fix_requests() == {}  # given once
    s2.close()


def test_fallback_requests_replay_apart_from_fix_ones_old_and_new_q_forms(
        tmp_path: Path) -> None:
    """Q records in every form a journal may hold: 6 fields (no details: before 2026-11-27),
    9 (a FIX request's), 10 (with the transport: a REST/WS cancel or amend's too). A REST/WS
    request answered by an R (a refusal, too late, an amend's Replaced) or by an E naming it
    is not unanswered; each kind is given once, and never to the other's taker."""
    path = tmp_path / "orders.journal"
    s = OrderStore(path, fsync_interval_ms=0)
    s.add_order(_order())
    s.close()
    key = "FIXGW->OMS\tA1"
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in (
            f"Q\t200\t{key}\tB0\tcancel",                          # old: no details
            f"Q\t201\t{key}\tB1\treplace\t11\t0.5\t44000",        # old FIX form
            f"Q\t202\t{key}\tB2\tcancel\t12\t\t\tfix",             # FIX, spelt out
            f"Q\t203\t{key}\tB3\tamend\t13\t0.3\t43000\trest",     # REST amend
            f"Q\t204\t{key}\tB4\tcancel\t14\t\t\tws",              # WS cancel
            f"Q\t205\t{key}\tB5\tmass\t15\t\t\trest",              # REST, answered by R
            "R\t205",
            f"Q\t206\t{key}\tB6\tamend\t16\t0.2\t\trest",          # answered by R
            "R\t206",
        )))
    s2 = OrderStore(path, fsync_interval_ms=0)
    assert s2.unanswered_fallback_requests() == {
        "203": RequestDetails(13, Decimal("0.3"), Decimal("43000"), "rest"),
        "204": RequestDetails(14, None, None, "ws")}
    assert s2.unanswered_fallback_requests() == {}  # given once
    assert s2.unanswered_fix_requests() == {
        "201": RequestDetails(11, Decimal("0.5"), Decimal("44000")),
        "202": RequestDetails(12, None, None)}
    assert s2.venue_ref("200") is not None and s2.venue_ref("203") is not None
    # Written by this version: the same forms back.
    s2.add_request("207", ("FIXGW->OMS", "A1"), "B7", "cancel",
                   RequestDetails(17, None, None, "rest"))
    s2.add_request("208", ("FIXGW->OMS", "A1"), "B8", "replace",
                   RequestDetails(18, Decimal("0.1"), None))
    s2.close()
    lines = path.read_text().splitlines()
    assert lines[-2:] == [f"Q\t207\t{key}\tB7\tcancel\t17\t\t\trest",
                          f"Q\t208\t{key}\tB8\treplace\t18\t0.1\t"]
    s3 = OrderStore(path, fsync_interval_ms=0)
    assert set(s3.unanswered_fallback_requests()) == {"203", "204", "207"}
    assert set(s3.unanswered_fix_requests()) == {"201", "202", "208"}
    s3.close()


def test_unanswered_requests_keep_their_details_across_a_compaction(tmp_path: Path) -> None:
    """A compaction's snapshot writes each request still unanswered with its details (time,
    figures, transport), so a restart after it takes it up as one after the original journal
    would; answered ones (by an R, or by becoming the order's version) are not unanswered.
    This holds for a compaction while running, at start, and after a start took them up
    (still unanswered: they stay so until answered)."""
    path = tmp_path / "orders.journal"
    s = OrderStore(path, fsync_interval_ms=0, compact_min_records=10**9)
    s.add_order(_order())
    key = ("FIXGW->OMS", "A1")
    s.add_request("101", key, "A2", "replace", RequestDetails(1, Decimal("0.5"), Decimal("44000")))
    s.add_request("102", key, "A3", "cancel", RequestDetails(2, None, None))
    s.mark_answered("102")  # the venue refused it
    s.add_request("103", key, "A4", "amend",
                  RequestDetails(3, Decimal("0.3"), Decimal("43000"), "rest"))
    s.add_request("104", key, "A5", "cancel", RequestDetails(4, None, None, "ws"))
    s.add_request("105", key, "A6", "replace", RequestDetails(5, Decimal("0.4"), None))
    t = s.resolve_report("105", "100", "E1")
    assert t is not None
    _legal, rec = s.apply_report(t, venue_cl_ord_id="105", exec_id="E1", exec_type="5",
                                 ord_status="0", cum_qty="0", avg_px="0", order_id="OABC",
                                 qty="0.4", price=None)
    s.commit(rec)  # answered: 105 became the order's version
    s.add_request("106", key, "A7", "status")  # no details: never taken up
    assert s.compact() > 0  # while running
    s.close()
    fix_requests = {"101": RequestDetails(1, Decimal("0.5"), Decimal("44000"))}
    fallback = {"103": RequestDetails(3, Decimal("0.3"), Decimal("43000"), "rest"),
                "104": RequestDetails(4, None, None, "ws")}

    s2 = OrderStore(path, fsync_interval_ms=0)  # replays the snapshot
    s2.compact()  # as at start: before they are taken up
    s2.close()

    s3 = OrderStore(path, fsync_interval_ms=0)
    assert s3.unanswered_fix_requests() == fix_requests
    assert s3.unanswered_fallback_requests() == fallback
    s3.compact()  # taken up, still unanswered: kept
    s3.mark_answered("104")  # the WS cancel's answer, after the compaction
    s3.close()

    s4 = OrderStore(path, fsync_interval_ms=0)
    assert s4.unanswered_fix_requests() == fix_requests
    assert s4.unanswered_fallback_requests() == {"103": fallback["103"]}
    o = s4.find("FIXGW->OMS", "A6")
    assert o is not None and o.venue_cl_ord_id == "105" and o.qty == Decimal("0.4")
    s4.close()


def test_journal_ignores_a_torn_last_record(tmp_path: Path) -> None:
    p = tmp_path / "j"
    _journal_torn_by_a_crash(p)
    assert list(Journal.replay_lines(p)) == ["U\tx\t1"]


def test_journal_cuts_a_torn_last_record_before_appending(tmp_path: Path) -> None:
    p = tmp_path / "j"
    _journal_torn_by_a_crash(p)
    j = Journal(p, 0)  # the next run appends
    j.append_line("U\tz\t3")
    j.close()
    assert list(Journal.replay_lines(p)) == ["U\tx\t1", "U\tz\t3"]
    # A file that is nothing but a torn record, and one that is whole, are handled too.
    q = tmp_path / "k"
    q.write_bytes(b"N\tpartial")
    Journal(q, 0).close()
    assert q.read_bytes() == b""
    whole = p.read_bytes()
    Journal(p, 0).close()
    assert p.read_bytes() == whole


def _records(n: int, first: int = 0) -> list[str]:
    return [f"U\tFIXGW->OMS\tC{i}\t{i * 7}" for i in range(first, first + n)]


def test_a_journal_killed_mid_run_replays_every_record_and_appends_after_them(
        tmp_path: Path) -> None:
    """kill -9 with the window still mapped: every record copied into it is in the file (the
    page cache has it), followed by the window's unused zeros, which replay reads as the end
    and the next open cuts off."""
    p = tmp_path / "orders.journal"
    script = ("import os, signal, sys\n"
              "from pathlib import Path\n"
              "from gateway.orders.journal import Journal\n"
              "j = Journal(Path(sys.argv[1]), 0)\n"
              "for i in range(3000):\n"
              "    j.append_line(f'U\\tFIXGW->OMS\\tC{i}\\t{i * 7}')\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", script, str(p)], timeout=30)
    assert done.returncode == -9
    written = "".join(line + "\n" for line in _records(3000)).encode()
    raw = p.read_bytes()
    assert raw.startswith(written) and len(raw) > len(written)
    assert raw[len(written):].strip(b"\0") == b""
    assert list(Journal.replay_lines(p)) == _records(3000)
    j = Journal(p, 0)  # the restart
    assert p.stat().st_size >= len(written)
    j.append_line(_records(1, 3000)[0])
    j.close()
    assert p.read_bytes() == written + (_records(1, 3000)[0] + "\n").encode()


def test_records_across_mapped_windows_replay_in_order(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "_WINDOW", 8192)
    p = tmp_path / "orders.journal"
    j = Journal(p, 0)
    lines = _records(2000)  # ~50 KB: several windows
    lines.append("X" * 20000)  # one record longer than a window
    lines += _records(10, 2000)
    for line in lines:
        j.append_line(line)
    j.close()
    assert p.read_bytes() == "".join(line + "\n" for line in lines).encode()
    j = Journal(p, 0)  # reopened mid-window: appends continue where the records end
    j.append_line("U\tlast")
    j.close()
    assert list(Journal.replay_lines(p)) == [*lines, "U\tlast"]


def test_a_record_added_after_a_crash_tail_is_read(tmp_path: Path) -> None:
    """Unused zeros left by a crash, then a record appended by another tool before the
    gateway opened the journal again: replay skips the zeros and reads the record."""
    p = tmp_path / "orders.journal"
    p.write_bytes(b"U\ta\t1\n" + b"\0" * 5000 + b"U\tb\t2\n")
    assert list(Journal.replay_lines(p)) == ["U\ta\t1", "U\tb\t2"]


def test_a_record_torn_out_of_order_is_skipped_and_the_store_still_opens(
        tmp_path: Path) -> None:
    """A kill during the copy of a record into the mapping can leave its end written and its
    start (or a middle part) not: a line that ends in a newline, with zeros at its start or
    inside. Replay skips it, and the store opens with every whole record (before, a record
    that did not parse stopped every later start of the gateway)."""
    p = tmp_path / "orders.journal"
    whole = ("N\tFIXGW->OMS\tA1\t100\tBTC/USD\t1\t2\t0.01\t30000\t1\t\tfix\n"
             "U\tFIXGW->OMS\tR1\t1790000000000\n")
    record = b"E\tFIXGW->OMS\tA1\tEX1\t0\t0\t0\tO1\t\t\t\t\n"
    inner_hole = record[:10] + b"\0" * 8 + record[18:]
    # Its start not yet written, and what is left reads as a record that does not parse (an
    # N with too few fields).
    tail = b"N\tFIXGW->OMS\tB1\t101\tBTC/USD\n"
    head_hole = b"\0" * 40 + tail
    p.write_bytes(whole.encode() + inner_hole + head_hole)
    assert list(Journal.replay_lines(p)) == [*whole.splitlines(), tail[:-1].decode()]
    s = OrderStore(p, fsync_interval_ms=0)
    a1 = s.find("FIXGW->OMS", "A1")
    assert a1 is not None and a1.status == state.SENT and s.is_used("FIXGW->OMS", "R1")
    assert s.find("FIXGW->OMS", "B1") is None
    s.close()


def test_a_full_disk_fails_the_append_and_a_later_append_recovers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Space for the next window is reserved before it is mapped, so a full disk is an
    OSError from append_line (the order is then not sent), never a SIGBUS on a store into
    the mapping; once there is space again the journal goes on."""
    monkeypatch.setattr(journal_module, "_WINDOW", 4096)
    p = tmp_path / "orders.journal"
    j = Journal(p, 0)
    real = os.posix_fallocate

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    lines = _records(200)  # more than one window
    with pytest.raises(OSError, match="No space left"):
        for line in lines:
            j.append_line(line)
    written = j.appended
    assert 0 < written < len(lines)
    monkeypatch.setattr(os, "posix_fallocate", real)
    for line in lines[written:]:
        j.append_line(line)
    j.close()
    assert list(Journal.replay_lines(p)) == lines
