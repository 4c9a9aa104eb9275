"""The simulator's FIX face keeps Kraken's cancel scope (kraken-api.md, "Cancel scope: a single
OrderCancelRequest only affects orders placed on the same FIX session. Use
OrderMassCancelRequest or REST for others."), over a real simulator process: a single cancel
or cancel/replace of an order the account placed over REST, or that another session placed,
is refused as an unknown order; a status request still finds it and a mass cancel still
cancels it. Without this the gateway's FIX cancels of orders its REST fallback placed would
pass here and fail at the venue."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from gateway.kraken.auth import NonceSource
from gateway.transports.kraken_spot_rest import KrakenSpotRest
from tests.conftest import Oms, make_client, new_id, order_fields
from tests.procs import Credentials, SimProcess, stop_all


def _cancel(cl: str, orig: str, order_id: str) -> list[tuple[int, str]]:
    return [(11, cl), (41, orig), (37, order_id), (55, "BTC/USD"), (54, "1"), (38, "0.01"),
            (60, "20260101-00:00:00")]


def test_single_cancel_and_replace_reach_only_the_sessions_own_orders(tmp_path: Path) -> None:
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds, clients=("FIXGW", "MAKER"))
    clients: list[Oms] = []
    try:
        gw = Oms(make_client(tmp_path, sim.trading_port, "FIXGW", "KRAKEN-TRD", creds))
        maker = Oms(make_client(tmp_path, sim.trading_port, "MAKER", "KRAKEN-TRD", creds))
        for c in (gw, maker):
            c.c.start()
            clients.append(c)
        rest = KrakenSpotRest(f"http://127.0.0.1:{sim.spot_rest_port}", creds.api_key,
                              creds.api_secret, NonceSource())

        # An order of the same account placed over REST: the venue's FIX session reports it
        # (the account's orders are reported there), but a single cancel over FIX cannot reach
        # it, by OrigClOrdID and OrderID alike.
        rest_cl = new_id("REST")
        txid = rest.add_order("BTC/USD", "buy", "limit", Decimal("0.01"), Decimal("30000"),
                              "GTC", rest_cl).txid
        assert txid is not None
        x1 = new_id("X")
        gw.send("F", _cancel(x1, rest_cl, txid))
        rej = gw.expect(lambda r: r.msg_type == "9" and r.fields.get(11) == x1)
        assert (rej.fields[102], rej.fields[39], rej.fields[434]) == ("1", "8", "1")
        assert rej.fields[58] == "EOrder:Unknown order"
        # Nor a cancel/replace.
        r1 = new_id("R")
        gw.send("G", [(11, r1), (41, rest_cl), (37, txid), (55, "BTC/USD"), (54, "1"),
                      (38, "0.02"), (40, "2"), (44, "30000"), (59, "1"),
                      (60, "20260101-00:00:00")])
        rej = gw.expect(lambda r: r.msg_type == "9" and r.fields.get(11) == r1)
        assert (rej.fields[102], rej.fields[39], rej.fields[434]) == ("1", "8", "2")
        # A status request is not scoped: it finds the order, untouched.
        gw.send("H", [(11, rest_cl), (37, txid), (55, "BTC/USD"), (54, "1")])
        st = gw.expect(lambda r: r.msg_type == "8" and r.fields.get(150) == "I")
        assert (st.fields[37], st.fields[39], Decimal(st.fields[38])) == (txid, "0",
                                                                          Decimal("0.01"))

        # The session's own order: replaced and canceled over FIX as ever. Another account's
        # session cannot cancel it.
        own = new_id("B")
        gw.send("D", order_fields(own, "1", "0.01", "29000"))
        own_id = gw.report(own, "0").fields[37]
        own2 = new_id("R")
        gw.send("G", [(11, own2), (41, own), (55, "BTC/USD"), (54, "1"), (38, "0.02"),
                      (40, "2"), (44, "29000"), (59, "1"), (60, "20260101-00:00:00")])
        gw.report(own2, "5")
        xm = new_id("X")
        maker.send("F", _cancel(xm, own2, own_id))
        rej = maker.expect(lambda r: r.msg_type == "9" and r.fields.get(11) == xm)
        assert rej.fields[102] == "1"
        x2 = new_id("X")
        gw.send("F", _cancel(x2, own2, own_id))
        assert gw.report(x2, "4").fields[41] == own2

        # A mass cancel covers every order of the account, the REST one included.
        mq = new_id("Q")
        gw.send("q", [(11, mq), (530, "7"), (60, "20260101-00:00:00")])
        cx = gw.report(mq, "4")
        assert (cx.fields[37], cx.fields[41]) == (txid, rest_cl)
        mr = gw.expect(lambda r: r.msg_type == "r" and r.fields.get(11) == mq)
        assert mr.fields[533] == "1"
        assert rest.query_orders([txid])[txid].status == "canceled"
    finally:
        try:
            stop_all([cl.c.stop for cl in clients])
        finally:
            sim.stop()
