"""FIX -> REST failover and back, over real processes: the venue drops the gateway's FIX trading
session, orders and cancels continue over Kraken spot REST and come back to the OMS as FIX
ExecutionReports, FIX returns, the gateway reconciles and fails back; no order is submitted
twice and the OMS sees one report per state of each order."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from pathlib import Path

from gateway.fix.client import Received
from tests.conftest import Oms, make_client, new_id, order_fields
from tests.procs import Credentials, GatewayProcess, SimProcess, stop_all


class Recorder:
    """Keeps every application message the OMS receives, for waits and for the final count."""

    def __init__(self, oms: Oms) -> None:
        self.oms = oms
        self.all: list[Received] = []

    def wait(self, pred: Callable[[Received], bool], timeout: float = 15.0) -> Received:
        deadline = time.monotonic() + timeout
        while True:
            for r in self.all:
                if pred(r):
                    return r
            try:
                self.all.append(self.oms.c.inbox.get(timeout=0.1))
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise TimeoutError("no matching report; got:\n" + "\n".join(
                        str(r.fields) for r in self.all)) from None

    def report(self, cl: str, exec_type: str, timeout: float = 15.0) -> Received:
        return self.wait(lambda r: r.msg_type == "8" and r.fields.get(11) == cl
                         and r.fields.get(150) == exec_type, timeout)

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                self.all.append(self.oms.c.inbox.get(timeout=left))
            except queue.Empty:
                break

    def exec_types(self, cl: str) -> list[str]:
        return [r.fields[150] for r in self.all
                if r.msg_type == "8" and (r.fields.get(11) == cl or r.fields.get(41) == cl)]


def test_fail_over_to_rest_and_back_without_duplicates(tmp_path: Path) -> None:
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, clients=("FIXGW", "MAKER"))
    gw = None
    clients: list[Oms] = []
    try:
        fallback = (f'fallback = {{ enabled = true, rest_url = "http://127.0.0.1:'
                    f'{sim.spot_rest_port}", failover_after_s = 1, failback_after_s = 2 }}')
        gw = GatewayProcess(tmp_path / "gw", sim, creds,
                            venue_toml=f"md_stale_after_s = 3600\n{fallback}")
        oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
        maker = Oms(make_client(tmp_path, sim.trading_port, "MAKER", "KRAKEN-TRD", creds))
        for c in (oms, maker):
            c.c.start()
            clients.append(c)
        rec = Recorder(oms)

        # 1. FIX: an order rests at the venue.
        a = oms.buy("0.01", "30000.0")
        assert not rec.report(a, "0").fields[17].startswith("R")

        # 2. The venue drops our FIX session and refuses logons for a while: failover.
        # Steps 3 and 4 are done ~3 s after the drop; FIX is refused for 5 s and must then be
        # stable for failback_after_s (2 s), so they run on REST with room to spare.
        mark = len(gw.err.lines)
        sim.control(cmd="drop_fix", client="FIXGW", refuse_s=5)
        gw.err.wait_for(r"order flow moved from FIX to REST", 15, start=mark)

        # 3. Over REST: a new order is acknowledged as a FIX ER; another is canceled.
        b = oms.buy("0.01", "41000.0")
        nb = rec.report(b, "0")
        assert nb.fields[39] == "0" and nb.fields[17].startswith("R")
        c = oms.buy("0.02", "29000.0")
        rec.report(c, "0")
        xc = new_id("X")
        oms.send("F", [(11, xc), (41, c), (55, "BTC/USD"), (54, "1"), (38, "0.02"),
                       (60, "20260101-00:00:00")])
        cx = rec.report(xc, "4")
        assert cx.fields[41] == c and cx.fields[39] == "4"

        # 4. A maker trades against the REST order: the OMS gets the fill as a FIX ER.
        maker.send("D", order_fields(new_id("M"), "2", "0.01", "41000.0"))
        fb = rec.report(b, "F")
        assert fb.fields[39] == "2" and fb.fields[14] in ("0.01", "0.01000000")
        assert fb.fields[32] in ("0.01", "0.01000000")

        # 5. FIX comes back; after it has been stable the gateway reconciles and fails back.
        gw.err.wait_for(r"reconciled \d+ open REST-routed order\(s\) before failback", 30,
                        start=mark)
        gw.err.wait_for(r"order flow moved from REST to FIX", 10, start=mark)
        d = oms.buy("0.01", "30000.0")
        nd = rec.report(d, "0")
        assert not nd.fields[17].startswith("R")  # the venue's own ExecID: it went over FIX
        assert f"order {d} placed over REST" not in gw.err.text()

        # 6. Let the FIX resend of everything the venue stored while we were away arrive.
        rec.drain(3.0)
        assert rec.exec_types(a) == ["0"]
        assert rec.exec_types(b) == ["0", "F"]
        assert rec.exec_types(c) == ["0", "4"]
        assert rec.exec_types(d) == ["0"]
        counts = sim.control(cmd="submission_counts")["counts"]
        assert isinstance(counts, dict) and counts
        assert all(n == 1 for n in counts.values()), counts
        assert sum(1 for k in counts if k.startswith("FIXGW ")) == 4
    finally:
        try:  # clients and gateway together: each waits out QuickFIX's 1 s ticks
            stop_all([*(cl.c.stop for cl in clients), *([gw.stop] if gw is not None else [])])
        finally:
            sim.stop()
