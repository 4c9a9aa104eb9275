"""A session is announced "logged_on"/"logged_out" only after its handler has taken the change.

Tests and ops act on the announcement (the log line, the session event): an order sent just
after "logged_out" must find the router already refusing FIX, not a send that fails midway
and rejects an order the fallback would have held.
"""

from __future__ import annotations

import quickfix as fix

from gateway.fix import application as app
from gateway.routing.router import VenueTrading


class _Venue(app.BaseHandler):
    def __init__(self, venue: VenueTrading) -> None:
        self.venue = venue

    def on_logout(self, session_id: fix.SessionID) -> None:
        self.venue.on_logout()


def test_logged_out_is_announced_after_the_router_stops_sending() -> None:
    board = app.StatusBoard()
    venue = VenueTrading()
    seen: list[tuple[str, bool]] = []
    board.listeners.append(lambda st, old, reason: seen.append((st.state, venue.is_up())))
    session = app.SessionApplication(_Venue(venue), "venue", board)
    sid = fix.SessionID("FIX.4.4", "FIXGW", "KRAKEN-TRD")
    session.onCreate(sid)
    venue.logged_on = True  # as after the venue's Logon (no live session in this test)
    session.onLogout(sid)
    assert seen == [("logged_out", False)]
