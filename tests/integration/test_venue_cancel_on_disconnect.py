"""Kraken's 8674 CancelOrdersOnDisconnect end to end: with `[venue] cancel_orders_on_disconnect
= true` the gateway logs on with 8674=0, the venue cancels the gateway's resting orders when
it drops the trading session, and the OMS gets the Canceled once the gateway is back (the venue
resends the reports it stored while the session was down)."""

from __future__ import annotations

from pathlib import Path

from tests.procs import VenueStack


def test_venue_cancels_on_disconnect_and_the_oms_hears_of_it_after_the_relogon(
        tmp_path: Path) -> None:
    with VenueStack(tmp_path) as v:
        gw = v.gateway(venue_toml="md_stale_after_s = 3600\ncancel_orders_on_disconnect = true")
        oms = v.oms()
        cl = oms.buy("0.01", "40000.0")
        assert oms.report(cl, "0").fields[39] == "0"
        mark = v.take_fix_down(refuse_s=1.0)
        gw.err.wait_for(r"FIXGW->KRAKEN-TRD \(venue\): \S+ -> logged_on", 30, start=mark)
        try:
            canceled = oms.report(cl, "4", timeout=20)
        except TimeoutError:
            raise AssertionError("no Canceled at the OMS; gateway log:\n"
                                 + gw.err.tail(120)) from None
        assert canceled.fields[39] == "4", canceled.fields
        assert "CancelOrdersOnDisconnect" in canceled.fields.get(58, ""), canceled.fields
        levels = v.sim.control(cmd="levels", symbol="BTC/USD")
        assert levels["bids"] == [], levels
