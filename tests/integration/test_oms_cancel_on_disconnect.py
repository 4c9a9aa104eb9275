"""Cancel-on-disconnect of an OMS session (`[[oms.sessions]] cancel_on_disconnect_s`), over real
processes: a quick return keeps the orders, an absence longer than the setting cancels them at
the venue (the OMS gets the reports when it is back), other sessions are untouched, the
gateway's own stop cancels nothing, and after a restart an OMS that does not come back is
treated as gone."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

from tests.conftest import Oms
from tests.procs import GatewayProcess, VenueStack

COD_S = 4.0  # well above an OMS logout + logon, even on a loaded machine


def status(gw: GatewayProcess, cl: str) -> str:
    r = gw.fixgwctl("order", cl, "--json")
    assert r.returncode == 0, r.stderr
    (order,) = json.loads(r.stdout)
    return str(order["status"])


def cancels_metric(gw: GatewayProcess) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}/metrics",
                                  timeout=5).read().decode()
    m = re.search(r'^fixgw_gateway_cancels_total\{by="cancel_on_disconnect",'
                  r'session="FIXGW->OMS"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_an_oms_gone_too_long_has_its_orders_canceled(tmp_path: Path) -> None:
    with VenueStack(tmp_path) as v:
        gw = v.gateway(oms_comp_ids=("OMS", "OMS2"),
                       session_toml={"OMS": f"cancel_on_disconnect_s = {COD_S}"})
        oms, oms2 = v.oms(), v.oms("OMS2")
        cl = oms.buy("0.01", "1000.0")
        oms.report(cl, "0")
        other = oms2.buy("0.01", "1001.0")
        oms2.report(other, "0")

        # Back within the setting: nothing is canceled.
        oms.c.stop()
        oms = v.oms()
        time.sleep(COD_S + 1.0)
        assert status(gw, cl) == "New"

        # Gone longer: canceled at the venue; the other desk's order stays.
        mark = len(gw.err.lines)
        oms.c.stop()
        gw.err.wait_for(r"cancel on disconnect: FIXGW->OMS logged out or lost its connection, "
                        r"down for \d+s: 1 open order\(s\), cancel sent for 1", 10, start=mark)
        deadline = time.monotonic() + 10
        while status(gw, cl) != "Canceled":
            assert time.monotonic() < deadline, "order not canceled"
            time.sleep(0.2)
        assert status(gw, other) == "New"
        assert cancels_metric(gw) == 1

        # The OMS gets the report when it is back, through its session's resend.
        oms = v.oms()
        er = oms.expect(lambda r: r.msg_type == "8" and r.fields.get(41) == cl
                        and r.fields.get(150) == "4")
        assert er.fields[11].startswith("COD-") and er.fields[39] == "4"


def test_the_gateways_own_stop_cancels_nothing_and_an_absent_oms_counts_after_a_restart(
        tmp_path: Path) -> None:
    with VenueStack(tmp_path) as v:
        gw = v.gateway(session_toml={"OMS": f"cancel_on_disconnect_s = {COD_S}"})
        oms: Oms = v.oms()
        cl = oms.buy("0.01", "1002.0")
        oms.report(cl, "0")
        assert gw.stop() == 0  # logs the OMS out itself: not an OMS going away
        assert "cancel on disconnect" not in gw.err.text()
        oms.c.stop()
        v.clients.remove(oms)

        gw.start()
        assert status(gw, cl) == "New"  # at the venue still, until the OMS stays away
        gw.err.wait_for(r"cancel on disconnect: FIXGW->OMS has not logged on since the gateway "
                        r"started, down for \d+s: 1 open order\(s\), cancel sent for 1", 10)
        deadline = time.monotonic() + 10
        while status(gw, cl) != "Canceled":
            assert time.monotonic() < deadline, "order not canceled"
            time.sleep(0.2)
