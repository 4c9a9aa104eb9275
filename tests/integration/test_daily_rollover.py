"""The venue's daily rollover, end to end: Kraken logs its FIX sessions out at 22:00 UTC, takes
no logon for about 30 s, and both sides start again from sequence number 1. Here the simulator
and the gateway are both given a rollover a few seconds ahead (as the embedded venue of
`fixgw run` gets the gateway's own `[schedule]`); the OMS session keeps its own schedule,
non-stop by default (`[oms] schedule`), through it. A fill while the sessions are down is
reported in the old venue session, which no resend reaches after the reset: the gateway asks
the venue about its open orders after the first logon of a new session."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from gateway.config.model import ScheduleConfig
from gateway.kraken.auth import NonceSource
from gateway.transports.kraken_spot_rest import KrakenSpotRest
from tests.conftest import Oms, make_client, new_id
from tests.procs import Credentials, GatewayProcess, SimProcess, stop_all

ROLLOVER_S = 4


def _seqnums(store_dir: Path, target: str) -> tuple[int, int]:
    """(next sender, next target) MsgSeqNum of FIXGW->target in a QuickFIX FileStore."""
    text = (store_dir / f"FIX.4.4-FIXGW-{target}.seqnums").read_text()
    sender, target_seq = re.findall(r"\d+", text)
    return int(sender), int(target_seq)


def _health(gw: GatewayProcess) -> dict[str, object]:
    """`fixgwctl health --json`, as ops' monitoring runs it."""
    r = gw.fixgwctl("health", "--json")
    assert r.returncode in (0, 1), r.stderr
    health: dict[str, object] = json.loads(r.stdout)
    return health


def test_rollover_resets_the_venue_sessions_and_keeps_the_orders(tmp_path: Path) -> None:
    creds = Credentials()
    bot_secret = base64.b64encode(secrets.token_bytes(64)).decode()
    accounts = tmp_path / "accounts.toml"  # another trader, on the venue's REST face
    accounts.write_text('[[accounts]]\napi_key = "bot"\napi_secret = { env = "BOT_SECRET" }\n')
    reset = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
    at = reset.strftime("%H:%M:%S")
    sim = SimProcess(tmp_path / "sim", creds, accounts_file=accounts,
                     env={"BOT_SECRET": bot_secret},
                     schedule=ScheduleConfig(reset_time_utc=reset.time(), rollover_s=ROLLOVER_S))
    bot = KrakenSpotRest(f"http://127.0.0.1:{sim.spot_rest_port}", "bot", bot_secret,
                         NonceSource())
    gw = oms = None
    try:
        gw = GatewayProcess(tmp_path / "gw", sim, creds,
                            schedule_toml=f"reset_time_utc = {at}\nrollover_s = {ROLLOVER_S}")
        oms = Oms(make_client(tmp_path, gw.oms_port, "OMS", "FIXGW"))
        oms.c.start()
        resting = oms.buy("0.01", "30000.0")  # an empty book: it rests across the rollover
        assert oms.report(resting, "0").fields[39] == "0"
        filled_meanwhile = oms.buy("0.01", "30010.0")  # the best bid: filled in the rollover
        oms.report(filled_meanwhile, "0")
        for _ in range(3):  # a few more messages each way before the reset
            cl = oms.buy("0.01", "30000.0", tif="3")
            oms.report(cl, "4")
        store = gw.data_dir / "var" / "store" / "venue"
        before = _seqnums(store, "KRAKEN-TRD")
        assert min(before) > 5, before
        mark = len(gw.err.lines)
        assert datetime.now(UTC) < reset, "the set-up took longer than the lead time"

        back = (reset + timedelta(seconds=ROLLOVER_S)).strftime("%H:%M:%S")
        gw.err.wait_for(r"venue daily rollover: sessions are down until " + re.escape(back),
                        15, start=mark)
        gw.err.wait_for(r"session FIXGW->KRAKEN-TRD \(venue\): logged_on -> ", 5, start=mark)
        # An order meanwhile (no REST fallback here) is refused, and the Text says why.
        during = oms.buy("0.01", "30000.0")
        text = oms.report(during, "8").fields[58]
        assert f"is not logged on (the venue's daily rollover, until {back} UTC)" in text, text
        # Another trader sells into the best bid while the gateway's session is down.
        bot.add_order("BTC/USD", "sell", "limit", Decimal("0.01"), Decimal("30010"))
        # Ops' health check sees scheduled downtime, not a fault to page anyone for.
        health = _health(gw)
        assert health["healthy"] is True and health["venue_trading_up"] is False, health
        assert health["summary"] == (f"venue daily rollover: sessions down until {back} UTC "
                                     "(scheduled)"), health
        gw.err.wait_for(r"session FIXGW->KRAKEN-TRD \(venue\): \S+ -> logged_on", 30,
                        start=mark)
        # No logon was taken inside the rollover, and both sides began again from 1.
        assert datetime.now(UTC) >= reset + timedelta(seconds=ROLLOVER_S)
        after = _seqnums(store, "KRAKEN-TRD")
        assert max(after) < 5, (before, after)
        for log in (gw.err.text(), sim.err.text()):
            assert "MsgSeqNum too low" not in log
        # The OMS session runs on its own schedule (non-stop): it never went down.
        assert not re.search(r"session FIXGW->OMS \(oms\): logged_on -> ",
                             "\n".join(gw.err.lines[mark:]))
        # The fill no resend could bring is found by asking, and reaches the OMS as the trade
        # report it books fills from (150=F, LastQty/LastPx from the status answer).
        gw.err.wait_for(r"new venue session \(sequence numbers reset\): asking the venue about "
                        r"2 open order\(s\)", 10, start=mark)
        filled = oms.expect(lambda r: r.msg_type == "8" and r.fields.get(11) == filled_meanwhile
                            and r.fields.get(39) == "2")
        assert filled.fields[150] == "F" and Decimal(filled.fields[14]) == Decimal("0.01")
        assert Decimal(filled.fields[32]) == Decimal("0.01"), filled.fields
        assert Decimal(filled.fields[31]) == Decimal("30010"), filled.fields
        assert "session change" in filled.fields[58]

        # The order placed before the rollover is still the gateway's and the venue's.
        ccl = new_id("X")
        oms.send("F", [(11, ccl), (41, resting), (55, "BTC/USD"), (54, "1"), (38, "0.01"),
                       (60, time.strftime("%Y%m%d-%H:%M:%S", time.gmtime()))])
        assert oms.report(ccl, "4").fields[41] == resting
        cl = oms.buy("0.01", "30000.0")
        assert oms.report(cl, "0").fields[39] == "0"
        # The open order's status answer told nothing new: it was not passed on to the OMS.
        assert not any(r.fields.get(11) == resting and r.fields.get(150) == "I"
                       for r in list(oms.c.inbox.queue))
    finally:
        stops = [c for c in (oms.c.stop if oms else None, gw.stop if gw else None) if c]
        try:
            stop_all(stops)
        finally:
            sim.stop()
