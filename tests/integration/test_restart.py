"""kill -9 the gateway mid-flow, restart it: sequence numbers resume from the stores and the OMS
receives every ExecutionReport it missed through normal FIX resend, with no order lost or sent
to the venue twice."""

from __future__ import annotations

import contextlib
import queue
import re
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.fix.client import Received
from tests.conftest import Oms, make_client, new_id, order_fields
from tests.procs import Credentials, GatewayProcess, SimProcess, stop_all


def _collect(oms: Oms, until: float) -> list[Received]:
    got: list[Received] = []
    while time.monotonic() < until:
        with contextlib.suppress(queue.Empty):
            got.append(oms.c.inbox.get(timeout=0.2))
    return got


def test_kill9_mid_flow_then_restart_loses_nothing(tmp_path: Path) -> None:
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, clients=("FIXGW", "MAKER"))
    gw = GatewayProcess(tmp_path / "gw", sim, creds)
    oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
    maker = Oms(make_client(tmp_path, sim.trading_port, "MAKER", "KRAKEN-TRD", creds))
    oms.c.start()
    maker.c.start()
    reports: list[Received] = []
    try:
        sent: list[str] = []
        for i in range(40):
            cl = new_id("K")
            oms.send("D", order_fields(cl, "1", "0.01", f"{40000 + i}.0"))
            sent.append(cl)
            if i == 24:
                gw.kill()  # mid-flow: some orders acked, some in flight, some not yet sent
        # While the gateway is down the venue fills whatever it has: those reports wait in the
        # venue's store for the gateway's session.
        mk = new_id("M")
        maker.send("D", order_fields(mk, "2", "0.40", "39000.0"))
        maker.report(mk, "0")
        time.sleep(0.5)
        seq_before = _store_seqnums(tmp_path / "gw" / "var" / "store" / "oms")

        gw.start()
        # Every order reaches a known state at the venue (acknowledged or filled) through resend
        # and reconciliation; wait for that rather than for a fixed time (CI machines are slow).
        reports += _collect_until(oms, lambda got: _all_acked(got, sent), 30)
        # Orders that reached the venue only after the restart are open now: fill them too.
        mk2 = new_id("M")
        maker.send("D", order_fields(mk2, "2", "0.40", "39000.0"))
        reports += _collect_until(oms, lambda got: _all_filled(reports + got, sent), 30)
    finally:
        try:  # clients and gateway together: each waits out QuickFIX's 1 s ticks
            stop_all([oms.c.stop, maker.c.stop, gw.stop])
        finally:
            sim.stop()

    # Sequence numbers resumed (not reset to 1) across the restart.
    assert seq_before[0] > 1 and seq_before[1] > 1
    # No venue credentials (553 key, 554 password) in QuickFIX's file stores: the trading
    # session keeps no messages at all (PersistMessages=N: a venue ResendRequest is gap filled,
    # tests/integration/test_venue_resend.py), and the resends above worked all the same.
    bodies = list((tmp_path / "gw" / "var" / "store" / "venue").glob("*.body"))
    assert bodies
    for body in bodies:
        data = body.read_bytes()
        assert creds.api_key.encode() not in data
        assert re.search(rb"\x01554=[^*\x01]", data) is None
        if "KRAKEN-TRD" in body.name:
            assert data == b"", data[:200]
    by_order: dict[str, list[dict[int, str]]] = defaultdict(list)
    for r in reports:
        if r.msg_type == "8":
            by_order[r.fields[11]].append(r.fields)
    missing = [cl for cl in sent if not any(f[39] == "2" for f in by_order.get(cl, []))]
    assert not missing, (f"orders without a final fill report after restart: {missing}: "
                         f"{[by_order.get(cl) for cl in missing]}\n{gw.err.text()[-3000:]}")
    # No order was executed twice at the venue: each order's fills add up to exactly its qty.
    for cl in sent:
        fills = {f[17]: f for f in by_order[cl] if f[150] == "F"}
        assert sum(float(f[32]) for f in fills.values()) == 0.01, (cl, fills)
    # A report the OMS may have seen before the crash comes back only flagged PossResend.
    all_ids = [(r.fields[17], r.fields.get(97)) for r in reports if r.msg_type == "8"]
    plain = [eid for eid, pr in all_ids if pr != "Y"]
    assert len(plain) == len(set(plain))


def _collect_until(oms: Oms, done: Callable[[list[Received]], bool],
                   timeout: float) -> list[Received]:
    got: list[Received] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(got):
        with contextlib.suppress(queue.Empty):
            got.append(oms.c.inbox.get(timeout=0.2))
    got += _collect(oms, time.monotonic() + 0.5)  # and whatever trails
    return got


def _all_acked(got: list[Received], sent: list[str]) -> bool:
    seen = {r.fields.get(11) for r in got if r.msg_type == "8"}
    return all(cl in seen for cl in sent)


def _all_filled(got: list[Received], sent: list[str]) -> bool:
    filled = {r.fields.get(11) for r in got if r.msg_type == "8" and r.fields.get(39) == "2"}
    return all(cl in filled for cl in sent)


def _store_seqnums(store_dir: Path) -> tuple[int, int]:
    """(next sender, next target) from QuickFIX's FileStore `.seqnums` file."""
    f = next(store_dir.glob("*.seqnums"))
    sender, target = f.read_text().split(":")
    return int(sender.strip()), int(target.strip())


def _restart_with_unsent_order(tmp_path: Path, lines: list[str],
                               extra_toml: str = "") -> tuple[SimProcess, GatewayProcess, Oms]:
    """A gateway that died after journaling `lines` (an order never sent, and what followed)."""
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds)
    gw = GatewayProcess(tmp_path / "gw", sim, creds, extra_toml=extra_toml)
    gw.stop()
    with (tmp_path / "gw" / "var" / "orders.journal").open("a") as f:
        f.writelines(line + "\n" for line in lines)
    return sim, gw, Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))


_UNSENT = "N\tFIXGW->OMS\t{cl}\t{vid}\tBTC/USD\t1\t2\t0.01\t30000.0\t1\t\t{transport}"


def test_order_journaled_but_never_sent_is_reconciled_and_sent_once(tmp_path: Path) -> None:
    """The gateway died between journaling an order and sending it: after restart it asks the
    venue (OrderStatusRequest), learns the order never arrived, sends it under the same venue
    ClOrdID, and the OMS gets the order's reports through resend."""
    venue_id = "1000000000000001"
    sim, gw, oms = _restart_with_unsent_order(tmp_path, [
        _UNSENT.format(cl="LOST-1", vid=venue_id, transport="fix")])
    try:
        gw.start()
        gw.err.wait_for(r"order LOST-1 never reached the venue before the restart", 30)
        oms.c.start()
        r = oms.report("LOST-1", "0", timeout=30)
        assert r.fields[39] == "0" and r.fields[38] == "0.01000000"
        counts = sim.control(cmd="submission_counts")["counts"]
        assert counts == {f"FIXGW {venue_id}": 1}
    finally:
        try:  # clients and gateway together: each waits out QuickFIX's 1 s ticks
            stop_all([oms.c.stop, gw.stop])
        finally:
            sim.stop()


@pytest.mark.parametrize(("lines", "extra_toml", "logged", "exec_type", "text"), [
    # The OMS asked to cancel an order that had not reached the venue (the gateway died, or
    # FIX dropped, before its NewOrderSingle left): when the venue says it never got it, it
    # is not sent late but Canceled.
    ([_UNSENT.format(cl="LOST-2", vid="1000000000000011", transport="fix"),
      "Q\t1000000000000012\tFIXGW->OMS\tLOST-2\tCXL-2\tcancel"], "",
     r"order LOST-2 \(in doubt\) not sent: a cancel was asked", "4",
     "canceled: it had not reached the venue"),
    # The pre-trade gate checks it before it is sent late: with the kill switch on it is
    # rejected with the gate's reason.
    ([_UNSENT.format(cl="LOST-3", vid="1000000000000021", transport="fix")],
     "[risk]\nkill_switch = true\n", r"order LOST-3 \(in doubt\) not sent: .*kill_switch",
     "8", "blocked by kill_switch"),
    # A held order on its way out of the hold queue with no transport (being rejected or
    # canceled in the gateway), then the gateway died before its report was journaled: at
    # the next start it is closed, not left open for ever.
    ([_UNSENT.format(cl="LOST-4", vid="1000000000000031", transport="held"),
      "S\tFIXGW->OMS\tLOST-4\tnone"], "",
     r"order LOST-4 \(at start\) not sent: the gateway stopped while closing", "8",
     "not sent: it had not reached the venue"),
], ids=["cancel-asked", "kill-switch", "closing-at-crash"])
def test_order_that_never_reached_the_venue_is_closed_not_sent_late(
        tmp_path: Path, lines: list[str], extra_toml: str, logged: str, exec_type: str,
        text: str) -> None:
    """An accepted order that never reached the venue is sent once after a restart only if
    nothing has stopped it since; otherwise the OMS gets its end, and the venue never sees
    it."""
    sim, gw, oms = _restart_with_unsent_order(tmp_path, lines, extra_toml)
    cl = lines[0].split("\t")[2]
    try:
        gw.start()
        gw.err.wait_for(logged, 30)
        oms.c.start()
        r = oms.report(cl, exec_type, timeout=30)
        assert r.fields[39] == exec_type and text in r.fields[58], r.fields
        assert sim.control(cmd="submission_counts")["counts"] == {}
    finally:
        try:
            stop_all([oms.c.stop, gw.stop])
        finally:
            sim.stop()


def test_open_order_limit_counts_orders_open_before_a_restart(tmp_path: Path) -> None:
    """`max_open_orders` counts the orders a restart replays from the journal: with one
    resting order and a limit of one, the next order after the restart is blocked."""
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds)
    gw = GatewayProcess(tmp_path / "gw", sim, creds,
                        extra_toml="[risk]\nmax_open_orders = 1\nstale_book_s = 3600\n")
    oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
    try:
        oms.c.start()
        resting = oms.buy("0.01", "30000.0")
        assert oms.report(resting, "0").fields[39] == "0"
        oms.c.stop()
        gw.stop()
        gw.start()
        oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
        oms.c.start()
        blocked = oms.buy("0.01", "30000.0")
        r = oms.report(blocked, "8")
        assert "max_open_orders" in r.fields[58], r.fields
    finally:
        try:
            stop_all([oms.c.stop, gw.stop])
        finally:
            sim.stop()


def test_control_characters_in_clordid_or_account_are_refused_and_restart_works(
        tmp_path: Path) -> None:
    """FIX allows a tab or a newline in a ClOrdID or an Account, but the journal keeps one
    record per line with tab-separated fields: such a value used to be journaled and stopped
    every later start of the gateway. It is refused, with nothing journaled."""
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds)
    gw = GatewayProcess(tmp_path / "gw", sim, creds)
    oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
    try:
        oms.c.start()
        tab = "T\tAB"
        oms.send("D", order_fields(tab, "1", "0.01", "30000.0"))
        r = oms.report(tab, "8")
        assert r.fields[103] == "99" and "ClOrdID (11) holds a control character" in r.fields[58]
        cl = new_id("N")
        oms.send("D", [*order_fields(cl, "1", "0.01", "30000.0"), (1, "DESK\nA")])
        assert "Account (1) holds a control character" in oms.report(cl, "8").fields[58]
        resting = oms.buy("0.01", "30000.0")
        oms.report(resting, "0")
        cx = "C\tX"
        oms.send("F", [(11, cx), (41, resting), (55, "BTC/USD"), (54, "1"), (38, "0.01"),
                       (60, time.strftime("%Y%m%d-%H:%M:%S", time.gmtime()))])
        rej = oms.expect(lambda x: x.msg_type == "9" and x.fields.get(11) == cx)
        assert "control character" in rej.fields[58]
        oms.c.stop()
        gw.stop()
        journal = (tmp_path / "gw" / "var" / "orders.journal").read_text()
        assert "T\tAB" not in journal and "DESK" not in journal
        gw.start()  # reads its journal back
        oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
        oms.c.start()
        oms.send("H", [(11, resting), (55, "BTC/USD"), (54, "1")])
        assert oms.report(resting, "I").fields[39] == "0"
    finally:
        try:
            stop_all([oms.c.stop, gw.stop])
        finally:
            sim.stop()


def test_an_operators_kill_switch_stays_on_across_a_kill_9(tmp_path: Path) -> None:
    """Ops halt trading, then the gateway dies (kill -9) and is started again: trading stays
    halted until an operator turns the switch off, and the log says who turned it on."""
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds)
    gw = GatewayProcess(tmp_path / "gw", sim, creds)
    oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
    try:
        r = gw.fixgwctl("kill-switch", "on", "--yes")
        assert r.returncode == 0, r.stderr
        gw.kill()
        gw.start()
        gw.err.wait_for(r"kill switch ON, as an operator left it \(by operator", 10)
        oms.c.start()
        blocked = oms.buy("0.01", "30000.0")
        assert oms.report(blocked, "8").fields[58].startswith("blocked by kill_switch")
        assert gw.fixgwctl("kill-switch", "off", "--yes").returncode == 0
        ok = oms.buy("0.01", "30000.0")
        oms.report(ok, "0")
        assert not (tmp_path / "gw" / "var" / "kill-switch.json").exists()
    finally:
        try:
            stop_all([oms.c.stop, gw.stop])
        finally:
            sim.stop()


def test_a_session_an_operator_logged_out_stays_out_across_a_kill_9(tmp_path: Path) -> None:
    """Ops log out the venue's market-data session (venue maintenance), then the gateway dies
    and is started again: the session stays logged out, and the log says who held it and
    why, until an operator logs it on."""
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds)
    gw = GatewayProcess(tmp_path / "gw", sim, creds)
    holds = tmp_path / "gw" / "var" / "session-holds.json"
    try:
        gw.err.wait_for(r"session FIXGW->KRAKEN-MD \(venue\): \S+ -> logged_on", 30)
        r = gw.fixgwctl("logout", "FIXGW->KRAKEN-MD", "--reason", "venue maintenance", "--yes")
        assert r.returncode == 0, r.stderr
        assert "venue maintenance" in holds.read_text()
        gw.kill()
        gw.start()  # waits for the trading session: it logs on as usual
        gw.err.wait_for(r"session FIXGW->KRAKEN-MD held logged out, as an operator left it "
                        r"\(by operator\S* at \S+: venue maintenance\)", 10)
        time.sleep(3)  # several reconnect intervals: it must not log on meanwhile
        assert not re.search(r"FIXGW->KRAKEN-MD \(venue\): \S+ -> logged_on", gw.err.text())
        assert gw.fixgwctl("logon", "FIXGW->KRAKEN-MD").returncode == 0
        gw.err.wait_for(r"session FIXGW->KRAKEN-MD \(venue\): \S+ -> logged_on", 20)
        assert not holds.exists()
    finally:
        try:
            gw.stop()
        finally:
            sim.stop()
