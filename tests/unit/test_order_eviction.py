"""Closed orders are forgotten after the retention, and the journal is compacted, at start and
while running (gateway/orders/store.py): every index that pointed at a forgotten order lets go
of it, and a compacted journal rebuilds the store it was written from — exactly when nothing
writes meanwhile, and to the same orders and indexes when the order path writes throughout."""

from __future__ import annotations

import shutil
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
import quickfix as fix

from gateway.config import load_config
from gateway.config.loader import ConfigError
from gateway.fix.messages import split_fields
from gateway.orders import store as store_mod
from gateway.orders.journal import Journal, replay_files
from gateway.orders.model import Order
from gateway.orders.store import OrderKey, OrderStore
from gateway.risk.validation import OrderValidator
from gateway.routing.router import Router

S = "FIXGW->OMS"
T0 = 1_790_000_000.0  # a fixed wall clock, so replayed times compare exactly


class Clock:
    """Stands in for the `time` module inside gateway.orders.store."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def time_ns(self) -> int:
        return int(self.now * 1e9)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(T0)
    monkeypatch.setattr(store_mod, "time", c)
    return c


def _new(s: OrderStore, cl: str, venue: str) -> Order:
    o = Order(oms_session=S, oms_cl_ord_id=cl, venue_cl_ord_id=venue, symbol="BTC/USD",
              side="1", ord_type="2", qty=Decimal("1"), price=Decimal("45000.0"), tif="1",
              oms_history=[cl])
    s.add_order(o)
    return o


def _report(s: OrderStore, venue: str, exec_id: str, exec_type: str, status: str,
            cum: str = "0", forward: bool = True) -> None:
    t = s.resolve_report(venue, None, exec_id)
    assert t is not None and not t.duplicate
    with s.report_lock:  # as the router applies and journals a report
        _legal, rec = s.apply_report(t, venue_cl_ord_id=venue, exec_id=exec_id,
                                     exec_type=exec_type, ord_status=status, cum_qty=cum,
                                     avg_px="45000.0" if cum != "0" else "0",
                                     order_id=f"O{venue}", qty=None, price=None)
        if forward:
            s.commit_forward(rec, f"8=FIX.4.4\x0135=8\x0117={exec_id}\x01")
        else:
            s.commit(rec)


def _replace(s: OrderStore, first: str, orig_venue: str, venue: str, new_cl: str,
             exec_id: str, qty: str, price: str) -> str:
    """A replace request and the venue's Replaced report applied; returns its journal record."""
    s.add_request(venue, (S, first), new_cl, "replace")
    t = s.resolve_report(venue, orig_venue, exec_id)
    assert t is not None
    _legal, rec = s.apply_report(t, venue_cl_ord_id=venue, exec_id=exec_id, exec_type="5",
                                 ord_status="0", cum_qty="0", avg_px="0",
                                 order_id=f"O{orig_venue}", qty=qty, price=price)
    return rec


def _amend(s: OrderStore, first: str, venue: str, request: str, new_cl: str, exec_id: str,
           qty: str, price: str) -> str:
    """An amend over REST/WS and its Replaced report applied; returns its journal record."""
    s.add_request(request, (S, first), new_cl, "amend")
    t = s.resolve_report(request, venue, exec_id)
    assert t is not None
    _legal, rec = s.apply_report(t, venue_cl_ord_id=request, exec_id=exec_id, exec_type="5",
                                 ord_status="1", cum_qty="1", avg_px="0",
                                 order_id=None, qty=qty, price=price)
    o = s.find(S, new_cl)
    assert o is not None and o.venue_cl_ord_id == venue
    return rec


def test_a_closed_order_is_forgotten_with_every_index_after_the_retention(
        tmp_path: Path, clock: Clock) -> None:
    s = OrderStore(tmp_path / "j", fsync_interval_ms=0, closed_retention_s=600)
    _new(s, "OPEN1", "100")
    _new(s, "DONE1", "200")
    _report(s, "100", "E1", "0", "0")
    _report(s, "200", "E2", "0", "0")
    # DONE1 is replaced (DONE2), a status request names it under its own ClOrdID, then filled.
    s.commit(_replace(s, "DONE1", "200", "201", "DONE2", "E3", "2", "44000.0"))
    s.add_request("202", (S, "DONE1"), "DONE2", "status")
    s.add_request("203", (S, "DONE1"), "CXL1", "cancel")
    _report(s, "201", "E4", "F", "2", cum="2")
    assert [o.oms_cl_ord_id for o in s.open_orders()] == ["OPEN1"]

    clock.now = T0 + 599
    assert s.evict_closed() == 0
    assert s.find(S, "DONE2") is not None

    clock.now = T0 + 601
    assert s.evict_closed() == 1
    for cl in ("DONE1", "DONE2", "CXL1"):
        assert s.find(S, cl) is None
        assert not s.is_used(S, cl)
    for venue in ("200", "201", "202", "203"):
        assert s.venue_ref(venue) is None
        assert s.resolve_report(venue, None, "E9") is None
    # The open order and everything of it is untouched.
    assert s.find(S, "OPEN1") is not None and s.is_used(S, "OPEN1")
    again = s.resolve_report("100", None, "E1")
    assert again is not None and again.duplicate
    assert s.counts().held == 1 and s.counts().open == 1 and s.counts().evicted == 1
    s.close()


def test_an_order_reopened_by_the_venue_is_not_forgotten(tmp_path: Path, clock: Clock) -> None:
    s = OrderStore(tmp_path / "j", fsync_interval_ms=0, closed_retention_s=600)
    _new(s, "A1", "100")
    _report(s, "100", "E1", "4", "4")  # canceled ...
    clock.now = T0 + 10
    _report(s, "100", "E2", "0", "0")  # ... then the venue says it is live after all
    clock.now = T0 + 10_000
    assert s.evict_closed() == 0
    assert [o.oms_cl_ord_id for o in s.open_orders()] == ["A1"]
    _report(s, "100", "E3", "4", "4")  # closes again: a full retention from now
    clock.now = T0 + 10_000 + 599
    assert s.evict_closed() == 0
    clock.now = T0 + 10_000 + 601
    assert s.evict_closed() == 1
    s.close()


def test_a_rejected_cl_ord_id_stays_a_duplicate_for_the_retention_across_a_restart(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "j"
    s = OrderStore(path, fsync_interval_ms=0, closed_retention_s=600)
    s.mark_used(S, "BAD1")
    s.close()
    clock.now = T0 + 300
    s = OrderStore(path, fsync_interval_ms=0, closed_retention_s=600)
    assert s.is_used(S, "BAD1")  # the rejection's own time came back from the journal
    s.close()
    clock.now = T0 + 601
    s = OrderStore(path, fsync_interval_ms=0, closed_retention_s=600)
    assert not s.is_used(S, "BAD1")
    s.close()


def test_a_cl_ord_id_reused_after_eviction_replays_as_it_ran(tmp_path: Path,
                                                             clock: Clock) -> None:
    """Order X (replaced to X2) closes and is forgotten; the OMS then uses X again for a new
    order and X2 for a rejected one. A restart before any compaction rebuilds that store: the
    old order's venue ids and ClOrdIDs do not come back pointing at the new order, and the
    rejected X2 is still a duplicate."""
    s = OrderStore(tmp_path / "j", fsync_interval_ms=0, closed_retention_s=600)
    _new(s, "X", "100")
    _report(s, "100", "E1", "0", "0")
    s.commit(_replace(s, "X", "100", "101", "X2", "E2", "2", "44000.0"))
    _report(s, "101", "E3", "F", "2", cum="2")
    clock.now = T0 + 601
    assert s.evict_closed() == 1
    _new(s, "X", "200")
    s.mark_used(S, "X2")  # the OMS reused X2 too, and it was rejected
    s.close()

    again = OrderStore(tmp_path / "j", fsync_interval_ms=0, closed_retention_s=600)
    assert again.venue_ref("100") is None and again.venue_ref("101") is None
    assert again.resolve_report("101", None, "E9") is None
    new = again.find(S, "X")
    assert new is not None and new.venue_cl_ord_id == "200" and new.is_open
    assert again.find(S, "X2") is None and again.is_used(S, "X2")
    again.close()


def test_no_retention_keeps_every_order(tmp_path: Path, clock: Clock) -> None:
    s = OrderStore(tmp_path / "j", fsync_interval_ms=0)
    _new(s, "A1", "100")
    _report(s, "100", "E1", "4", "4")
    clock.now = T0 + 10**7
    assert s.evict_closed() == 0 and s.find(S, "A1") is not None
    s.close()


def _state(s: OrderStore) -> dict[str, object]:
    return {
        "orders": dict(s.orders), "open": sorted(s._open), "oms_index": dict(s._oms_index),
        "used": set(s._used_cl_ord_ids), "refs": dict(s._venue_refs),
        "seen": set(s._seen_exec), "closed_q": list(s._closed_queue),
        "rejected_q": list(s._rejected_queue), "venue_high": s.venue_ids.last,
        "transport": s.last_transport, "last_forward": s.last_forward,
    }


def _history(path: Path, clock: Clock) -> None:
    """A journal of every record kind: 300 filled orders (old), then live state."""
    s = OrderStore(path, fsync_interval_ms=0, closed_retention_s=3600)
    for i in range(300):
        _new(s, f"OLD{i}", str(1000 + i))
        _report(s, str(1000 + i), f"X{i}a", "0", "0", forward=False)
        _report(s, str(1000 + i), f"X{i}b", "F", "2", cum="1")
    s.mark_used(S, "BAD-OLD")
    clock.now = T0 + 7200  # the 300 and BAD-OLD are now past the retention
    s.mark_used(S, "BAD-NEW")
    _new(s, "LIVE1", "5000")
    _report(s, "5000", "L1", "0", "0")
    rec = _replace(s, "LIVE1", "5000", "5001", "LIVE2", "L2", "3", "44000.5")
    # The last report forwarded (later ones are not): its Text holds a tab.
    s.commit_forward(rec, "8=FIX.4.4\x0135=8\x0158=tab\there\x01")
    s.add_request("5002", (S, "LIVE1"), "LIVE2", "status")
    _report(s, "5001", "L3", "F", "1", cum="1", forward=False)
    # A rebind as journals before 2026-11-27 wrote it, then an in-place amend (request kind
    # "amend"): the venue keeps 5001, which now names LIVE3.
    s.commit(f"A\t5001\t{S}\tLIVE1\tLIVE2")
    s.commit(_amend(s, "LIVE1", "5001", "5003", "LIVE3", "L4", "2", "44001"))
    _new(s, "HELD1", "6000")
    s.set_transport(s.orders[(S, "HELD1")], "rest")
    _new(s, "GONE1", "7000")
    _report(s, "7000", "G1", "8", "8", forward=False)  # closed, but recently: kept
    s.record_switch("fix", "rest")
    s.close()


def test_compaction_rebuilds_exactly_the_store_it_was_written_from(
        tmp_path: Path, clock: Clock) -> None:
    raw, compacted = tmp_path / "raw", tmp_path / "compacted"
    _history(raw, clock)
    compacted.write_bytes(raw.read_bytes())
    records = len(raw.read_text().splitlines())

    clock.now = T0 + 7300
    plain = OrderStore(raw, fsync_interval_ms=0, closed_retention_s=3600,
                       compact_min_records=10**9)
    assert plain.evicted == 300  # evicted while replaying, journal left as it was
    # Read as records: the open journal's file runs on into its reserved, unused space.
    assert len(raw.read_bytes().rstrip(b"\0").splitlines()) == records
    first = OrderStore(compacted, fsync_interval_ms=0, closed_retention_s=3600,
                       compact_min_records=1)
    # The snapshot, and a fresh (empty) journal after it; the sealed journal is gone.
    assert replay_files(compacted) == [tmp_path / "compacted.snap.1", compacted]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compacted", "compacted.snap.1", "raw"]
    lines = list(Journal.replay_lines(compacted))
    assert len(lines) < records / 10
    assert not any(line.startswith(("N\tFIXGW->OMS\tOLD", "U\tFIXGW->OMS\tBAD-OLD"))
                   for line in lines)
    first.close()
    again = OrderStore(compacted, fsync_interval_ms=0, closed_retention_s=3600,
                       compact_min_records=10**9)
    assert _state(again) == _state(plain) == _state(first)
    assert again.is_used(S, "BAD-NEW") and not again.is_used(S, "BAD-OLD")
    live = again.find(S, "LIVE1")
    assert live is not None and live is again.find(S, "LIVE2")
    assert (live.qty, live.price, live.cum_qty, live.oms_history) == (
        Decimal("2"), Decimal("44001"), Decimal("1"), ["LIVE1", "LIVE2", "LIVE3"])
    # The amend kept the venue's ClOrdID, and a report under it is LIVE3's.
    assert live.venue_cl_ord_id == "5001"
    t = again.resolve_report("5001", None, "L5")
    assert t is not None and t.oms_cl_ord_id == "LIVE3"
    assert again.last_forward is not None and "tab\there" in again.last_forward.message
    assert again.last_transport == "rest"
    assert int(again.venue_ids.next()) > 7000
    # Orders keep closing and being forgotten on the compacted journal as on the raw one.
    # GONE1's report was not forwarded, so carries no time: it closed at the replay, T0 + 7300.
    clock.now = T0 + 7300 + 3599
    assert again.evict_closed() == plain.evict_closed() == 0
    clock.now = T0 + 7300 + 3601
    assert again.evict_closed() == plain.evict_closed() == 1
    for s in (plain, again):
        s.close()


def test_a_journal_that_is_mostly_live_is_not_rewritten(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "j"
    s = OrderStore(path, fsync_interval_ms=0, closed_retention_s=3600)
    for i in range(50):
        _new(s, f"A{i}", str(100 + i))
    s.close()
    before = path.read_bytes()
    OrderStore(path, fsync_interval_ms=0, closed_retention_s=3600, compact_min_records=1).close()
    assert path.read_bytes() == before


def test_replay_skips_records_of_an_order_it_does_not_hold(tmp_path: Path,
                                                           clock: Clock) -> None:
    path = tmp_path / "j"
    s = OrderStore(path, fsync_interval_ms=0)
    _new(s, "A1", "100")
    s.close()
    with path.open("a") as f:
        f.write("E\tFIXGW->OMS\tNOPE\tE7\t2\t1\t1\tO1\t\t\t\t\t1790000000000\t8=FIX.4.4\n")
        f.write("S\tFIXGW->OMS\tNOPE\trest\n")
    r = OrderStore(path, fsync_interval_ms=0)
    assert list(r.orders) == [(S, "A1")]
    assert r.last_forward is not None and r.last_forward.exec_id == "E7"
    r.close()


def test_eviction_holds_the_lock_one_batch_at_a_time(tmp_path: Path, clock: Clock) -> None:
    s = OrderStore(tmp_path / "j", fsync_interval_ms=0, closed_retention_s=60)
    keys: list[OrderKey] = []
    for i in range(1000):
        _new(s, f"A{i}", str(100 + i))
        _report(s, str(100 + i), f"E{i}", "4", "4", forward=False)
        keys.append((S, f"A{i}"))
    acquired = 0
    real = s.lock

    class CountingLock:
        def __enter__(self) -> None:
            nonlocal acquired
            acquired += 1
            real.acquire()

        def __exit__(self, *exc: object) -> None:
            real.release()

    s.lock = CountingLock()  # type: ignore[assignment]
    clock.now = T0 + 61
    assert s.evict_closed(batch=100) == 1000
    assert acquired == 10
    assert not s.orders and not s._venue_refs and not s._seen_exec
    s.lock = real
    s.close()


def test_retention_config(tmp_path: Path) -> None:
    assert load_config(None).gateway.closed_order_retention_s == 86_400
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\nclosed_order_retention_s = 5\n")
    with pytest.raises(ConfigError, match="closed_order_retention_s"):
        load_config(bad)
    ok = tmp_path / "ok.toml"
    ok.write_text("[gateway]\nclosed_order_retention_s = 0\n")
    assert load_config(ok).gateway.closed_order_retention_s == 0


def test_periodic_job_survives_an_exception() -> None:
    from gateway.server.periodic import Periodic

    calls: list[int] = []

    def job() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    p = Periodic("test-job", 0.01, job)
    p.start()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    p.stop()
    assert len(calls) >= 3 and not p.running


class _Sent:
    """Stands in for a QuickFIX Session: what the router sends on it, as field dicts."""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []

    def send(self, msg: fix.Message) -> bool:
        self.messages.append(split_fields(msg.toString()))
        return True


def _msg(body: str) -> tuple[fix.Message, dict[str, str]]:
    text = f"8=FIX.4.4\x019=0\x01{body}10=000\x01"
    msg = fix.Message()
    msg.setString(text, False)
    return msg, split_fields(msg.toString())


def test_the_router_answers_for_a_forgotten_order_as_an_unknown_one(
        tmp_path: Path, clock: Clock) -> None:
    store = OrderStore(tmp_path / "j", fsync_interval_ms=0, closed_retention_s=60)
    router = Router(store, OrderValidator(known_symbol=lambda s: True))
    sid = fix.SessionID("FIX.4.4", "FIXGW", "OMS")
    router.register_oms(sid, ())
    oms, venue = _Sent(), _Sent()
    for ctx in router._oms_by_key.values():
        ctx.session = oms  # type: ignore[assignment]
    router.venue.session = venue  # type: ignore[assignment]
    router.venue.logged_on = True

    def oms_says(body: str) -> None:
        msg, f = _msg(body)
        router.on_oms_message(msg, sid, f)

    def new_order() -> str:
        oms_says("35=D\x0111=C1\x0155=BTC/USD\x0154=1\x0138=1\x0140=2\x0144=45000\x0159=1\x01"
                 "60=20261126-01:00:00\x01")
        return venue.messages[-1]["11"]

    def venue_report(vcl: str, exec_id: str, exec_type: str, status: str) -> None:
        router.on_venue_message(*_msg(
            f"35=8\x016=0\x0111={vcl}\x0114=0\x0117={exec_id}\x0137=O1\x0138=1\x01"
            f"39={status}\x0154=1\x0155=BTC/USD\x01150={exec_type}\x01151=0\x01"))

    vcl = new_order()
    venue_report(vcl, "E1", "0", "0")
    venue_report(vcl, "E2", "4", "4")
    assert [m["150"] for m in oms.messages] == ["0", "4"]
    clock.now = T0 + 61
    assert store.evict_closed() == 1

    # The venue repeats a report of it: unknown now, not forwarded.
    venue_report(vcl, "E2", "4", "4")
    assert len(oms.messages) == 2
    # A status request and a cancel are answered as for an unknown order, saying why.
    oms_says("35=H\x0111=C1\x0155=BTC/USD\x0154=1\x01")
    status = oms.messages[-1]
    assert (status["35"], status["39"], status["103"]) == ("8", "8", "5")  # unknown order
    assert "closed more than 60 s ago and was forgotten" in status["58"]
    oms_says("35=F\x0111=X1\x0141=C1\x0155=BTC/USD\x0154=1\x0160=20261126-01:00:00\x01")
    reject = oms.messages[-1]
    assert reject["35"] == "9" and "was forgotten" in reject["58"]
    # Its ClOrdID may be used again: a new order, sent to the venue.
    sent_before = len(venue.messages)
    assert new_order() != vcl and len(venue.messages) == sent_before + 1
    store.close()


def _semantic(s: OrderStore) -> dict[str, object]:
    """The store as the order path sees it: every order's figures and ids, and every index.
    Replay order, the eviction queues and the time an order closed may differ after a
    snapshot taken while the order path kept writing (see the store's docstring)."""
    orders = {k: (o.status, o.cum_qty, o.avg_px, o.qty, o.price, o.order_id, o.oms_cl_ord_id,
                  o.venue_cl_ord_id, tuple(o.oms_history), o.transport, bool(o.closed_at),
                  frozenset(o.exec_ids.split("\t")) - {""}, frozenset(o.venue_ids))
              for k, o in s.orders.items()}
    return {"orders": orders, "open": set(s._open), "oms_index": dict(s._oms_index),
            "used": set(s._used_cl_ord_ids), "refs": dict(s._venue_refs),
            "seen": set(s._seen_exec), "rejected": {k for _, k in s._rejected_queue},
            "transport": s.last_transport, "last_forward": s._last_forward()}


def test_maintain_compacts_a_running_journal_and_a_restart_rebuilds_the_store(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "orders.journal"
    s = OrderStore(path, fsync_interval_ms=0, closed_retention_s=600, compact_min_records=300)
    for i in range(200):
        _new(s, f"OLD{i}", str(1000 + i))
        _report(s, str(1000 + i), f"X{i}", "F", "2", cum="1")
    _new(s, "LIVE1", "5000")
    _report(s, "5000", "L1", "0", "0")
    s.mark_used(S, "BAD1")
    assert s.maintain() == "0 orders evicted"  # nothing past the retention: nothing to compact
    assert replay_files(path) == [path]
    clock.now = T0 + 601
    s.mark_used(S, "BAD2")
    assert s.maintain() == "200 orders evicted, journal compacted to 8 records"
    assert replay_files(path) == [tmp_path / "orders.journal.snap.1", path]
    assert s.records() == 8
    # The order path goes on writing into the fresh journal.
    _report(s, "5000", "L2", "F", "1", cum="0.5")
    _new(s, "NEW1", "6000")
    assert s.records() == 10
    live = _semantic(s)
    s.close()
    again = OrderStore(path, fsync_interval_ms=0, closed_retention_s=600,
                       compact_min_records=300)
    assert _semantic(again) == live
    assert again.find(S, "OLD1") is None and not again.is_used(S, "BAD1")
    assert again.is_used(S, "BAD2") and again.records() == 10
    again.close()


def test_a_crash_at_any_step_of_a_compaction_leaves_a_journal_that_replays_whole(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "orders.journal"
    s = OrderStore(path, fsync_interval_ms=0, closed_retention_s=600, compact_min_records=10**9)
    for i in range(20):
        _new(s, f"A{i}", str(1000 + i))
        _report(s, str(1000 + i), f"X{i}", "0", "0")
    live = _semantic(s)
    # Sealed, no snapshot yet (died while writing it: a half-written .tmp is left over).
    s._journal.seal()
    (tmp_path / "orders.journal.snap.1.tmp").write_text("V\t1\nN\tgarbage")
    s.close()
    r = OrderStore(path, fsync_interval_ms=0, closed_retention_s=600, compact_min_records=10**9)
    assert _semantic(r) == live
    # Committed, the old segment not deleted yet: the snapshot wins, the segment is ignored.
    r.compact()
    assert (tmp_path / "orders.journal.seg.1").exists() is False
    shutil.copy(tmp_path / "orders.journal.snap.2", tmp_path / "orders.journal.seg.2")
    r.close()
    again = OrderStore(path, fsync_interval_ms=0, closed_retention_s=600,
                       compact_min_records=10**9)
    assert _semantic(again) == live
    again.close()


def test_compaction_while_the_order_path_writes_loses_nothing(tmp_path: Path) -> None:
    """Snapshots taken in small batches while another thread adds orders, applies reports
    (each order new, some partly filled, filled or canceled, one replaced) and rejects
    ClOrdIDs: the restarted store has every order and index the live one has."""
    path = tmp_path / "orders.journal"
    s = OrderStore(path, fsync_interval_ms=0, closed_retention_s=3600,
                   compact_min_records=10**9)
    done = threading.Event()

    def order_path() -> None:
        for i in range(1500):
            venue = str(10_000 + 10 * i)
            _new(s, f"C{i}", venue)
            _report(s, venue, f"E{i}a", "0", "0")
            if i % 3 == 0:
                _report(s, venue, f"E{i}b", "F", "1", cum="0.5")
            if i % 3 == 1:
                _report(s, venue, f"E{i}b", "4", "4", forward=False)
            if i % 50 == 7:
                s.commit(_replace(s, f"C{i}", venue, str(10_000 + 10 * i + 1), f"C{i}r",
                                  f"E{i}r", "2", "44000.0"))
            if i % 100 == 0:
                s.mark_used(S, f"BAD{i}")
            if i % 10 == 0:
                # Journal appends keep the GIL: let the compactions interleave with the orders.
                time.sleep(0)
        done.set()

    writer = threading.Thread(target=order_path)
    writer.start()
    compactions = 0
    while not done.is_set():
        s.compact(batch=25)
        compactions += 1
    writer.join()
    assert compactions >= 2
    live = _semantic(s)
    s.close()
    again = OrderStore(path, fsync_interval_ms=0, closed_retention_s=3600,
                       compact_min_records=10**9)
    assert len(again.orders) == 1500
    assert _semantic(again) == live
    again.close()


def test_a_snapshot_waits_for_a_report_applied_but_not_yet_journaled(
        tmp_path: Path, clock: Clock) -> None:
    s = OrderStore(tmp_path / "j", fsync_interval_ms=0, compact_min_records=10**9)
    _new(s, "A1", "100")
    applied, events = threading.Event(), []

    def venue_thread() -> None:
        t = s.resolve_report("100", None, "E1")
        assert t is not None
        with s.report_lock:
            _legal, rec = s.apply_report(t, venue_cl_ord_id="100", exec_id="E1",
                                         exec_type="F", ord_status="2", cum_qty="1",
                                         avg_px="45000", order_id="O1", qty=None, price=None)
            applied.set()
            time.sleep(0.2)  # what a crash here would leave: applied, not journaled
            events.append("journaled")
            s.commit(rec)

    v = threading.Thread(target=venue_thread)
    v.start()
    assert applied.wait(5)
    lines = s.snapshot()
    events.append("snapshot")
    v.join()
    assert events == ["journaled", "snapshot"]
    assert any(line.startswith("X\tFIXGW->OMS\tA1\tE1") for line in lines)
    s.close()
