"""Order lifecycle through the gateway, over real FIX sessions: OMS -> gateway -> simulator."""

from __future__ import annotations

import re

from gateway.fix.client import Received
from tests.conftest import Oms, new_id, order_fields

# Prices far from each other per test so resting orders of one test never cross another's.


def replace(oms: Oms, orig: str, qty: str, price: str, *extra: tuple[int, str],
            symbol: str = "BTC/USD") -> str:
    """Send an OrderCancelReplaceRequest (a limit buy) for `orig`; returns its ClOrdID."""
    rcl = new_id("R")
    oms.send("G", [(11, rcl), (41, orig), (55, symbol), (54, "1"), (38, qty), (40, "2"),
                   (44, price), *extra, (60, "20260101-00:00:00")])
    return rcl


def cancel_reject(oms: Oms, cl: str) -> Received:
    return oms.expect(lambda r: r.msg_type == "9" and r.fields.get(11) == cl)


def test_new_order_acknowledged_with_oms_clordid_and_venue_orderid(oms: Oms) -> None:
    cl = oms.buy("0.01", "30000.0")
    r = oms.report(cl, "0")
    assert r.fields[39] == "0"
    assert r.fields[55] == "BTC/USD"
    assert re.fullmatch(r"O[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{6}", r.fields[37])
    assert r.fields[151] == "0.01000000"


def test_partial_fill_then_fill(oms: Oms, maker: Oms) -> None:
    cl = oms.buy("1", "31000.0")
    oms.report(cl, "0")
    m1 = maker.sell("0.4", "31000.0")
    maker.report(m1, "0")
    r = oms.report(cl, "F")
    assert r.fields[39] == "1"
    assert r.fields[32] == "0.40000000" and r.fields[31] == "31000.0"
    assert r.fields[14] == "0.40000000" and r.fields[151] == "0.60000000"
    m2 = maker.sell("0.6", "31000.0")
    maker.report(m2, "0")
    r = oms.report(cl, "F")
    assert r.fields[39] == "2"
    assert r.fields[14] == "1.00000000" and r.fields[151] == "0.00000000"
    assert r.fields[6] == "31000.0"


def test_cancel(oms: Oms) -> None:
    cl = oms.buy("0.02", "32000.0")
    oms.report(cl, "0")
    ccl = new_id("X")
    oms.send("F", [(11, ccl), (41, cl), (55, "BTC/USD"), (54, "1"), (38, "0.02"),
                   (60, "20260101-00:00:00")])
    r = oms.report(ccl, "4")
    assert r.fields[41] == cl
    assert r.fields[39] == "4"
    # A closed order's status comes from the gateway's record, not the venue, which may have
    # forgotten it (its "unknown order" would read as Rejected).
    oms.send("H", [(11, cl), (55, "BTC/USD"), (54, "1")])
    st = oms.report(cl, "I")
    assert st.fields[39] == "4"
    assert st.fields[58] == "from the gateway's record: the order is closed"


def test_replace_then_fill_reports_new_clordid(oms: Oms, maker: Oms) -> None:
    cl = oms.buy("0.5", "33000.0")
    oms.report(cl, "0")
    rcl = replace(oms, cl, "0.3", "33100.0")
    r = oms.report(rcl, "5")
    assert r.fields[41] == cl
    assert r.fields[38] == "0.30000000" and r.fields[44] == "33100.0"
    mk = maker.sell("0.3", "33100.0")
    maker.report(mk, "0")
    f = oms.report(rcl, "F")
    assert f.fields[39] == "2" and f.fields[14] == "0.30000000"


def test_status_request(oms: Oms) -> None:
    cl = oms.buy("0.03", "34000.0")
    oms.report(cl, "0")
    oms.send("H", [(11, cl), (55, "BTC/USD"), (54, "1")])
    r = oms.report(cl, "I")
    assert r.fields[39] == "0" and r.fields[151] == "0.03000000"
    assert 790 not in r.fields
    # OrdStatusReqID is echoed (FIX 4.4), on the venue's answer and on the gateway's own.
    oms.send("H", [(11, cl), (55, "BTC/USD"), (54, "1"), (790, "ASK-1")])
    assert oms.report(cl, "I").fields[790] == "ASK-1"
    unknown = new_id("U")
    oms.send("H", [(11, unknown), (55, "BTC/USD"), (54, "1"), (790, "ASK-2")])
    assert oms.report(unknown, "I").fields[790] == "ASK-2"


def test_status_of_unknown_order(oms: Oms) -> None:
    cl = new_id("U")
    oms.send("H", [(11, cl), (55, "BTC/USD"), (54, "1")])
    r = oms.report(cl, "I")
    assert r.fields[39] == "8"
    assert "unknown order" in r.fields[58]


def mass_status(oms: Oms, req_type: str, *extra: tuple[int, str]) -> list[Received]:
    """Send an OrderMassStatusRequest and collect its reports up to LastRptRequested=Y."""
    req = new_id("MS")
    oms.send("AF", [(584, req), (585, req_type), *extra])
    out = [oms.expect(lambda r: r.msg_type == "8" and r.fields.get(584) == req)]
    while out[-1].fields.get(912) != "Y":
        out.append(oms.expect(lambda r: r.msg_type == "8" and r.fields.get(584) == req))
    return out


def test_mass_status_reports_every_open_order_of_the_session(oms: Oms, maker: Oms) -> None:
    arb = oms.buy("10", "0.05", symbol="ARB/USD")
    oms.report(arb, "0")
    eth = oms.sell("0.2", "9000.0", symbol="ETH/USD")
    oms.report(eth, "0")
    filled = oms.buy("0.01", "36000.0")
    oms.report(filled, "0")
    mk = maker.sell("0.01", "36000.0")
    maker.report(mk, "0")
    assert oms.report(filled, "F").fields[39] == "2"

    every = mass_status(oms, "7")
    assert all(r.fields[150] == "I" and r.fields[911] == str(len(every)) for r in every)
    assert [r.fields.get(912) for r in every] == [None] * (len(every) - 1) + ["Y"]
    by_cl = {r.fields[11]: r for r in every}
    assert {arb, eth} <= set(by_cl) and filled not in by_cl
    a = by_cl[arb]
    assert (a.fields[39], a.fields[55], a.fields[54], a.fields[40], a.fields[44]) == (
        "0", "ARB/USD", "1", "2", "0.05")
    # OrderQty as the OMS sent it; LeavesQty and CumQty as the venue last reported them.
    assert (a.fields[38], a.fields[151], a.fields[14]) == ("10", "10.00000000", "0.00000000")
    assert re.fullmatch(r"O[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{6}", a.fields[37])

    sells = mass_status(oms, "7", (54, "2"))
    assert eth in {r.fields[11] for r in sells} and all(r.fields[54] == "2" for r in sells)
    (only,) = mass_status(oms, "1", (55, "ARB/USD"), (54, "1"))
    assert only.fields[11] == arb and only.fields[911] == "1"

    (none,) = mass_status(oms, "1", (55, "ARB/USD"), (54, "2"))
    assert none.fields[911] == "0" and none.fields[39] == "8" and none.fields[37] == "NONE"
    assert "no open order" in none.fields[58]

    for req_type, extra, reason, says in (("8", [], "0", "not supported"),
                                          ("1", [], "5", "requires Symbol")):
        req = new_id("MS")
        oms.send("AF", [(584, req), (585, req_type), *extra])
        rej = oms.expect(lambda r, req=req: r.msg_type == "j" and r.fields.get(379) == req)
        assert rej.fields[372] == "AF" and rej.fields[380] == reason and says in rej.fields[58]


def test_mass_cancel_only_this_sessions_orders(oms: Oms) -> None:
    a = oms.buy("0.01", "35000.0", symbol="BTC/USD")
    b = oms.buy("0.1", "1500.00", symbol="ETH/USD")
    oms.report(a, "0")
    oms.report(b, "0")
    mcl = new_id("M")
    oms.send("q", [(11, mcl), (530, "7"), (60, "20260101-00:00:00")])
    rep = oms.expect(lambda r: r.msg_type == "r" and r.fields.get(11) == mcl)
    assert rep.fields[531] == "7"
    assert int(rep.fields[533]) >= 2
    seen = set()
    for _ in range(int(rep.fields[533])):
        r = oms.expect(lambda r: r.msg_type == "8" and r.fields.get(150) == "4"
                       and r.fields.get(11) == mcl, timeout=10)
        seen.add(r.fields[41])
    assert {a, b} <= seen


def test_cancel_unknown_order_gets_cancel_reject(oms: Oms) -> None:
    ccl = new_id("X")
    oms.send("F", [(11, ccl), (41, "NEVER-SENT"), (55, "BTC/USD"), (54, "1"), (38, "1"),
                   (60, "20260101-00:00:00")])
    r = oms.expect(lambda r: r.msg_type == "9" and r.fields.get(11) == ccl)
    assert r.fields[102] == "1" and r.fields[434] == "1" and r.fields[39] == "8"
    assert "NEVER-SENT" in r.fields[58]


def test_replace_of_filled_order_is_too_late(oms: Oms, maker: Oms) -> None:
    mk = maker.sell("0.05", "36000.0")
    maker.report(mk, "0")
    cl = oms.buy("0.05", "36000.0")
    oms.report(cl, "F")
    rcl = replace(oms, cl, "0.1", "36000.0")
    r = cancel_reject(oms, rcl)
    assert r.fields[102] == "0" and r.fields[434] == "2"
    assert "Filled" in r.fields[58]


def test_replace_may_not_change_time_in_force(oms: Oms) -> None:
    """Kraken amends quantity and price only: another TimeInForce is refused with a reason, not
    dropped without a word."""
    cl = oms.buy("0.01", "37000.0")
    oms.report(cl, "0")
    rcl = replace(oms, cl, "0.02", "37000.0", (59, "3"))
    rej = cancel_reject(oms, rcl)
    assert rej.fields[41] == cl and rej.fields[434] == "2"
    assert "not Side, OrdType or TimeInForce" in rej.fields[58]


def test_a_mass_cancel_clordid_is_unique_like_any_other(oms: Oms) -> None:
    """A mass cancel may not reuse a ClOrdID of this session, and its own stays used."""
    cl = oms.buy("10", "0.04", symbol="ARB/USD")
    oms.report(cl, "0")
    oms.send("q", [(11, cl), (530, "1"), (55, "ARB/USD"), (60, "20260101-00:00:00")])
    rep = oms.expect(lambda r: r.msg_type == "r" and r.fields.get(11) == cl)
    assert rep.fields[531] == "0" and "duplicate ClOrdID" in rep.fields[58]
    mcl = new_id("M")
    oms.send("q", [(11, mcl), (530, "1"), (55, "ARB/USD"), (60, "20260101-00:00:00")])
    rep = oms.expect(lambda r: r.msg_type == "r" and r.fields.get(11) == mcl)
    assert rep.fields[531] == "1"
    assert oms.expect(lambda r: r.msg_type == "8" and r.fields.get(41) == cl).fields[150] == "4"
    oms.send("D", order_fields(mcl, "1", "10", "0.04", symbol="ARB/USD"))
    rej = oms.report(mcl, "8")
    assert rej.fields[103] == "6" and "duplicate ClOrdID" in rej.fields[58]


def test_cancel_or_replace_must_name_the_orders_symbol_and_side(oms: Oms) -> None:
    """FIX 4.4 has a cancel or replace repeat the order's Side and Instrument. One that names
    another (here ETH/USD for a BTC/USD order: a re-price at an ETH price would cross the BTC
    book) is refused, and the order is left as it was."""
    cl = oms.buy("0.01", "31000.0")
    oms.report(cl, "0")
    rcl = replace(oms, cl, "0.01", "3000.0", symbol="ETH/USD")
    rej = cancel_reject(oms, rcl)
    assert rej.fields[434] == "2" and rej.fields[102] == "2"
    assert rej.fields[58] == "Symbol ETH/USD is not the order's (BTC/USD); request not sent"
    ccl = new_id("X")
    oms.send("F", [(11, ccl), (41, cl), (55, "BTC/USD"), (54, "2"), (38, "0.01"),
                   (60, "20260101-00:00:00")])
    rej = cancel_reject(oms, ccl)
    assert rej.fields[434] == "1" and "Side 2 is not the order's (1, buy)" in rej.fields[58]
    oms.send("H", [(11, cl), (55, "BTC/USD"), (54, "1")])
    st = oms.report(cl, "I")
    assert st.fields[39] == "0" and st.fields[44] == "31000.0"
