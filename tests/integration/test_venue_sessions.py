"""Venue-side sessions: Kraken's signed trading logon, venue outage (orders rejected with a clear
Text, never queued), reconnect, and reports routed only to the OMS that owns the order."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import Oms, make_client, new_id, order_fields, refused_logon
from tests.procs import Credentials, GatewayProcess, SimProcess, stop_all


def test_wrong_api_secret_is_refused_by_the_venue(tmp_path: Path) -> None:
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, clients=("MAKER",))
    try:
        bad = Credentials(api_key=creds.api_key)  # right key, wrong secret
        c = make_client(tmp_path, sim.trading_port, "MAKER", "KRAKEN-TRD", bad)
        try:
            assert "EAPI:Invalid signature" in refused_logon(c)
        finally:
            c.stop()
    finally:
        sim.stop()


def test_venue_down_rejects_then_reconnects(tmp_path: Path) -> None:
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds)
    gw = GatewayProcess(tmp_path / "gw", sim, creds)
    oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
    oms.c.start()
    try:
        sim.stop()
        gw.err.wait_for(r"session FIXGW->KRAKEN-TRD \(venue\): logged_on -> logged_out", 10)
        cl = oms.buy("0.01", "30000.0")
        r = oms.report(cl, "8")
        assert r.fields[103] == "2"
        assert "is not logged on; order not sent" in r.fields[58]
        # Cancel while down: refused with a reason, not queued.
        ccl = new_id("X")
        oms.send("F", [(11, ccl), (41, cl), (55, "BTC/USD"), (54, "1"), (38, "0.01"),
                       (60, "20260101-00:00:00")])
        rej = oms.expect(lambda r: r.msg_type == "9" and r.fields.get(11) == ccl)
        assert rej.fields[434] == "1"

        # The venue comes back on the same ports: the backoff supervisor reconnects.
        sim = SimProcess(tmp_path / "sim", creds, trading_port=sim.trading_port,
                         md_port=sim.md_port)
        gw.err.wait_for(r"session FIXGW->KRAKEN-TRD \(venue\): logged_out -> logged_on", 30)
        cl2 = oms.buy("0.01", "30000.0")
        assert oms.report(cl2, "0").fields[39] == "0"
    finally:
        try:  # clients and gateway together: each waits out QuickFIX's 1 s ticks
            stop_all([oms.c.stop, gw.stop])
        finally:
            sim.stop()


def test_reports_go_only_to_the_owning_oms(tmp_path: Path) -> None:
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, clients=("FIXGW", "MAKER"))
    gw = GatewayProcess(tmp_path / "gw", sim, creds, oms_comp_ids=("DESK1", "DESK2"))
    a = Oms(make_client(tmp_path, gw.oms_port, "DESK1", "FIXGW"))
    b = Oms(make_client(tmp_path, gw.oms_port, "DESK2", "FIXGW"))
    maker = Oms(make_client(tmp_path, sim.trading_port, "MAKER", "KRAKEN-TRD", creds))
    for c in (a, b, maker):
        c.c.start()
    try:
        # The same ClOrdID on two desks is two different orders.
        cl = new_id("SAME")
        a.send("D", order_fields(cl, "1", "0.01", "41000.0"))
        ra = a.report(cl, "0")  # DESK1 rests first: it has time priority
        b.send("D", order_fields(cl, "1", "0.02", "41000.0"))
        rb = b.report(cl, "0")
        assert ra.fields[37] != rb.fields[37]
        assert ra.fields[38] == "0.01000000" and rb.fields[38] == "0.02000000"
        mk = new_id("M")
        maker.send("D", order_fields(mk, "2", "0.01", "41000.0"))
        fa = a.report(cl, "F")
        assert fa.fields[39] == "2"
        time.sleep(0.5)
        # DESK2's order is behind DESK1's in time priority: no fill, and no DESK1 report leaked.
        assert all(r.fields.get(150) != "F" for r in list(b.c.inbox.queue))
        # Mass cancel on DESK2 cancels only DESK2's order.
        mcl = new_id("MC")
        b.send("q", [(11, mcl), (530, "7"), (60, "20260101-00:00:00")])
        rep = b.expect(lambda r: r.msg_type == "r" and r.fields.get(11) == mcl)
        assert rep.fields[533] == "1"
    finally:
        try:  # clients and gateway together: each waits out QuickFIX's 1 s ticks
            stop_all([a.c.stop, b.c.stop, maker.c.stop, gw.stop])
        finally:
            sim.stop()


def test_a_mass_cancel_the_venue_does_not_support_is_refused_and_cancels_nothing(
        tmp_path: Path) -> None:
    """A FIX client of the simulator asks a mass cancel by product (530=3): refused (531=0,
    532=0) with a Text, and its resting order stays; 530=7 then cancels it."""
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, clients=("MAKER",))
    maker = Oms(make_client(tmp_path, sim.trading_port, "MAKER", "KRAKEN-TRD", creds))
    try:
        maker.c.start()
        cl = new_id("R")
        maker.send("D", order_fields(cl, "1", "0.01", "1000.0"))
        maker.report(cl, "0")
        mcl = new_id("MC")
        maker.send("q", [(11, mcl), (530, "3"), (460, "2"), (60, "20260101-00:00:00")])
        rep = maker.expect(lambda r: r.msg_type == "r" and r.fields.get(11) == mcl)
        assert (rep.fields[531], rep.fields[532], rep.fields[533]) == ("0", "0", "0")
        assert "not supported" in rep.fields[58]
        mcl = new_id("MC")
        maker.send("q", [(11, mcl), (530, "7"), (60, "20260101-00:00:00")])
        rep = maker.expect(lambda r: r.msg_type == "r" and r.fields.get(11) == mcl)
        assert (rep.fields[531], rep.fields[533]) == ("7", "1")
    finally:
        try:
            maker.c.stop()
        finally:
            sim.stop()
