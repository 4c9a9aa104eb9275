"""A venue that acknowledges the private executions subscription and drops the socket at once,
over and over: the client's reconnects still back off exponentially. A connection counted as
healthy once it had delivered data, so each of these reset the backoff and the client came
back every ~0.2 s for as long as the venue did it, each time with a REST GetWebSocketsToken
call, which filled the REST counter that order lookups and the reconciliation before failback
wait on. A connection that outlives the heartbeat deadline still resets it.

The gateway's WS v2 client against the simulator's spot WS face on loopback; the face is made
to drop each connection right after its executions acknowledgement (the simulator has no such
fault of its own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.transports.kraken_ws import KrakenWsPrivate
from gateway.venue_sim.accounts import Accounts
from gateway.venue_sim.engine import MatchingEngine
from gateway.venue_sim.spot_ws import SpotWsServer
from tests.spot_ws.test_spot_ws import wait_until

OWNER = "FIXGW"


def test_connections_dropped_right_after_the_subscription_back_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    accounts = Accounts()
    face = SpotWsServer(MatchingEngine(seed=5), accounts, heartbeat_interval=0.2)
    real = face._subscribe

    def flap(conn: Any, params: Any, reply: Callable[..., None]) -> None:
        real(conn, params, reply)
        if params.get("channel") == "executions":
            conn.out.put_nowait(None)  # the ack goes out, then the venue closes the socket

    monkeypatch.setattr(face, "_subscribe", flap)
    face.start()
    tokens: list[str] = []

    def token() -> str:
        tokens.append(accounts.issue_token(OWNER))
        return tokens[-1]

    p = KrakenWsPrivate(face.url, token, lambda _: None, backoff_initial=0.02,
                        backoff_max=10.0, heartbeat_timeout=5.0)
    p.start()
    try:
        wait_until(lambda: p.connects >= 6, what="six connections")
        # 0.02 doubled after each of at least five short-lived connections.
        assert p.backoff_s >= 0.02 * 2 ** 5
        assert len(tokens) >= 6
    finally:
        p.stop()
        face.stop()
