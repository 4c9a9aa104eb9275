"""The simulator's FIX face behaves as Kraken's does where a client can tell the difference:
refusals that never widen a cancel, reports that survive a session that was never up, status
answers that never overtake the reports before them, and Kraken's cancel-on-disconnect (8674).
Over loopback, with a raw client, so the wire is what is checked."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from decimal import Decimal

import pytest

from gateway.venue_sim import engine as e
from gateway.venue_sim.accounts import Accounts, ApiAccount
from gateway.venue_sim.fix_face import MD_COMP_ID, TRADING_COMP_ID
from gateway.venue_sim.server import VenueSimulator
from gateway.venue_sim.spot_rest import SpotRestServer
from tests.fix_session.rawclient import RawFixClient, fields_of
from tests.venue_sim.sim_rest import private_call

D = Decimal
OWNER = "FIXGW"
REST_KEY = "fidelity"
REST_SECRET = base64.b64encode(b"fix face fidelity test secret, 40 bytes!").decode()


@pytest.fixture
def sim(venue: VenueSimulator) -> VenueSimulator:
    return venue  # tests/venue_sim/conftest.py


def trading_client(sim: VenueSimulator, extra: list[tuple[int, str]] | None = None,
                   ) -> RawFixClient:
    c = RawFixClient("127.0.0.1", sim.trading_port, OWNER, target=TRADING_COMP_ID).connect()
    c.logon(30, reset=True, extra=extra or [])
    return c


def md_client(sim: VenueSimulator) -> RawFixClient:
    c = RawFixClient("127.0.0.1", sim.md_port, OWNER, target=MD_COMP_ID).connect()
    c.logon(30, reset=True)
    return c


def wait_for(cond: Callable[[], object], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


def new_order(c: RawFixClient, cl: str, symbol: str = "BTC/USD", side: str = "1",
              qty: str = "0.01", price: str = "40000.0") -> None:
    c.send("D", [(11, cl), (55, symbol), (54, side), (60, "20260101-00:00:00.000"),
                 (38, qty), (40, "2"), (44, price), (59, "1")])


def report(c: RawFixClient, cl: str, exec_type: str, timeout: float = 5.0) -> dict[int, str]:
    return fields_of(c.expect("8", timeout, match=lambda f: f.get(11) == cl
                              and f.get(150) == exec_type))


# ---- 1: a by-symbol mass cancel without a symbol is refused, never widened ------------------

def test_mass_cancel_by_symbol_without_symbol_is_refused_and_cancels_nothing(
        sim: VenueSimulator) -> None:
    c = trading_client(sim)
    try:
        new_order(c, "b1")
        report(c, "b1", "0")
        new_order(c, "e1", symbol="ETH/USD", price="2000.00", qty="0.01")
        report(c, "e1", "0")
        c.send("q", [(11, "mc1"), (530, "1"), (60, "20260101-00:00:00.000")])
        r = fields_of(c.expect("r"))
        assert (r[531], r[532], r.get(533)) == ("0", "1", "0"), r
        assert not [m for m in c.quiet(0.5) if fields_of(m).get(150) == "4"]
        assert {o.cl_ord_id for o in sim.engine.open_orders(OWNER)} == {"b1", "e1"}
    finally:
        c.close()



# ---- 7: InstrumentList carries the lot step as 562 and the minimum as 5011 ------------------

def instrument_list(c: RawFixClient) -> dict[str, dict[int, str]]:
    """35=y's NoRelatedSym entries by Symbol (each entry starts at its 55)."""
    c.send("x", [(320, "il1"), (559, "4")])
    msg = c.expect("y")
    out: dict[str, dict[int, str]] = {}
    entry: dict[int, str] | None = None
    for tag, value in msg.pairs:
        t, v = int(tag), value.decode()
        if t == 55:
            entry = out[v] = {}
        elif entry is not None and t != 10:
            entry[t] = v
    return out


def test_instrument_list_sends_the_lot_step_as_562_and_the_minimum_as_5011(
        sim: VenueSimulator) -> None:
    c = md_client(sim)
    try:
        entries = instrument_list(c)
    finally:
        c.close()
    btc = entries["BTC/USD"]
    assert (btc[562], btc[5011], btc[5010]) == ("0.00000001", "0.0001", "8"), btc
    arb = entries["ARB/USD"]
    assert (arb[562], arb[5011]) == ("0.00000001", "5"), arb
    assert (btc[969], btc[2349], btc[5022]) == ("0.1", "1", "0.1"), btc


# ---- 5: a status answer never overtakes the reports queued after its snapshot --------------

def test_status_answer_is_queued_in_engine_order_with_a_concurrent_fill(
        sim: VenueSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fill lands between the status snapshot and its answer being built: the answer must
    still reach the client before the fill's report (never 150=F, then a stale 150=I New)."""
    c = trading_client(sim)
    try:
        new_order(c, "s1", price="45000.0")
        order_id = report(c, "s1", "0")[37]
        real = sim.face._report
        crossed: list[threading.Thread] = []

        def report_then_cross(o: e.OrderSnapshot, exec_type: str, exec_id: str,
                              ) -> dict[int, str]:
            if exec_type == "I" and not crossed:
                taker = threading.Thread(target=sim.engine.submit, args=(
                    "TAKER", "t1", "BTC/USD", e.Side.SELL, D("0.01"), D("45000.0")))
                crossed.append(taker)
                taker.start()
                taker.join(1.0)  # done at once unless the answer is made under the lock
            return real(o, exec_type, exec_id)

        monkeypatch.setattr(sim.face, "_report", report_then_cross)
        c.send("H", [(11, "s1"), (37, order_id), (54, "1"), (55, "BTC/USD")])
        seen: list[tuple[str, str]] = []
        while len(seen) < 2:
            f = fields_of(c.expect("8", match=lambda f: f.get(37) == order_id))
            seen.append((f[150], f[39]))
        crossed[0].join(5.0)
        assert seen == [("I", "0"), ("F", "2")], seen
    finally:
        c.close()


# ---- 4: reports for a session that never logged on are kept for its resend ----------------

def test_reports_before_the_first_logon_are_resent_when_the_client_asks(
        sim: VenueSimulator) -> None:
    """An order of the client's account placed (over REST, say) before its FIX session ever
    logged on: its reports wait in the session's store, as after a drop, for the resend."""
    sim.engine.submit(OWNER, "early", "BTC/USD", e.Side.BUY, D("0.01"), D("40000.0"))
    sim.engine.cancel(OWNER, "early-x", "early")
    c = RawFixClient("127.0.0.1", sim.trading_port, OWNER, target=TRADING_COMP_ID).connect()
    try:
        logon = fields_of(c.logon(30))
        assert int(logon[34]) == 3, logon  # two reports were stored before it
        c.send("2", [(7, "1"), (16, "0")])
        accepted = report(c, "early", "0")
        canceled = report(c, "early-x", "4")
        assert accepted.get(43) == canceled.get(43) == "Y"
        assert canceled[41] == "early"
    finally:
        c.close()


# ---- 6: Kraken's 8674 CancelOrdersOnDisconnect -----------------------------------------------

def wait_report(c: RawFixClient, match: Callable[[dict[int, str]], bool],
                timeout: float = 5.0) -> dict[int, str]:
    """The first ExecutionReport that matches, skipping whatever comes before it."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        msg = c.recv(left)
        if msg is None:
            if c.closed:
                break
            continue
        f = fields_of(msg)
        if f.get(35) == "8" and match(f):
            return f
    raise AssertionError(f"no matching 35=8 within {timeout} s\n{c.transcript()}")


@pytest.mark.parametrize("flag", ["0", None])
def test_cancel_on_disconnect_cancels_the_session_s_orders_and_resends_the_reports(
        sim: VenueSimulator, flag: str | None) -> None:
    """8674=0, or no 8674 (Kraken's default): when the session drops, the venue cancels the
    orders that session placed (not the account's orders placed elsewhere), and the client
    gets the Canceled reports when it asks for a resend at its next logon."""
    c = trading_client(sim, [] if flag is None else [(8674, flag)])
    try:
        new_order(c, "cod1")
        report(c, "cod1", "0")
        new_order(c, "cod2", qty="0.02", price="39000.0")
        report(c, "cod2", "0")
        sim.engine.submit(OWNER, "rest1", "BTC/USD", e.Side.BUY, D("0.01"), D("38000.0"))
        resume_at = c.send("5")  # the venue's Logout and close follow the rest1 report
        assert c.is_closed(5.0), c.transcript()
        assert wait_for(lambda: {o.cl_ord_id for o in sim.engine.open_orders(OWNER)}
                        == {"rest1"}), sim.engine.open_orders(OWNER)
        status = sim.engine.order_status(OWNER, "cod1")
        assert status is not None and status.status is e.OrdStatus.CANCELED
        # Sent (stored, as the session is down) before the client is back: a resend's.
        assert wait_for(lambda: all(b.pending == 0 for b in sim.face.outboxes.all()))
        time.sleep(0.1)  # the last one taken off the queue is through its send
        c.connect()
        c.logon(30, seq=resume_at + 1)
        c.next_seq = resume_at + 2
        c.send("2", [(7, "1"), (16, "0")])
        for cl in ("cod1", "cod2"):
            f = wait_report(c, lambda f, cl=cl: f.get(11) == cl and f.get(150) == "4")
            assert f[39] == "4" and f.get(43) == "Y", f
            assert "CancelOrdersOnDisconnect" in f[58], f
    finally:
        c.close()


def test_cancel_on_disconnect_1_leaves_the_orders(sim: VenueSimulator) -> None:
    """8674=1 leaves them; and a later session with 8674=0 cancels only its own orders, not
    those an earlier session left resting."""
    c = trading_client(sim, [(8674, "1")])
    try:
        new_order(c, "keep1")
        report(c, "keep1", "0")
        c.logout()
        time.sleep(0.5)
        assert [o.cl_ord_id for o in sim.engine.open_orders(OWNER)] == ["keep1"]
        c.connect()
        c.logon(30, seq=c.next_seq, extra=[(8674, "0")])
        c.next_seq += 1
        new_order(c, "gone1", price="39000.0")
        report(c, "gone1", "0")
        c.send("5")
        assert c.is_closed(5.0), c.transcript()
        assert wait_for(lambda: [o.cl_ord_id for o in sim.engine.open_orders(OWNER)]
                        == ["keep1"]), sim.engine.open_orders(OWNER)
    finally:
        c.close()


# ---- 8: a cancel/replace changes OrderQty and Price only, under a new ClOrdID ---------------

@pytest.mark.parametrize(
    ("cl", "changes", "reason"),
    [
        ("r1", {54: "2"}, "99"),           # another side
        ("r1", {40: "1"}, "99"),           # limit -> market
        ("r1", {59: "3"}, "99"),           # GTC -> IOC
        ("r1", {55: "ETH/USD"}, "99"),     # another book
        ("o1", {}, "6"),                   # 11 == 41: not a new ClOrdID
    ],
)
def test_replace_that_changes_more_than_qty_and_price_is_refused(
        sim: VenueSimulator, cl: str, changes: dict[int, str], reason: str) -> None:
    """Applied as a qty change instead, the client got 150=5 for a "sell" still buying."""
    c = trading_client(sim)
    try:
        new_order(c, "o1", qty="0.02")
        report(c, "o1", "0")
        fields = {11: cl, 41: "o1", 55: "BTC/USD", 54: "1", 60: "20260101-00:00:00.000",
                  38: "0.01", 40: "2", 44: "40000.0", 59: "1", **changes}
        c.send("G", list(fields.items()))
        rej = fields_of(c.expect("9", match=lambda f: f.get(11) == cl))
        assert (rej[102], rej[434], rej[39], rej[41]) == (reason, "2", "0", "o1"), rej
        (o,) = sim.engine.open_orders(OWNER)
        assert (o.cl_ord_id, o.qty, o.side) == ("o1", D("0.02"), e.Side.BUY)
    finally:
        c.close()


# ---- 9: a cancel names the order's Side and Symbol, under a ClOrdID no live order has ---------

@pytest.mark.parametrize(
    ("cl", "changes", "reason"),
    [
        ("x1", {54: "2"}, "99"),           # the other side
        ("x1", {55: "ETH/USD"}, "99"),     # another book
        ("o1", {}, "6"),                   # 11 == 41: the order's own ClOrdID
        ("o2", {}, "6"),                   # another live order's ClOrdID
    ],
)
def test_cancel_with_a_mismatch_or_a_live_cl_ord_id_is_refused(
        sim: VenueSimulator, cl: str, changes: dict[int, str], reason: str) -> None:
    """Accepted, the Canceled report went out under 11=o2, which a client keyed on ClOrdID
    books against its other live order o2."""
    c = trading_client(sim)
    try:
        new_order(c, "o1")
        report(c, "o1", "0")
        new_order(c, "o2", price="39000.0")
        report(c, "o2", "0")
        fields = {11: cl, 41: "o1", 55: "BTC/USD", 54: "1", 38: "0.01",
                  60: "20260101-00:00:00.000", **changes}
        c.send("F", list(fields.items()))
        rej = fields_of(c.expect("9", match=lambda f: f.get(11) == cl))
        assert (rej[102], rej[434], rej[39], rej[41]) == (reason, "1", "0", "o1"), rej
        assert {o.cl_ord_id for o in sim.engine.open_orders(OWNER)} == {"o1", "o2"}
    finally:
        c.close()


# ---- 10: a REST cancel is reported over FIX under the order's own ClOrdID -------------------

def test_a_rest_cancel_is_reported_over_fix_under_the_order_s_own_cl_ord_id(
        sim: VenueSimulator) -> None:
    """Kraken's CancelOrder has no ClOrdID of its own, so the engine's cancel carries one the
    REST face makes up. It went out on the FIX session as 11=_k:cxl1 41=r1, which no client
    sent: the gateway logged an unknown ClOrdID for every REST cancel after a failback. The
    report is an unsolicited cancel of the order now, under its own ClOrdID."""
    rest = SpotRestServer(sim.engine, Accounts([ApiAccount(REST_KEY, REST_SECRET, OWNER)]))
    c = trading_client(sim)
    try:
        placed = private_call(rest, REST_KEY, REST_SECRET, "AddOrder", pair="XBTUSD",
                              type="buy", ordertype="limit", price="40000.0", volume="0.01",
                              cl_ord_id="r1")
        report(c, "r1", "0")
        assert private_call(rest, REST_KEY, REST_SECRET, "CancelOrder",
                            txid=placed["result"]["txid"][0])["error"] == []
        canceled = report(c, "r1", "4")
        assert 41 not in canceled, canceled
        assert not any(e.is_made_up_cl_ord_id(fields_of(msg).get(11, ""))
                       for msg in c.quiet(0.3))
    finally:
        c.close()
        rest.close()
