"""Orders the REST/WS fallback placed are canceled and replaced through it after failback, over
real processes on loopback.

Kraken's cancel scope (kraken-api.md): "a single OrderCancelRequest only affects orders placed
on the same FIX session. Use OrderMassCancelRequest or REST for others." The simulator keeps it
(tests/integration/test_sim_cancel_scope.py), so once the order flow is back on FIX, a cancel
or cancel/replace the gateway sent over FIX for an order placed over REST or the private
WebSocket during the outage would be refused as an unknown order: the OMS could no longer
cancel or replace what it placed then. Here each of those requests (the OMS's cancel and
replace, the operator's cancel, the kill switch's sweep) must reach the venue over REST and be
answered as over FIX, while an order placed over FIX is still canceled over FIX."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.fix import messages as m
from gateway.routing.router import CRASH_ENV
from gateway.venue_sim.engine import OrdStatus
from tests.conftest import Oms, new_id, order_fields
from tests.integration.test_failover import Recorder
from tests.integration.test_failover_amend import World, _place, world
from tests.integration.test_failover_orders import fallback_toml, fix_amend, venue_orders
from tests.procs import GatewayProcess, VenueStack

__all__ = ["world"]  # the fixture, shared with test_failover_amend


def _force(gw: GatewayProcess, transport: str) -> None:
    r = gw.fixgwctl("transport", "force", transport, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr


@dataclass
class Placed:
    """A gateway failed back to FIX after an outage during which `ws` was placed over the
    private WebSocket and `rest` over REST; `fix` was placed over FIX before it."""

    gw: GatewayProcess
    oms: Oms
    maker: Oms
    rec: Recorder
    fix: str
    ws: str
    rest: str
    txids: dict[str, str]  # OMS ClOrdID -> the venue's OrderID
    back: int              # the gateway's log position at the failback


def _outage_and_failback(v: VenueStack) -> Placed:
    sim = v.sim
    gw = v.gateway(venue_toml=fallback_toml(sim, ws_url=f"ws://127.0.0.1:{sim.spot_ws_port}/v2"))
    oms, maker = v.oms(), v.maker()
    rec = Recorder(oms)
    f0 = oms.buy("0.01", "20000.0")
    txids = {f0: rec.report(f0, "0").fields[37]}
    # The flow is pinned to the fallback once it has failed over, so the orders below go over
    # WS and REST whenever FIX returns; `auto` then lets the gateway reconcile and fail back as
    # after any outage.
    mark = v.drop_fix(3)
    gw.err.wait_for(r"order flow moved from FIX to REST", 15, start=mark)
    _force(gw, "ws")
    gw.err.wait_for(r"subscribing to WS executions", 5, start=mark)
    time.sleep(1.0)  # the private socket is up (connect + token + subscribe)
    w = oms.buy("0.02", "30000.0")
    txids[w] = rec.report(w, "0").fields[37]
    gw.err.wait_for(rf"order {w} placed over WS", 1, start=mark)
    _force(gw, "rest")
    r = oms.buy("0.02", "30200.0")
    txids[r] = rec.report(r, "0").fields[37]
    gw.err.wait_for(rf"order {r} placed over REST", 1, start=mark)
    _force(gw, "auto")
    gw.err.wait_for(r"order flow moved from REST to FIX", 30, start=mark)
    # The poller closes the private WebSocket on its next tick; until then a request could
    # still go over it (as while failed over). From here on they go over REST.
    gw.err.wait_for(r"WS executions closed \(order flow back on FIX\)", 5, start=mark)
    return Placed(gw, oms, maker, rec, f0, w, r, txids, len(gw.err.lines))


def _journaled_request_lines(tmp_path: Path) -> list[list[str]]:
    """The cancel/replace requests in the gateway's journal, in order: the fields of each Q
    line (Q, venue ClOrdID, OMS session, the order's first OMS ClOrdID, the request's OMS
    ClOrdID, ...; the last is the transport, for one sent over REST/WS). A mass cancel has
    one per order, all under its ClOrdID."""
    journal = (tmp_path / "gw" / "var" / "orders.journal").read_text().splitlines()
    return [ln.split("\t") for ln in journal if ln.startswith("Q\t")]


def _journaled_requests(tmp_path: Path) -> dict[str, list[str]]:
    """The cancel/replace requests in the gateway's journal, by the request's OMS ClOrdID."""
    return {q[4]: q for q in _journaled_request_lines(tmp_path)}


def _assert_fix_order_answered_over_fix(p: Placed, orig: str, fields: dict[int, str]) -> None:
    """The FIX order's Canceled carries the venue's own ExecID, never the fallback's ("R...").
    A fallback order's may carry either: the REST answer, or the venue's FIX report of that
    REST cancel under the order's own ClOrdID, whichever comes first (the journal's transport
    field, checked by each test, says which way the cancel went)."""
    if orig == p.fix:
        assert not fields[17].startswith("R"), fields


def _venue_after(v: VenueStack, p: Placed) -> dict[str, Any]:
    """The venue's orders by OMS ClOrdID, with the gateway stopped (see `venue_orders`)."""
    p.gw.stop()
    v.gw = None
    venue = venue_orders(v.sim, v.creds, list(p.txids.values()))
    return {cl: venue[txid] for cl, txid in p.txids.items()}


def test_oms_cancel_after_failback_goes_over_rest(tmp_path: Path) -> None:
    """(a) The OMS cancels a WS order and a REST order after failback: each Canceled under its
    cancel (not a 35=9 "unknown order" from the FIX session); the FIX order over FIX."""
    with VenueStack(tmp_path, clients=("FIXGW", "MAKER")) as v:
        p = _outage_and_failback(v)
        xs = {p.ws: new_id("X"), p.rest: new_id("X"), p.fix: new_id("X")}
        for orig, x in xs.items():
            p.oms.send("F", [(11, x), (41, orig), (55, "BTC/USD"), (54, "1"), (38, "0.02"),
                             (60, "20260101-00:00:00")])
        for orig, x in xs.items():
            cx = p.rec.report(x, "4")
            assert cx.fields[41] == orig and cx.fields[39] == "4", cx.fields
            _assert_fix_order_answered_over_fix(p, orig, cx.fields)
        p.rec.drain(1.5)
        assert [x.fields for x in p.rec.all if x.msg_type == "9"] == []
        assert all(p.rec.exec_types(cl) == ["0", "4"] for cl in xs), p.rec.all
        requests = _journaled_requests(tmp_path)
        assert [requests[xs[cl]][-1] for cl in (p.ws, p.rest)] == ["rest", "rest"]
        assert requests[xs[p.fix]][-1] != "rest"  # a FIX request: no transport field
        venue = _venue_after(v, p)
        assert {cl: o.status for cl, o in venue.items()} == dict.fromkeys(xs, "canceled")


def test_oms_replace_after_failback_goes_over_rest(tmp_path: Path) -> None:
    """(b) The OMS replaces a REST order and a WS order after failback: Replaced under the
    replace with the new figures (Kraken AmendOrder, in place), and a fill at the new price
    then reaches the OMS under the replace's ClOrdID."""
    with VenueStack(tmp_path, clients=("FIXGW", "MAKER")) as v:
        p = _outage_and_failback(v)
        rb, wb = new_id("R"), new_id("R")
        fix_amend(p.oms, rb, p.rest, "0.03", "30400.0")
        fix_amend(p.oms, wb, p.ws, "0.01", "30050.0")
        for cl, orig, qty, px in ((rb, p.rest, "0.03", 30400), (wb, p.ws, "0.01", 30050)):
            rp = p.rec.report(cl, "5")
            assert rp.fields[41] == orig and rp.fields[37] == p.txids[orig], rp.fields
            assert rp.fields[39] == "0" and rp.fields[17].startswith("R"), rp.fields
            assert Decimal(rp.fields[38]) == Decimal(qty) and Decimal(rp.fields[44]) == px
        p.maker.send("D", order_fields(new_id("M"), "2", "0.01", "30400.0"))
        fill = p.rec.report(rb, "F")
        assert fill.fields[39] == "1" and Decimal(fill.fields[14]) == Decimal("0.01")
        p.rec.drain(1.5)
        assert [x.fields for x in p.rec.all if x.msg_type == "9"] == []
        assert p.rec.exec_types(rb) == ["5", "F"] and p.rec.exec_types(wb) == ["5"]
        ers = [x for x in p.rec.all if x.msg_type == "8"]
        assert len({x.fields[17] for x in ers}) == len(ers)  # no ExecID twice
        requests = _journaled_requests(tmp_path)
        assert [requests[cl][-1] for cl in (rb, wb)] == ["rest", "rest"]
        venue = _venue_after(v, p)
        assert (venue[p.rest].status, venue[p.rest].volume, venue[p.rest].vol_exec) == (
            "open", Decimal("0.03"), Decimal("0.01"))
        assert (venue[p.ws].volume, venue[p.ws].price) == (Decimal("0.01"), Decimal("30050"))


def test_operator_cancel_and_kill_switch_after_failback_reach_fallback_orders(
        tmp_path: Path) -> None:
    """(c) The operator's cancel of a REST order, then the kill switch's sweep of the WS order
    and the FIX one, after failback: each order canceled at the venue, its OMS told (Canceled
    under the OPS-/KILL- request), the FIX order's cancel over FIX."""
    with VenueStack(tmp_path, clients=("FIXGW", "MAKER")) as v:
        p = _outage_and_failback(v)
        ops = p.gw.fixgwctl("cancel", p.rest, "--yes")
        assert ops.returncode == 0, ops.stdout + ops.stderr
        oc = p.rec.wait(lambda x: x.msg_type == "8" and x.fields.get(41) == p.rest
                        and x.fields.get(150) == "4")
        assert oc.fields[11].startswith("OPS-")
        kill = p.gw.fixgwctl("kill-switch", "on", "--yes")
        assert kill.returncode == 0 and "cancel sent for 2 open order(s)" in kill.stdout, (
            kill.stdout + kill.stderr)
        for orig in (p.ws, p.fix):
            kc = p.rec.wait(lambda x, o=orig: x.msg_type == "8" and x.fields.get(41) == o
                            and x.fields.get(150) == "4")
            assert kc.fields[11].startswith("KILL-")
            _assert_fix_order_answered_over_fix(p, orig, kc.fields)
        p.rec.drain(1.5)
        assert all(p.rec.exec_types(cl) == ["0", "4"] for cl in (p.fix, p.ws, p.rest))
        log = "\n".join(p.gw.err.lines[p.back:])
        assert "venue refused" not in log, log
        requests = _journaled_requests(tmp_path)
        kinds = {q[3]: q[-1] for cl, q in requests.items() if cl.startswith(("OPS-", "KILL-"))}
        assert kinds[p.rest] == "rest" and kinds[p.ws] == "rest" and kinds[p.fix] != "rest"
        venue = _venue_after(v, p)
        assert {cl: o.status for cl, o in venue.items()} == dict.fromkeys(p.txids, "canceled")


def test_oms_mass_cancel_after_failback_cancels_each_order_over_its_own_path(
        tmp_path: Path) -> None:
    """(d) The OMS's OrderMassCancelRequest (all orders) after failback, with open orders
    placed over FIX, WS and REST: first a 35=r that accepts it for all three, then a Canceled
    under the request for each; the WS and REST orders' cancels over REST (a FIX cancel would
    be refused as an unknown order), the FIX order's over FIX; one cancel per order, none
    refused, and none left open at the venue."""
    with VenueStack(tmp_path, clients=("FIXGW", "MAKER")) as v:
        p = _outage_and_failback(v)
        mq = new_id("Q")
        p.oms.send("q", [(11, mq), (530, "7"), (60, "20260101-00:00:00")])
        mr = p.rec.wait(lambda x: x.msg_type == "r" and x.fields.get(11) == mq)
        assert (mr.fields[531], mr.fields[533]) == ("7", "3"), mr.fields
        for orig in (p.fix, p.ws, p.rest):
            cx = p.rec.wait(lambda x, o=orig: x.msg_type == "8" and x.fields.get(11) == mq
                            and x.fields.get(41) == o and x.fields.get(150) == "4")
            assert cx.fields[39] == "4" and cx.fields[37] == p.txids[orig], cx.fields
            _assert_fix_order_answered_over_fix(p, orig, cx.fields)
        p.rec.drain(1.5)
        answers = [x for x in p.rec.all if x.fields.get(11) == mq]
        assert answers[0].msg_type == "r" and len(answers) == 4, [x.fields for x in answers]
        assert [x.fields for x in p.rec.all if x.msg_type == "9"] == []
        assert all(p.rec.exec_types(cl) == ["0", "4"] for cl in p.txids), p.rec.all
        log = "\n".join(p.gw.err.lines[p.back:])
        assert "venue refused" not in log and "not canceled" not in log, log
        assert "for unknown ClOrdID" not in log, log  # the venue's FIX echo of a REST cancel
        sent = [(q[3], q[-1]) for q in _journaled_request_lines(tmp_path) if q[4] == mq]
        assert sorted(cl for cl, _ in sent) == sorted(p.txids), sent  # one cancel per order
        paths = dict(sent)
        assert (paths[p.ws], paths[p.rest]) == ("rest", "rest"), sent
        assert paths[p.fix] not in ("rest", "ws"), sent  # a FIX request: no transport field
        venue = _venue_after(v, p)
        assert {cl: o.status for cl, o in venue.items()} == dict.fromkeys(p.txids, "canceled")


def test_cancel_after_failback_journaled_at_a_kill9_is_sent_after_the_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The OMS's cancel of a REST order after failback is journaled as a REST request before
    it leaves: killed right then (a test-only crash point between the journal and the send),
    the restarted gateway, back on FIX, takes it up from the journal, sends it over REST and
    the OMS gets its Canceled once."""
    monkeypatch.setenv(CRASH_ENV, "request_journaled:cancel")
    with VenueStack(tmp_path, clients=("FIXGW", "MAKER")) as v:
        p = _outage_and_failback(v)
        x = new_id("X")
        p.oms.send("F", [(11, x), (41, p.rest), (55, "BTC/USD"), (54, "1"), (38, "0.02"),
                         (60, "20260101-00:00:00")])
        assert p.gw.proc is not None
        assert p.gw.proc.wait(timeout=15) == 137, p.gw.err.text()[-3000:]
        p.gw._env.pop(CRASH_ENV)
        assert _journaled_requests(tmp_path)[x][-1] == "rest"

        p.gw.start(wait_venue=False)
        p.gw.err.wait_for(r"cancel \S+ of order \S+ \(rest\) journaled before the restart has "
                          r"no answer: sent again over REST", 15)
        done = p.rec.report(x, "4", 20)
        assert (done.fields[41], done.fields[39]) == (p.rest, "4")
        p.rec.drain(2.0)
        answers = [r for r in p.rec.all if r.msg_type in ("8", "9") and r.fields.get(11) == x]
        assert [(r.msg_type, r.fields.get(150)) for r in answers] == [("8", "4")]
        venue = _venue_after(v, p)
        assert venue[p.rest].status == "canceled" and venue[p.ws].status == "open"


def test_fix_canceled_before_the_poll_answers_the_rest_cancel(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """After failback a cancel of an order placed over REST goes over REST, and the venue's
    FIX session may report the cancel under the order's own ClOrdID before the poller sees
    it: that report answers the OMS's cancel (Canceled under its ClOrdID), and the poll after
    it adds nothing (no 35=9 "too late" for a cancel that worked). The router and fallback in
    process against the simulator's REST face (`world`); the FIX report is fed as the venue
    session would deliver it."""
    w = world
    txid = _place(w, "A1")  # over REST: the world starts failed over
    assert w.fallback.policy is not None
    w.fallback.policy.set_force("fix")  # failback: the flow is on FIX, its session up
    monkeypatch.setattr(w.router.venue, "is_up", lambda: True)
    assert not w.fallback.active()
    w.oms("F", [(11, "X1"), (41, "A1"), (55, "BTC/USD"), (54, "1"), (38, "0.02"),
                (60, "20260101-00:00:00")])
    snap = w.engine.order_status("FIXGW", order_id=txid)
    assert snap is not None and snap.status is OrdStatus.CANCELED  # REST carried it
    assert w.reports("X1") == []  # the poll (60 s away) or the FIX report answers it
    (order,) = w.store.open_orders()  # open until its cancel is answered
    f = {"35": "8", "11": order.venue_cl_ord_id, "37": txid, "17": "EFIXECHO1", "150": "4",
         "39": "4", "55": "BTC/USD", "54": "1", "38": "0.02", "40": "2", "44": "30000",
         "59": "1", "151": "0", "14": "0", "6": "0", "60": "20260101-00:00:01.000"}
    msg = m.new_message("8")
    for tag, value in f.items():
        if tag != "35":
            msg.setField(int(tag), value)
    w.router.on_venue_message(msg, f)
    (cx,) = w.reports("X1")
    assert (cx[35], cx[150], cx[39], cx[41]) == ("8", "4", "4", "A1"), cx
    w.fallback.poll()
    assert [r for r in w.sent if r[35] == "9"] == []
    assert [r[11] for r in w.sent if r.get(150) == "4"] == ["X1"]
