"""A REST CancelOrder whose every attempt goes unanswered (the first one lands, its answer and
the retries' answers all come after the client's timeout): the OMS's 35=9 says the outcome is
unknown and what to do, not just the transport's error text, and the cancel that did land is
reported by the next poll.

The gateway's router and REST fallback in process against the simulator's spot REST face on
loopback (only the OMS FIX session is replaced by a recorder).
"""

from __future__ import annotations

from tests.integration.test_failover_amend import World, _place, world

__all__ = ["world"]


def test_unanswered_rest_cancel_is_refused_as_outcome_unknown(world: World) -> None:
    w = world
    txid = _place(w, "K1")
    w.server.set_delay(0.8, after=True, path_prefix="/0/private/CancelOrder")
    w.oms("F", [(11, "K2"), (41, "K1"), (55, "BTC/USD"), (54, "1"), (38, "0.02"),
                (60, "20260101-00:00:00")])
    (rej,) = w.reports("K2")
    assert rej[35] == "9" and rej[434] == "1" and rej[102] == "2"
    assert rej[58].startswith("REST fallback: cancel outcome unknown (transport: ")
    assert rej[58].endswith("send it again if the order is not reported canceled")
    assert w.server.request_count("/0/private/CancelOrder") == 4  # the client's attempts
    w.server.set_delay(0)
    w.fallback.poll()
    (canceled,) = [r for r in w.reports("K1") if r.get(150) == "4"]
    assert canceled[37] == txid and canceled[39] == "4"
