"""kill -9 the gateway while its order flow is failed over to REST, restart it: the journal
says which transport carried each order and that the flow was on REST, so the restarted
gateway resumes on REST at once (no hold, no FIX attempt for those orders), reports the fill
the venue made while it was dead exactly once, and fails back when FIX returns; nothing is
submitted twice and the OMS-side record matches the venue's order by order."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

from tests.conftest import new_id, order_fields
from tests.integration.test_failover import Recorder
from tests.integration.test_failover_orders import fallback_toml, venue_orders
from tests.procs import VenueStack

# How long the venue refuses the gateway's FIX logons in the first test. Everything the test
# needs FIX refused for (failover, the orders and fills, the kill, the restart, the order sent
# after it) takes ~5 s on a quiet machine; the order after the restart is checked to leave
# at least 2 s before the refusal ends, so a slow run fails that check rather than passing
# with FIX already back. Every second more is a second of waiting for the failback.
REFUSE_S = 12


def test_kill9_while_failed_over_then_restart(tmp_path: Path) -> None:
    with VenueStack(tmp_path, clients=("FIXGW", "MAKER")) as v:
        creds, sim = v.creds, v.sim
        gw = v.gateway(venue_toml=fallback_toml(sim))
        oms, maker = v.oms(), v.maker()
        rec = Recorder(oms)
        mark = v.drop_fix(REFUSE_S)
        t_drop = time.monotonic()
        gw.err.wait_for(r"order flow moved from FIX to REST", 15, start=mark)

        a = oms.buy("0.02", "31000.0")
        txid_a = rec.report(a, "0").fields[37]
        c = oms.buy("0.01", "30000.0")
        txid_c = rec.report(c, "0").fields[37]
        maker.send("D", order_fields(new_id("M"), "2", "0.01", "31000.0"))
        assert rec.report(a, "F").fields[39] == "1"
        # Killed once the partial fill is journaled (it is journaled before it is forwarded;
        # a kill inside that window is tests/integration/test_report_crash_window.py's case).
        journal_path = tmp_path / "gw" / "var" / "orders.journal"
        deadline = time.monotonic() + 5
        while not any((p := ln.split("\t"))[0] == "E" and p[2] == a and p[4] == "1"
                      for ln in journal_path.read_text().splitlines()):
            assert time.monotonic() < deadline, "partial fill of `a` never journaled"
            time.sleep(0.01)

        gw.kill()
        # While the gateway is dead the venue fills the rest of `a`.
        mk = new_id("M")
        maker.send("D", order_fields(mk, "2", "0.01", "31000.0"))
        maker.report(mk, "F")
        journal = (tmp_path / "gw" / "var" / "orders.journal").read_text().splitlines()
        assert [ln.split("\t")[1] for ln in journal if ln.startswith("T\t")] == ["rest"]
        assert {ln.split("\t")[2]: ln.split("\t")[-1] for ln in journal
                if ln.startswith("N\t")} == {a: "rest", c: "rest"}

        mark = 0
        gw.start(wait_venue=False)
        gw.err.wait_for(r"order flow resumes on REST", 10)
        done = rec.wait(lambda x: x.fields.get(11) == a and x.fields.get(39) == "2", 20)
        assert Decimal(done.fields[14]) == Decimal("0.02")
        assert Decimal(done.fields[32]) == Decimal("0.01")
        # FIX is still refused: a new order goes over REST at once, not held for failover.
        assert time.monotonic() - t_drop < REFUSE_S - 2
        d = oms.buy("0.01", "29000.0")
        nd = rec.report(d, "0")
        assert nd.fields[17].startswith("R")
        txid_d = nd.fields[37]

        gw.err.wait_for(r"order flow moved from REST to FIX", 40, start=mark)
        rec.drain(3.0)
        fresh = [x for x in rec.all if x.msg_type == "8" and x.fields.get(97) != "Y"]

        def types(cl: str) -> list[str]:
            return [x.fields[150] for x in fresh if x.fields.get(11) == cl]

        assert types(a) == ["0", "F", "F"], types(a)
        assert types(c) == ["0"] and types(d) == ["0"], (types(c), types(d))
        assert len({x.fields[17] for x in fresh}) == len(fresh)  # no report twice
        # Any report re-sent after the crash carries the ExecID the OMS saw before.
        resent = {x.fields[17] for x in rec.all if x.msg_type == "8" and x.fields.get(97) == "Y"}
        assert resent <= {x.fields[17] for x in fresh}
        counts = sim.control(cmd="submission_counts")["counts"]
        assert isinstance(counts, dict)
        assert sorted(n for k, n in counts.items() if k.startswith("FIXGW ")) == [1, 1, 1]
        journal = (tmp_path / "gw" / "var" / "orders.journal").read_text().splitlines()
        assert [ln.split("\t")[1] for ln in journal if ln.startswith("T\t")] == ["rest", "fix"]
        gw.stop()
        gw = None

        venue = venue_orders(sim, creds, [txid_a, txid_c, txid_d])
        assert venue[txid_a].status == "closed"  # type: ignore[attr-defined]
        assert venue[txid_a].vol_exec == Decimal("0.02")  # type: ignore[attr-defined]
        for t in (txid_c, txid_d):
            assert venue[t].status == "open" and venue[t].vol_exec == 0  # type: ignore[attr-defined]


def test_kill9_while_an_order_is_held_then_restart_sends_it_once(tmp_path: Path) -> None:
    """An order held (no transport up yet) when the gateway dies is held again after the
    restart, from its journal record, and sent exactly once when a path is up (REST here)."""
    with VenueStack(tmp_path, clients=("FIXGW",)) as v:
        sim = v.sim
        # failover_after_s: the kill comes one order round trip after the gateway sees FIX
        # down, far inside 2 s; after the restart the test waits this long for the failover.
        gw = v.gateway(venue_toml=fallback_toml(
            sim, failover_after_s=2, hold_max_s=30))
        oms = v.oms()
        rec = Recorder(oms)
        v.take_fix_down(60)
        h = oms.buy("0.01", "30000.0")
        rec.report(h, "A")
        gw.kill()  # before the failover: the order never left
        journal = (tmp_path / "gw" / "var" / "orders.journal").read_text().splitlines()
        assert [ln.split("\t")[-1] for ln in journal
                if ln.startswith("N\t") and ln.split("\t")[2] == h] == ["held"]
        assert sim.control(cmd="submission_counts")["counts"] == {}

        gw.start(wait_venue=False)
        gw.err.wait_for(r"order flow moved from FIX to REST", 20)
        new = rec.report(h, "0", timeout=10)
        assert new.fields[17].startswith("R")
        gw.err.wait_for(rf"held order {h} sent over (REST|WS)", 1)
        rec.drain(1.5)
        fresh = [x for x in rec.all if x.msg_type == "8" and x.fields.get(97) != "Y"]
        assert [x.fields[150] for x in fresh if x.fields.get(11) == h] == ["A", "0"]
        counts = sim.control(cmd="submission_counts")["counts"]
        assert isinstance(counts, dict) and list(counts.values()) == [1], counts
        journal = (tmp_path / "gw" / "var" / "orders.journal").read_text().splitlines()
        assert [ln.split("\t")[3] for ln in journal
                if ln.startswith("S\t") and ln.split("\t")[2] == h] == ["rest"]
