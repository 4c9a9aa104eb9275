"""A gateway restarted on a journal that is mostly old history (100,000 records of orders
closed days ago, as a long run leaves it) compacts it at start and carries on: its live order
is still cancelable at the venue, an old order is answered as forgotten, and the old ClOrdIDs
are free again. Real processes over loopback (simulator, gateway, OMS)."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.orders.journal import replay_files
from tests.conftest import new_id
from tests.procs import VenueStack

OMS = "FIXGW->OMS"
OLD_ORDERS = 50_000  # two records each: the start's compaction threshold is 100,000


def _old_history(days_ago: float) -> list[str]:
    """New + Filled of OLD_ORDERS orders, each report journaled as forwarded `days_ago`."""
    ms = int((time.time() - days_ago * 86_400) * 1000)
    lines = []
    for i in range(OLD_ORDERS):
        cl, venue = f"OLD{i}", str(100_000 + i)
        lines.append(f"N\t{OMS}\t{cl}\t{venue}\tBTC/USD\t1\t2\t0.01\t30000.0\t1\t\tfix")
        lines.append(f"E\t{OMS}\t{cl}\tOLDX{i}\t2\t0.01\t30000.0\tOOLD{i}\t\t\t\t\t{ms}\t"
                     f"8=FIX.4.4\x0135=8\x0111={cl}\x01")
    return lines


def test_restart_on_a_journal_of_old_history_compacts_it_and_keeps_the_live_order(
        tmp_path: Path) -> None:
    with VenueStack(tmp_path) as v:
        gw = v.gateway()
        oms = v.oms()
        live = oms.buy("0.01", "20000.0")  # rests far below the market
        oms.report(live, "0")
        gw.stop()

        journal = tmp_path / "gw" / "var" / "orders.journal"
        # The old history first, as if a long run had written it before this order.
        journal.write_text("".join(f"{line}\n" for line in _old_history(3))
                           + journal.read_text())
        gw.start()
        gw.err.wait_for(r"orders\.journal compacted: 100\d\d\d records -> \d+ \(1 orders kept\)",
                        10)
        assert replay_files(journal) == [journal.with_name("orders.journal.snap.1"), journal]
        gw.err.wait_for(r"session FIXGW->OMS \(oms\): \S+ -> logged_on", 30)

        # The live order came through the snapshot: it is canceled at the venue.
        x = new_id("X")
        oms.send("F", [(11, x), (41, live), (55, "BTC/USD"), (54, "1"), (38, "0.01"),
                       (60, "20260101-00:00:00")])
        canceled = oms.report(x, "4")
        assert canceled.fields[41] == live
        # An old order is unknown now, and says why it may be.
        oms.send("H", [(11, "OLD7"), (55, "BTC/USD"), (54, "1")])
        status = oms.expect(lambda r: r.msg_type == "8" and r.fields.get(11) == "OLD7")
        assert status.fields[39] == "8" and "was forgotten" in status.fields[58]
        # Its ClOrdID takes a new order.
        oms.send("D", [(11, "OLD8"), (55, "BTC/USD"), (54, "1"), (38, "0.01"), (40, "2"),
                       (44, "20000.0"), (59, "1"), (60, "20260101-00:00:00")])
        assert oms.report("OLD8", "0").fields[39] == "0"
