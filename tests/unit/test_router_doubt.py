"""The router's handling of orders in doubt, in process (the venue session is a recorder):
`reconcile` never asks the venue about an order that is on its way out, and a venue status
answer older than what the record already has never moves the record back."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import quickfix as fix

from gateway.fix import messages as m
from gateway.orders.model import Order
from gateway.orders.store import OrderStore
from gateway.risk.validation import OrderValidator
from gateway.routing.router import OmsContext, Router
from gateway.routing.sinks import NullSink
from tests.conftest import tag_fields

SID = fix.SessionID("FIX.4.4", "FIXGW", "OMS")
KEY = "FIXGW->OMS"


class _VenueRecorder:
    """Stands in for the venue's fix.Session: what the router sends to the venue."""

    def __init__(self) -> None:
        self.sent: list[dict[int, str]] = []

    def send(self, msg: fix.Message) -> bool:
        self.sent.append(tag_fields(msg))
        return True



class _World:
    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store = OrderStore(tmp / "orders.journal", fsync_interval_ms=0)
        self.router = Router(self.store, OrderValidator(lambda s: s == "BTC/USD"))
        self.router.register_oms(SID, ())
        self.venue = _VenueRecorder()
        self.router.venue.session = self.venue  # type: ignore[assignment]
        self.router.venue.logged_on = True
        self.oms_got: list[dict[int, str]] = []
        monkeypatch.setattr(OmsContext, "send",
                            lambda ctx, msg: self.oms_got.append(tag_fields(msg)))

    def report(self, fields: dict[str, str], transport: str) -> None:
        msg = m.new_message("8")
        for tag, value in fields.items():
            msg.setField(int(tag), value)
        f = dict(fields, **{"35": "8"})
        if transport == "fix":
            self.router.on_venue_message(msg, f)
        else:
            self.router.on_venue_report(fields, transport)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_World]:
    w = _World(tmp_path, monkeypatch)
    try:
        yield w
    finally:
        w.store.close()


def hold_order_building(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event,
                                                                  threading.Event]:
    """Hold an OMS thread in the middle of sending an order (journaled, in the router's
    `_sending`, its message being built): (set once it is there, set it to let it go on)."""
    building = threading.Event()
    release = threading.Event()
    build = Router._order_message

    def slow_build(*args: object, **kwargs: object) -> fix.Message:
        building.set()
        release.wait(5)
        return build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Router, "_order_message", staticmethod(slow_build))
    return building, release


def test_reconcile_does_not_ask_about_an_order_on_its_way_out(
        world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    """An order journaled but not yet sent when the reconciliation after a logon runs is not
    in doubt: asking about it could overtake it, get "unknown order", and send it twice."""
    w = world
    building, release = hold_order_building(monkeypatch)
    msg = m.new_message("D")
    f = {"35": "D", "11": "R1", "55": "BTC/USD", "54": "1", "38": "0.01", "40": "2",
         "44": "30000", "59": "1", "60": "20260101-00:00:00"}
    for tag, value in f.items():
        msg.setField(int(tag), value)
    oms = threading.Thread(target=w.router.on_oms_message, args=(msg, SID, f))
    oms.start()
    try:
        assert building.wait(5)
        assert w.store.find(KEY, "R1") is not None  # journaled, not sent yet
        assert w.router.reconcile() == 0
        assert [s for s in w.venue.sent if s[35] == "H"] == []
    finally:
        release.set()
        oms.join(5)
    assert [s[35] for s in w.venue.sent] == ["D"]


def _new_order(w: _World, cl: str, side: str = "1") -> None:
    """A limit NewOrderSingle from the OMS, on its session's thread (this one)."""
    f = {"35": "D", "11": cl, "55": "BTC/USD", "54": side, "38": "0.01", "40": "2",
         "44": "30000", "59": "1", "60": "20260101-00:00:00"}
    msg = m.new_message("D")
    for tag, value in f.items():
        msg.setField(int(tag), value)
    w.router.on_oms_message(msg, SID, f)


class _Disk:
    """The journal's disk: while `full`, every report record it is given is refused."""

    def __init__(self, w: _World, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = True
        self._commit = w.store.commit_forward
        monkeypatch.setattr(w.store, "commit_forward", self._commit_forward)

    def _commit_forward(self, line: str, message: str) -> None:
        if self.full:
            raise OSError(28, "No space left on device")
        self._commit(line, message)


def _rest_order(w: _World) -> Order:
    order = Order(oms_session=KEY, oms_cl_ord_id="S1", venue_cl_ord_id="200", symbol="BTC/USD",
                  side="1", ord_type="2", qty=Decimal("0.02"), price=Decimal("30000"), tif="1",
                  transport="ws", oms_history=["S1"])
    w.store.add_order(order)
    return order


def _er(exec_id: str, exec_type: str, status: str, cum: str, last: str | None = None
        ) -> dict[str, str]:
    f = {"11": "200", "37": "O-200", "17": exec_id, "150": exec_type, "39": status,
         "55": "BTC/USD", "54": "1", "38": "0.02", "14": cum, "6": "30000" if cum != "0" else "0",
         "151": str(Decimal("0.02") - Decimal(cum))}
    if last is not None:
        f.update({"32": last, "31": "30000"})
    return f


def test_status_answer_behind_the_record_does_not_move_it_back(world: _World) -> None:
    """A fill reached the gateway over the WebSocket first; the venue's FIX status answer,
    written before that fill, arrives after it. Applied, it would set CumQty back to 0 and
    the FIX copy of the fill would then be forwarded as a second fill. The OMS gets its
    status answer from the record instead, and one fill."""
    w = world
    order = _rest_order(w)
    w.report(_er("W-new", "0", "0", "0"), "ws")
    w.report(_er("W-fill", "F", "1", "0.01", "0.01"), "ws")
    assert order.cum_qty == Decimal("0.01")
    w.report(_er("F-status", "I", "0", "0"), "fix")  # the venue's answer, older than the fill
    assert order.cum_qty == Decimal("0.01") and order.status == "1"
    status = w.oms_got[-1]
    assert status[150] == "I" and status[14] == "0.01" and status[39] == "1"
    assert "from the gateway's record" in status[58]
    w.report(_er("F-fill", "F", "1", "0.01", "0.01"), "fix")  # the FIX copy of the same fill
    fills = [r for r in w.oms_got if r[150] == "F"]
    assert len(fills) == 1, fills
    assert sum(Decimal(r[32]) for r in fills) == Decimal("0.01")


def test_fills_in_an_unresendable_session_become_one_trade_report_at_their_average_price(
        world: _World) -> None:
    """After a new venue session began, the status answer is the only word of fills made in
    the old one. It reaches the OMS as a trade report: LastQty what was filled since the
    record, LastPx the average price of those fills (here 0.01 at 30030 after 0.01 at 30000)."""
    w = world
    order = _rest_order(w)
    order.transport = "fix"
    w.report(_er("V-new", "0", "0", "0"), "fix")
    w.report(dict(_er("V-fill", "F", "1", "0.01", "0.01"), **{"6": "30000"}), "fix")
    assert w.router.reconcile(new_venue_session=True) == 1
    answer = dict(_er("V-status", "I", "2", "0.02"), **{"6": "30015"})
    w.report(answer, "fix")
    trade = w.oms_got[-1]
    assert trade[150] == "F" and trade[39] == "2" and trade[17] == "V-status-F"
    assert Decimal(trade[32]) == Decimal("0.01") and Decimal(trade[31]) == Decimal("30030")
    assert order.cum_qty == Decimal("0.02") and order.status == "2"


def test_an_order_the_journal_cannot_take_is_rejected_not_dropped(
        world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal refuses the order (a full disk): the OMS gets a reject saying so, nothing
    goes to the venue, and the ClOrdID is not taken (the OMS may send it again)."""
    w = world
    add = w.store.add_order

    def full(order: Order) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(w.store, "add_order", full)
    _new_order(w, "J1")
    (rej,) = w.oms_got
    assert rej[150] == "8" and rej[11] == "J1"
    assert "could not journal it (No space left on device)" in rej[58]
    assert w.venue.sent == []
    monkeypatch.setattr(w.store, "add_order", add)
    _new_order(w, "J1")
    assert [s[35] for s in w.venue.sent] == ["D"]


def test_venue_reports_the_journal_refuses_are_parked_then_sent_in_order(
        world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal refuses a venue fill (a full disk): the fill is not lost. It waits, the
    reports after it wait behind it (the OMS must not see Filled before the partial fill),
    and once the journal takes records again they are journaled and sent in order."""
    w = world
    order = _rest_order(w)
    w.report(_er("P-new", "0", "0", "0"), "ws")
    disk = _Disk(w, monkeypatch)
    w.report(_er("P-fill1", "F", "1", "0.01", "0.01"), "ws")
    w.report(_er("P-fill2", "F", "2", "0.02", "0.01"), "ws")
    assert [r[17] for r in w.oms_got] == ["P-new"]
    assert w.router.flush_parked() == 2  # still full: nothing sent, nothing dropped
    assert [r[17] for r in w.oms_got] == ["P-new"]
    disk.full = False
    assert w.router.flush_parked() == 0
    assert [(r[17], r[39]) for r in w.oms_got] == [("P-new", "0"), ("P-fill1", "1"),
                                                  ("P-fill2", "2")]
    w.report(_er("P-fill2", "F", "2", "0.02", "0.01"), "ws")  # its venue resend: a duplicate
    assert len(w.oms_got) == 3
    w.store.close()
    again = OrderStore(w.store._journal.path, fsync_interval_ms=0)  # what a restart reads
    try:
        replayed = again.find(KEY, "S1")
        assert replayed is not None and replayed.status == "2"
        assert replayed.cum_qty == Decimal("0.02") == order.cum_qty
    finally:
        again.close()


def test_a_gateway_reject_the_journal_refuses_waits_with_the_venue_reports(
        world: _World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The venue drops while an order is sent, and the journal refuses the reject that
    closes it: the OMS gets the reject once the journal takes records again, not never."""
    w = world
    disk = _Disk(w, monkeypatch)
    monkeypatch.setattr(w.venue, "send", lambda msg: False)
    _new_order(w, "K1", side="2")
    assert w.oms_got == []
    disk.full = False
    assert w.router.flush_parked() == 0
    (rej,) = w.oms_got
    assert (rej[11], rej[150], rej[54]) == ("K1", "8", "2")
    assert "disconnected while sending" in rej[58]


def test_a_venue_field_the_oms_dictionary_lacks_is_not_passed_on(
        world: _World, caplog: pytest.LogCaptureFixture) -> None:
    """The venue sessions take fields the dictionary does not know (Kraken may add one any
    day); an OMS engine would Reject the whole report for it, so the gateway drops it."""
    w = world
    _rest_order(w).transport = "fix"
    with caplog.at_level(logging.WARNING, "fixgw.routing"):
        w.report(dict(_er("U-new", "0", "0", "0"), **{"5999": "kraken-extra", "553": "k"}),
                 "fix")
        w.report(dict(_er("U-fill", "F", "1", "0.01", "0.01"), **{"5999": "again"}), "fix")
    new, fill = w.oms_got
    assert (new[150], fill[150]) == ("0", "F")
    assert 5999 not in new and 553 not in new and 5999 not in fill
    assert new[11] == fill[11] == "S1" and new[37] == "O-200"
    assert (new[55], new[38], fill[32]) == ("BTC/USD", "0.02", "0.01")  # in components
    assert caplog.text.count("venue field 5999=") == 1  # once per tag, not per report


def test_a_mass_cancel_that_could_not_send_every_cancel_says_which(world: _World) -> None:
    """The venue session drops in the middle of an OMS mass cancel: the 35=r counted both
    orders, one cancel went out. The other order is logged and published as a cancel
    reject (ops see which order is still open; the OMS sees it has no 150=4)."""
    w = world
    rejected: list[tuple[str, str, str]] = []

    class _Sink(NullSink):
        def cancel_rejected(self, oms_session: str, cl_ord_id: str, orig_cl_ord_id: str,
                            text: str, **kw: object) -> None:
            rejected.append((cl_ord_id, orig_cl_ord_id, text))

    w.router.sink = _Sink()
    for cl, vid in (("M1", "301"), ("M2", "302")):
        w.store.add_order(Order(oms_session=KEY, oms_cl_ord_id=cl, venue_cl_ord_id=vid,
                                symbol="BTC/USD", side="1", ord_type="2", qty=Decimal("0.01"),
                                price=Decimal("30000"), tif="1", oms_history=[cl]))
    sent = w.venue.sent

    class _Dropping(_VenueRecorder):
        def send(self, msg: fix.Message) -> bool:
            if sent:
                w.router.venue.logged_on = False  # the session drops after the first cancel
                return False
            sent.append(tag_fields(msg))
            return True

    w.router.venue.session = _Dropping()  # type: ignore[assignment]
    f = {"35": "q", "11": "MASS-1", "530": "7", "60": "20260101-00:00:00"}
    msg = m.new_message("q")
    for tag, value in f.items():
        msg.setField(int(tag), value)
    w.router.on_oms_message(msg, SID, f)
    (report,) = [r for r in w.oms_got if r[35] == "r"]
    assert report[533] == "2"
    assert [s[35] for s in sent] == ["F"]
    assert len(rejected) == 1 and rejected[0][0] == "MASS-1"
    assert rejected[0][2].startswith("not sent: ")


class _IdleFallback:
    """A REST fallback that is configured but not carrying the flow right now."""

    hold_max_s = 0

    def active(self) -> bool:
        return False

    def should_hold(self, *_args: object) -> bool:
        return False


def test_a_replace_report_resent_after_a_fill_over_rest_does_not_undo_the_fill(
        world: _World) -> None:
    """The venue applies a replace, but its Replaced (CumQty 0) is lost as FIX drops; the
    REST poller then reports a fill. FIX comes back and the venue resends the Replaced and then
    its fill report: the OMS gets its replace answered with the fill already booked, and the
    fill once."""
    w = world
    w.router.fallback = _IdleFallback()  # type: ignore[assignment]
    _new_order(w, "R1")
    vcl = next(s for s in w.venue.sent if s[35] == "D")[11]
    base = {"55": "BTC/USD", "54": "1", "40": "2", "44": "30000", "59": "1",
            "60": m.utc_timestamp(), "37": "OID1"}
    w.report({**base, "11": vcl, "17": "V1", "150": "0", "39": "0", "38": "0.01",
              "151": "0.01", "14": "0", "6": "0"}, "fix")
    g = {"35": "G", "11": "R2", "41": "R1", "55": "BTC/USD", "54": "1", "38": "0.02",
         "40": "2", "44": "30000", "59": "1", "60": "20260101-00:00:00"}
    msg = m.new_message("G")
    for tag, value in g.items():
        msg.setField(int(tag), value)
    w.router.on_oms_message(msg, SID, g)
    vid2 = next(s for s in w.venue.sent if s[35] == "G")[11]
    w.report({**base, "11": vcl, "17": "REST-1", "150": "F", "39": "1", "38": "0.02",
              "151": "0.005", "14": "0.015", "6": "30000", "32": "0.015", "31": "30000"},
             "rest")
    w.report({**base, "11": vid2, "41": vcl, "17": "V2", "150": "5", "39": "0", "38": "0.02",
              "151": "0.02", "14": "0", "6": "0", "43": "Y"}, "fix")
    w.report({**base, "11": vid2, "17": "V3", "150": "F", "39": "1", "38": "0.02",
              "151": "0.005", "14": "0.015", "6": "30000", "32": "0.015", "31": "30000",
              "43": "Y"}, "fix")
    fills = [r for r in w.oms_got if r.get(150) == "F"]
    assert len(fills) == 1, [r for r in w.oms_got]
    (replaced,) = [r for r in w.oms_got if r.get(150) == "5"]
    assert (replaced[11], replaced[41], replaced[39]) == ("R2", "R1", "1")
    assert (Decimal(replaced[14]), Decimal(replaced[151])) == (Decimal("0.015"),
                                                               Decimal("0.005"))
    order = w.store.find(KEY, "R2")
    assert order is not None and order.cum_qty == Decimal("0.015")
    assert order.qty == Decimal("0.02")


def test_after_failback_orders_placed_over_rest_are_asked_about_and_unknown_is_no_reject(
        world: _World) -> None:
    w = world
    o = Order(oms_session=KEY, oms_cl_ord_id="RST1", venue_cl_ord_id="900", symbol="BTC/USD",
              side="1", ord_type="2", qty=Decimal("0.01"), price=Decimal("30000"), tif="1",
              transport="rest", oms_history=["RST1"])
    w.store.add_order(o)
    base = {"11": "900", "37": "OREST", "55": "BTC/USD", "54": "1", "40": "2", "44": "30000",
            "59": "1", "38": "0.01", "60": m.utc_timestamp()}
    w.report({**base, "17": "R-0", "150": "0", "39": "0", "151": "0.01", "14": "0", "6": "0"},
             "rest")
    w.oms_got.clear()
    assert w.router.ask_about_fallback_orders() == 1
    (h,) = [s for s in w.venue.sent if s[35] == "H"]
    assert (h[11], h[37]) == ("900", "OREST")
    # The venue's FIX side does not find it by that ClOrdID: not a reject of a live order.
    w.report({**base, "17": "S-1", "150": "I", "39": "8", "151": "0", "14": "0", "6": "0",
              "58": "unknown order"}, "fix")
    assert w.oms_got == [] and o.is_open
    # Canceled meanwhile (a REST cancel FIX reported under a ClOrdID we never used): news.
    w.router.ask_about_fallback_orders()
    w.report({**base, "17": "S-2", "150": "I", "39": "4", "151": "0", "14": "0", "6": "0"},
             "fix")
    assert [(r[150], r[39]) for r in w.oms_got] == [("I", "4")]
    assert not o.is_open


def test_unknown_over_fix_does_not_reject_an_order_the_fallback_placed(world: _World) -> None:
    """After failback an OMS asks about an order placed over WS; Kraken's FIX session need
    not know it (its FIX scope is the session's own orders) and answers "unknown order"
    (150=I 39=8). Applied, that would reject a live order; the OMS is answered from the
    record instead and the order stays open."""
    w = world
    order = _rest_order(w)
    w.report(_er("W-new", "0", "0", "0"), "ws")
    assert order.status == "0"
    unknown = dict(_er("F-status", "I", "8", "0"), **{"58": "EOrder:Unknown order"})
    w.report(unknown, "fix")
    assert order.status == "0" and order.is_open
    status = w.oms_got[-1]
    assert status[150] == "I" and status[39] == "0"
    assert "does not know orders placed over WS" in status[58]


def test_a_mass_cancel_report_sent_at_restart_has_its_cancels_carried_out_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mass cancel's 35=r journaled (in its U) but maybe never sent when the gateway died:
    the restart sends it and, at the first reconcile, cancels what it covered (its Symbol and
    Side, from the 35=r) at the restart and is still open; not an order placed since, and not
    one that already has a cancel under the mass cancel's ClOrdID (the store could not tell,
    so the first run may have got that far)."""
    store = OrderStore(tmp_path / "orders.journal", fsync_interval_ms=0)
    for cl, vid, symbol, side in (("M1", "301", "BTC/USD", "1"), ("M2", "302", "BTC/USD", "1"),
                                  ("M3", "303", "ETH/USD", "1"), ("M4", "304", "BTC/USD", "2")):
        store.add_order(Order(oms_session=KEY, oms_cl_ord_id=cl, venue_cl_ord_id=vid,
                              symbol=symbol, side=side, ord_type="2", qty=Decimal("0.01"),
                              price=Decimal("30000"), tif="1", oms_history=[cl]))
    rep = m.mass_cancel_report("MASS-1", "1", "MASS-GW1")
    for tag, value in ((531, "1"), (533, "2"), (55, "BTC/USD"), (54, "1")):
        rep.setField(tag, value)
    store.mark_used(KEY, "MASS-1", answer=rep.toString())
    store.add_request("401", (KEY, "M1"), "MASS-1", "mass")  # M1's cancel went out
    store.close()

    w = _World(tmp_path, monkeypatch)  # the restarted gateway
    try:
        pending = w.router.unforwarded_report(tmp_path / "no-oms-store")
        assert pending is not None and pending.poss_resend  # no OMS store: cannot tell
        assert (pending.report.msg_type, pending.report.exec_id) == ("r", "MASS-GW1")
        w.router.redeliver(pending)
        (sent,) = w.oms_got
        assert (sent[35], sent[11], sent[533], sent[97]) == ("r", "MASS-1", "2", "Y")
        assert w.venue.sent == []  # the venue is asked nothing before its session is up
        w.store.add_order(Order(oms_session=KEY, oms_cl_ord_id="M5", venue_cl_ord_id="305",
                                symbol="BTC/USD", side="1", ord_type="2", qty=Decimal("0.01"),
                                price=Decimal("30000"), tif="1", oms_history=["M5"]))
        w.router.reconcile()
        cancels = [s for s in w.venue.sent if s[35] == "F"]
        assert [c[41] for c in cancels] == ["302"], cancels  # M2 only
        asked = w.store.cancel_asked(w.store.orders[(KEY, "M2")])
        assert asked == cancels[0][11]
        ref = w.store.venue_ref(asked)
        assert ref is not None and ref.oms_cl_ord_id == "MASS-1" and ref.kind == "mass"
        w.router.reconcile()  # carried out once
        assert len([s for s in w.venue.sent if s[35] == "F"]) == 1
    finally:
        w.store.close()
