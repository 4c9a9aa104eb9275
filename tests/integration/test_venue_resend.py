"""A ResendRequest from the venue is answered with a gap fill, never with an old order.

The venue loses the gateway's last messages (the simulator rewinds the sequence it expects)
and asks for them again at the next logon. Resending a stored NewOrderSingle then would put
an order on the book long after the fact, possibly one the OMS was told was rejected ("venue
disconnected while sending"). The gateway's trading session keeps no application messages
(PersistMessages=N), so QuickFIX gap-fills the range; an order the venue never got is found
by the status request made after every logon and sent once, under its own ClOrdID.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import wait_until
from tests.procs import VenueStack


def test_resend_request_is_gap_filled_and_no_order_is_submitted_twice(tmp_path: Path) -> None:
    with VenueStack(tmp_path) as v:
        gw = v.gateway()
        oms = v.oms()
        # Two resting orders (GTC, far below the market): the last messages the venue got.
        first = oms.buy("0.01", "1000.0", tif="1")
        oms.report(first, "0")
        second = oms.buy("0.02", "1001.0", tif="1")
        oms.report(second, "0")

        mark = len(gw.err.lines)
        out_mark = len(gw.out.lines)
        # The venue forgets the gateway's last 3 messages (both orders among them) and asks
        # for them again when the gateway logs back on.
        v.sim.control(cmd="drop_fix", client="FIXGW", refuse_s=1, rewind_target_seq=3)
        gw.err.wait_for(r"KRAKEN-TRD.*-> logged_on", 20, start=mark)
        gw.out.wait_for(r"ResendRequest", 10, start=out_mark)
        gw.out.wait_for(r"(?i)sequencereset|gap ?fill", 10, start=out_mark)

        # The session works on: a new order is acknowledged.
        third = oms.buy("0.03", "1002.0", tif="1")
        oms.report(third, "0")

        counts: dict[str, int] = {}

        def submitted() -> bool:
            counts.clear()
            counts.update({k: int(str(n)) for k, n in
                           dict(v.sim.control(cmd="submission_counts")["counts"]).items()})
            return len(counts) == 3

        wait_until(submitted, 10, "three submissions at the venue")
        # Each order reached the venue exactly once: nothing was resent.
        assert sorted(counts.values()) == [1, 1, 1], counts
