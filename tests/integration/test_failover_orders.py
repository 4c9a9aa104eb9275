"""The order path while failed over to Kraken spot REST, over real processes on loopback:
cancel/replace (35=G as Kraken AmendOrder) and mass cancel (35=q, per order, scoped to the
requesting OMS), orders that arrive before failover (held, then sent once), and the OMS-side
record checked against the venue's orders one by one with no duplicate submission."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

from gateway._proto.fixgw.v1 import common_pb2, events_pb2
from gateway._proto.fixgw.v1 import orders_pb2 as O
from gateway.kraken.auth import NonceSource
from gateway.transports.kraken_spot_rest import KrakenSpotRest
from tests.conftest import Oms, new_id, order_fields
from tests.integration.test_events_e2e import _collect
from tests.integration.test_failover import Recorder
from tests.procs import Credentials, SimProcess, VenueStack


def fallback_toml(sim: SimProcess, **extra: object) -> str:
    opts = {"enabled": "true", "rest_url": f'"http://127.0.0.1:{sim.spot_rest_port}"',
            "failover_after_s": 1, "failback_after_s": 2, "poll_interval_s": 0.3}
    opts.update({k: (f'"{v}"' if isinstance(v, str) and not v.replace(".", "").isdigit()
                     else v) for k, v in extra.items()})
    body = ", ".join(f"{k} = {v}" for k, v in opts.items())
    return f"md_stale_after_s = 3600\nfallback = {{ {body} }}"


def venue_orders(sim: SimProcess, creds: Credentials, txids: list[str]) -> dict[str, object]:
    """The venue's own view of `txids` (QueryOrders with the account's key). Call it with the
    gateway stopped: both would sign with the same key, and nonces must only go up."""
    rest = KrakenSpotRest(f"http://127.0.0.1:{sim.spot_rest_port}", creds.api_key,
                          creds.api_secret, NonceSource(clock_ns=lambda: time.time_ns() + 3600
                                                        * 10**9))
    return dict(rest.query_orders(txids))


def fix_amend(oms: Oms, cl: str, orig: str, qty: str, price: str, tif: str = "1") -> None:
    oms.send("G", [(11, cl), (41, orig), (55, "BTC/USD"), (54, "1"), (38, qty), (40, "2"),
                   (44, price), (59, tif), (60, "20260101-00:00:00")])


def order_events(grpc_port: int, cls: set[str], n: int) -> list[events_pb2.Event]:
    """The order events of the OMS ClOrdIDs `cls` on the gateway's event stream, once there are
    `n` of them (or after 10 s)."""
    def mine(evs: list[events_pb2.Event]) -> list[events_pb2.Event]:
        return [e for e in evs if e.order.cl_ord_id in cls]
    got = _collect(grpc_port, events_pb2.SubscribeRequest(
        from_sequence=1, kinds=[events_pb2.EVENT_KIND_ORDER]), time.monotonic() + 10,
        stop_when=lambda evs: len(mine(evs)) >= n)
    return mine(got)


def test_replace_and_mass_cancel_over_rest(tmp_path: Path) -> None:
    with VenueStack(tmp_path, clients=("FIXGW", "MAKER")) as v:
        creds, sim = v.creds, v.sim
        gw = v.gateway(oms_comp_ids=("OMS", "OMS2"), venue_toml=fallback_toml(sim))
        oms, oms2, maker = v.oms(), v.oms("OMS2"), v.maker()
        rec, rec2 = Recorder(oms), Recorder(oms2)
        # FIX is used once before the outage, so the session is the venue's known client.
        first = oms.buy("0.01", "20000.0")
        rec.report(first, "0")

        # Steps 1 and 2 take ~3.5 s from the drop; FIX then has to be refused for the rest of
        # the 7 s and stable for failback_after_s (2 s) before the flow goes back to FIX.
        mark = v.drop_fix(7)
        gw.err.wait_for(r"order flow moved from FIX to REST", 15, start=mark)

        # 1. A replace over REST: 35=8 ExecType 5 under the replace's ClOrdID, new figures.
        a = oms.buy("0.02", "30000.0")
        txid_a = rec.report(a, "0").fields[37]
        a2 = new_id("R")
        fix_amend(oms, a2, a, "0.03", "30100.0")
        r = rec.report(a2, "5")
        assert r.fields[41] == a and r.fields[37] == txid_a and r.fields[39] == "0"
        assert Decimal(r.fields[38]) == Decimal("0.03") and Decimal(r.fields[44]) == 30100
        assert Decimal(r.fields[151]) == Decimal("0.03") and r.fields[17].startswith("R")
        # On the event stream both reports name the REST API they came from (FIX is down).
        reports = [e for e in order_events(gw.grpc_port, {a, a2}, 3)
                   if e.order.type == O.ORDER_EVENT_TYPE_EXECUTION_REPORT]
        assert [(e.order.exec_type, e.source.kind, e.source.session) for e in reports] == [
            (O.EXEC_TYPE_NEW, common_pb2.SOURCE_KIND_REST, "kraken-spot-rest"),
            (O.EXEC_TYPE_REPLACED, common_pb2.SOURCE_KIND_REST, "kraken-spot-rest")]
        # A fill after it reaches the OMS under the replace's ClOrdID.
        maker.send("D", order_fields(new_id("M"), "2", "0.01", "30100.0"))
        f = rec.report(a2, "F")
        assert f.fields[39] == "1" and Decimal(f.fields[14]) == Decimal("0.01")
        # A replace REST cannot carry (AmendOrder changes quantity and price, not the
        # TimeInForce): 35=9 that says so, and the order is untouched.
        a3 = new_id("R")
        fix_amend(oms, a3, a2, "0.05", "30100.0", tif="3")
        rej = rec.wait(lambda x: x.msg_type == "9" and x.fields.get(11) == a3)
        assert rej.fields[41] == a2 and rej.fields[434] == "2"
        assert "TimeInForce" in rej.fields[58]

        # 2. Mass cancel over REST: OMS's orders only, 35=r first, then one 150=4 per order.
        b = oms.buy("0.01", "29000.0")
        c = oms.buy("0.01", "29500.0")
        d = oms2.buy("0.01", "29000.0")
        txid_b = rec.report(b, "0").fields[37]
        txid_c = rec.report(c, "0").fields[37]
        txid_d = rec2.report(d, "0").fields[37]
        mq = new_id("Q")
        oms.send("q", [(11, mq), (530, "7"), (60, "20260101-00:00:00")])
        mr = rec.wait(lambda x: x.msg_type == "r" and x.fields.get(11) == mq)
        assert mr.fields[531] == "7" and mr.fields[533] == "4"  # the first FIX order, a2, b, c
        canceled = {rec.wait(lambda x, o=o: x.msg_type == "8" and x.fields.get(11) == mq
                             and x.fields.get(41) == o and x.fields.get(150) == "4").fields[41]
                    for o in (first, a2, b, c)}
        assert canceled == {first, a2, b, c}

        # 3. FIX returns, the gateway reconciles and fails back; the venue's FIX resend of all
        # of this (including its echo of the amend) must not reach the OMS a second time.
        gw.err.wait_for(r"order flow moved from REST to FIX", 40, start=mark)
        rec.drain(3.0)
        rec2.drain(0.5)
        ers = [x for x in rec.all if x.msg_type == "8"]
        by_chain = {cl: [x.fields[150] for x in ers if x.fields.get(11) == cl
                         or (x.fields.get(41) == cl and x.fields.get(150) in ("5", "4"))]
                    for cl in (first, a, a2, b, c)}
        assert by_chain[first] == ["0", "4"], by_chain
        assert by_chain[a] == ["0", "5"], by_chain
        assert by_chain[a2] == ["5", "F", "4"], by_chain
        assert by_chain[b] == ["0", "4"] and by_chain[c] == ["0", "4"], by_chain
        assert [x.fields[150] for x in rec2.all if x.msg_type == "8"] == ["0"]
        assert len({x.fields[17] for x in ers}) == len(ers)  # no ExecID twice

        counts = sim.control(cmd="submission_counts")["counts"]
        assert isinstance(counts, dict)
        ours = {k: n for k, n in counts.items() if k.startswith("FIXGW ")}
        # Five new orders (OMS2's included), each once; the amended one counts its amend as
        # one more submission (Kraken keeps the ClOrdID); the refused amend never left.
        assert sorted(ours.values()) == [1, 1, 1, 1, 2], ours  # first, b, c, d; a amended
        gw.stop()
        gw = None

        # 4. The OMS-side record against the venue's, order by order.
        venue = venue_orders(sim, creds, [txid_a, txid_b, txid_c, txid_d])
        va = venue[txid_a]
        assert va.status == "canceled" and va.volume == Decimal("0.03")  # type: ignore[attr-defined]
        assert va.vol_exec == Decimal("0.01") and va.price == Decimal("30100.0")  # type: ignore[attr-defined]
        assert venue[txid_b].status == "canceled"  # type: ignore[attr-defined]
        assert venue[txid_c].status == "canceled"  # type: ignore[attr-defined]
        assert venue[txid_d].status == "open"  # type: ignore[attr-defined]  # OMS2's, untouched


def test_orders_and_fills_over_ws_while_failed_over(tmp_path: Path) -> None:
    """With the private WebSocket up, orders and cancels go over it (FIX, then WS, then REST),
    and with polling slowed to 30 s only the WS executions feed can bring a fill within
    seconds; the reconciliation poll before failback and the venue's FIX resend then see the
    same states and must add nothing."""
    with VenueStack(tmp_path, clients=("FIXGW", "MAKER")) as v:
        sim = v.sim
        gw = v.gateway(venue_toml=fallback_toml(
            sim, poll_interval_s=30, ws_url=f"ws://127.0.0.1:{sim.spot_ws_port}/v2"))
        oms, maker = v.oms(), v.maker()
        rec = Recorder(oms)
        # Everything up to the cancel takes ~3 s from the drop; the flow stays on REST (and
        # WS) for at least the 6 s refusal plus failback_after_s.
        mark = v.drop_fix(6)
        gw.err.wait_for(r"order flow moved from FIX to REST", 15, start=mark)
        gw.err.wait_for(r"subscribing to WS executions", 5, start=mark)

        time.sleep(1.0)  # the private socket is up (connect + token + subscribe)
        a = oms.buy("0.03", "31000.0")
        rec.report(a, "0")
        gw.err.wait_for(rf"order {a} placed over WS: txid", 1, start=mark)
        maker.send("D", order_fields(new_id("M"), "2", "0.01", "31000.0"))
        t0 = time.monotonic()
        p = rec.wait(lambda x: x.fields.get(11) == a and x.fields.get(150) == "F", 3.0)
        assert time.monotonic() - t0 < 3.0  # the next poll is ~30 s away
        assert p.fields[39] == "1" and Decimal(p.fields[32]) == Decimal("0.01")
        maker.send("D", order_fields(new_id("M"), "2", "0.02", "31000.0"))
        f = rec.wait(lambda x: x.fields.get(11) == a and x.fields.get(39) == "2", 3.0)
        assert Decimal(f.fields[14]) == Decimal("0.03") and Decimal(f.fields[32]) == Decimal(
            "0.02")
        # On the event stream the acknowledgement and the fills name the WebSocket they came
        # over, and no report of the order names the FIX session, which was down all along.
        reports = [e for e in order_events(gw.grpc_port, {a}, 4)
                   if e.order.type == O.ORDER_EVENT_TYPE_EXECUTION_REPORT]
        assert [(e.source.kind, e.source.session) for e in reports] == [
            (common_pb2.SOURCE_KIND_WS, "kraken-spot-ws-v2")] * 3
        assert common_pb2.SOURCE_KIND_FIX not in {e.source.kind for e in reports}
        # A replace goes over WS as amend_order (in place, as REST AmendOrder would), and a
        # cancel is confirmed over WS too, long before the next poll.
        b = oms.buy("0.01", "30500.0")
        txid_b = rec.report(b, "0").fields[37]
        b2 = new_id("R")
        fix_amend(oms, b2, b, "0.02", "30400.0")
        r = rec.report(b2, "5", timeout=3.0)
        assert r.fields[41] == b and r.fields[37] == txid_b and r.fields[39] == "0"
        assert Decimal(r.fields[38]) == Decimal("0.02") and Decimal(r.fields[44]) == 30400
        gw.err.wait_for(rf"order {b} amended over WS", 1, start=mark)
        xb = new_id("X")
        oms.send("F", [(11, xb), (41, b2), (55, "BTC/USD"), (54, "1"), (38, "0.02"),
                       (60, "20260101-00:00:00")])
        rec.report(xb, "4", timeout=3.0)
        gw.err.wait_for(rf"cancel of order {b2} sent over WS", 1, start=mark)
        log = "\n".join(gw.err.lines[mark:])
        assert "placed over REST" not in log and "amended over REST" not in log
        journal = (tmp_path / "gw" / "var" / "orders.journal").read_text().splitlines()
        assert {ln.split("\t")[2]: ln.split("\t")[-1] for ln in journal
                if ln.startswith("N\t")} == {a: "ws", b: "ws"}

        gw.err.wait_for(r"order flow moved from REST to FIX", 40, start=mark)
        rec.drain(3.0)
        assert rec.exec_types(a) == ["0", "F", "F"]
        assert rec.exec_types(b) == ["0", "5"] and rec.exec_types(b2) == ["5", "4"]
        ers = [x for x in rec.all if x.msg_type == "8"]
        assert len({x.fields[17] for x in ers}) == len(ers)
        counts = sim.control(cmd="submission_counts")["counts"]
        assert isinstance(counts, dict)
        # Each order once; b's amend counts one more submission of its ClOrdID (Kraken keeps
        # it), as over REST.
        ours = sorted(n for k, n in counts.items() if k.startswith("FIXGW "))
        assert ours == [1, 2], counts


# How long an order may be held in the test below: the cancel of the second order comes one
# round trip after it was held, well inside this, and the first is rejected only after it.
HOLD_MAX_S = 2


def test_orders_held_while_no_transport_is_up_expire_or_cancel(tmp_path: Path) -> None:
    """FIX down, failover not made (failover_after_s is long here): an order is held
    (PendingNew); held too long it is rejected with a Text that says so; one canceled while
    held is canceled at once; neither ever reaches the venue."""
    with VenueStack(tmp_path, clients=("FIXGW",)) as v:
        sim = v.sim
        gw = v.gateway(venue_toml=fallback_toml(
            sim, failover_after_s=120, hold_max_s=HOLD_MAX_S))
        oms = v.oms()
        rec = Recorder(oms)
        v.take_fix_down(30)
        t_drop = time.monotonic()

        expired = oms.buy("0.01", "30000.0")
        pn = rec.report(expired, "A")
        assert pn.fields[39] == "A" and "held" in pn.fields[58]
        canceled = oms.buy("0.01", "30000.0")
        rec.report(canceled, "A")
        xc = new_id("X")
        oms.send("F", [(11, xc), (41, canceled), (55, "BTC/USD"), (54, "1"), (38, "0.01"),
                       (60, "20260101-00:00:00")])
        cx = rec.report(xc, "4")
        assert cx.fields[41] == canceled and "held" in cx.fields[58]
        rj = rec.report(expired, "8", timeout=8)
        assert "held" in rj.fields[58] and "not sent" in rj.fields[58]
        assert time.monotonic() - t_drop >= HOLD_MAX_S - 0.5
        rec.drain(1.0)
        assert rec.exec_types(expired) == ["A", "8"]
        assert rec.exec_types(canceled) == ["A", "4"]
        counts = sim.control(cmd="submission_counts")["counts"]
        assert counts == {}, counts  # neither ever reached the venue
        # On the event stream: the Canceled report was written by the gateway (the venue never
        # had the order), and the reject of the expired one says what was refused.
        evs = order_events(gw.grpc_port, {expired, canceled, xc}, 4)
        (cx_ev,) = [e for e in evs if e.order.exec_type == O.EXEC_TYPE_CANCELED]
        assert (cx_ev.source.kind, cx_ev.source.session) == (common_pb2.SOURCE_KIND_GATEWAY,
                                                             "router")
        (rj_ev,) = [e for e in evs if e.order.type == O.ORDER_EVENT_TYPE_REJECTED]
        assert rj_ev.order.cl_ord_id == expired and rj_ev.symbol == "BTC/USD"
        assert rj_ev.order.ord_status == O.ORD_STATUS_REJECTED
        assert (rj_ev.order.side, rj_ev.order.order_qty, rj_ev.order.price) == (
            common_pb2.SIDE_BUY, "0.01", "30000.0")


def test_operator_cancel_of_a_held_order_never_reaches_the_venue(tmp_path: Path) -> None:
    """`fixgwctl cancel` of an order held while no transport is up cancels it in the gateway:
    the OMS gets the Canceled report under the operator's request, the venue never hears of
    the order, and the kill switch then has nothing left to cancel."""
    with VenueStack(tmp_path, clients=("FIXGW",)) as v:
        sim = v.sim
        gw = v.gateway(venue_toml=fallback_toml(sim, failover_after_s=120, hold_max_s=60))
        oms = v.oms()
        rec = Recorder(oms)
        v.take_fix_down(30)
        held = oms.buy("0.01", "30000.0")
        rec.report(held, "A")
        listed = gw.fixgwctl("order", held)
        assert listed.returncode == 0 and "transport        held" in listed.stdout, listed.stdout
        r = gw.fixgwctl("cancel", held, "--yes")
        assert r.returncode == 0, r.stderr
        assert f"{held} (FIXGW->OMS, BTC/USD) canceled: it was held" in r.stdout, r.stdout
        cx = rec.wait(lambda m: m.msg_type == "8" and m.fields.get(41) == held
                      and m.fields.get(150) == "4")
        assert cx.fields[11].startswith("OPS-") and "held" in cx.fields[58]
        kill = gw.fixgwctl("kill-switch", "on", "--yes")
        assert kill.returncode == 0 and "cancel sent for 0 open order(s)" in kill.stdout
        rec.drain(0.5)
        assert rec.exec_types(held) == ["A", "4"]
        assert sim.control(cmd="submission_counts")["counts"] == {}


def test_order_held_while_fix_is_down_goes_over_fix_when_it_returns(tmp_path: Path) -> None:
    """FIX down, failover not made: an order held (PendingNew) is sent exactly once over FIX
    when the session returns."""
    with VenueStack(tmp_path, clients=("FIXGW",)) as v:
        sim = v.sim
        gw = v.gateway(venue_toml=fallback_toml(
            sim, failover_after_s=120, hold_max_s=20))
        oms = v.oms()
        rec = Recorder(oms)
        # The order is held one round trip after the gateway sees FIX down (~1 s after the
        # drop); FIX may log on again 3 s after the drop.
        mark = v.take_fix_down(3)
        sent = oms.buy("0.01", "30000.0")
        rec.report(sent, "A")
        gw.err.wait_for(r"FIXGW->KRAKEN-TRD \(venue\): \S+ -> logged_on", 15, start=mark)
        gw.err.wait_for(rf"held order {sent} sent over FIX", 2, start=mark)
        new = rec.report(sent, "0", timeout=8)
        assert not new.fields[17].startswith("R")  # the venue's own ExecID: it went over FIX
        rec.drain(2.0)
        assert rec.exec_types(sent) == ["A", "0"]
        counts = sim.control(cmd="submission_counts")["counts"]
        assert isinstance(counts, dict)
        assert list(counts.values()) == [1], counts


def test_order_held_at_the_outage_goes_over_rest_after_failover(tmp_path: Path) -> None:
    with VenueStack(tmp_path, clients=("FIXGW",)) as v:
        sim = v.sim
        gw = v.gateway(venue_toml=fallback_toml(sim, failover_after_s=2))
        oms = v.oms()
        rec = Recorder(oms)
        mark = v.take_fix_down(30)
        first = oms.buy("0.01", "30000.0")
        second = oms.buy("0.02", "30000.0")
        rec.report(first, "A")
        rec.report(second, "A")
        gw.err.wait_for(r"order flow moved from FIX to REST", 15, start=mark)
        n1 = rec.report(first, "0")
        n2 = rec.report(second, "0")
        assert n1.fields[17].startswith("R") and n2.fields[17].startswith("R")
        assert rec.all.index(n1) < rec.all.index(n2)  # in the order the OMS sent them
        rec.drain(1.5)
        assert rec.exec_types(first) == ["A", "0"] and rec.exec_types(second) == ["A", "0"]
        counts = sim.control(cmd="submission_counts")["counts"]
        assert isinstance(counts, dict) and sorted(counts.values()) == [1, 1], counts


def test_failback_with_30_open_orders_is_quick(tmp_path: Path) -> None:
    """Reconciliation before failback is batched (one OpenOrders, QueryOrders 50 at a time)
    and routine polls leave the REST counter room for it, so failback completes within
    failback_after_s + 1.5 s of the FIX logon with 30 open REST-routed orders, after more
    than 10 s on REST at the starter tier. Before: ~7 s with failback_after_s = 2 (the poller
    saturated the counter, so both noticing FIX and reconciling waited ~3 s on it)."""
    with VenueStack(tmp_path, clients=("FIXGW", "MAKER")) as v:
        creds, sim = v.creds, v.sim
        gw = v.gateway(venue_toml=fallback_toml(sim, failback_after_s=2, poll_interval_s=0.5))
        oms, maker = v.oms(), v.maker()
        rec = Recorder(oms)
        mark = v.drop_fix(14)
        gw.err.wait_for(r"order flow moved from FIX to REST", 15, start=mark)
        cls = [oms.buy("0.01", f"{29000 + 10 * i}.0") for i in range(30)]
        txids = {cl: rec.report(cl, "0").fields[37] for cl in cls}
        # Three of them fill while FIX is down (the highest bids: 29290, 29280, 29270).
        maker.send("D", order_fields(new_id("M"), "2", "0.03", "29270.0"))
        filled = cls[-3:]
        logon = gw.err.wait_for(r"FIXGW->KRAKEN-TRD \(venue\): \S+ -> logged_on", 30,
                                start=mark)
        t_logon = time.monotonic()
        assert logon
        gw.err.wait_for(r"order flow moved from REST to FIX", 15, start=mark)
        took = time.monotonic() - t_logon
        assert took < 2 + 1.5, f"failback {took:.2f}s after the FIX logon"
        recon = gw.err.wait_for(r"reconciled \d+ open REST-routed order\(s\) before failback "
                                r"to FIX in ([\d.]+)s: ok", 1, start=mark)
        assert float(recon.group(1)) < 0.5

        rec.drain(3.0)
        for cl in cls:
            want = ["0", "F"] if cl in filled else ["0"]
            assert rec.exec_types(cl) == want, (cl, rec.exec_types(cl))
        counts = sim.control(cmd="submission_counts")["counts"]
        assert isinstance(counts, dict)
        assert sorted(n for k, n in counts.items() if k.startswith("FIXGW ")) == [1] * 30
        gw.stop()
        gw = None
        venue = venue_orders(sim, creds, list(txids.values()))
        for cl, txid in txids.items():
            v = venue[txid]
            want_exec = Decimal("0.01") if cl in filled else Decimal(0)
            assert v.vol_exec == want_exec, (cl, v)  # type: ignore[attr-defined]
            assert v.status == ("closed" if cl in filled else "open")  # type: ignore[attr-defined]
