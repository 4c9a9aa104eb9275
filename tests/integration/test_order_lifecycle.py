"""Order lifecycle through the gateway, over real FIX sessions: OMS -> gateway -> simulator."""

from __future__ import annotations

import re

from tests.conftest import Oms, new_id

# Prices far from each other per test so resting orders of one test never cross another's.


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


def test_replace_then_fill_reports_new_clordid(oms: Oms, maker: Oms) -> None:
    cl = oms.buy("0.5", "33000.0")
    oms.report(cl, "0")
    rcl = new_id("R")
    oms.send("G", [(11, rcl), (41, cl), (55, "BTC/USD"), (54, "1"), (38, "0.3"), (40, "2"),
                   (44, "33100.0"), (60, "20260101-00:00:00")])
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


def test_status_of_unknown_order(oms: Oms) -> None:
    cl = new_id("U")
    oms.send("H", [(11, cl), (55, "BTC/USD"), (54, "1")])
    r = oms.report(cl, "I")
    assert r.fields[39] == "8"
    assert "unknown order" in r.fields[58]


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
    rcl = new_id("R")
    oms.send("G", [(11, rcl), (41, cl), (55, "BTC/USD"), (54, "1"), (38, "0.1"), (40, "2"),
                   (44, "36000.0"), (60, "20260101-00:00:00")])
    r = oms.expect(lambda r: r.msg_type == "9" and r.fields.get(11) == rcl)
    assert r.fields[102] == "0" and r.fields[434] == "2"
    assert "Filled" in r.fields[58]
