"""TradingSessionStatus (35=h) for the OMS: can its new orders reach the venue now?

Kraken answers TradingSessionStatusRequest (35=g) itself, but an OMS behind the gateway asks
the gateway, and what it needs is the gateway's view: is there a route to the venue (FIX, or
the fallback), is the kill switch on, is the venue in its daily rollover. TradSesStatus (340):
2 Open (new orders go out), 1 Halted (kill switch: every new order is rejected), 3 Closed (no
route: new orders are rejected, or held where a fallback is configured); Text says which.

SubscriptionRequestType (263) 0 answers once, 1 also sends an unsolicited 35=h (325=Y) each
time the status changes, 2 ends the subscription (no answer); a snapshot request leaves a
subscription running. `poll` notices changes (the gateway calls it twice a second), so
nothing that changes the status has to know about subscribers; a subscription ends with its
OMS session's logout.

Threads: requests come on the OMS sessions' threads, `poll` on its own, `drop` from a logout
callback that may hold the session's mutex; the lock only guards the table, and nothing is sent
while holding it.

May import: gateway.fix.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import quickfix as fix

from gateway.fix import messages as m

TRAD_SES_REQ_ID = 335
TRADING_SESSION_ID = 336
TRAD_SES_STATUS = 340
UNSOLICITED_INDICATOR = 325
SUBSCRIPTION_REQUEST_TYPE = 263

OPEN, HALTED, CLOSED = "2", "1", "3"
#: The TradingSessionID when the OMS names none: crypto trades around the clock in one session.
DEFAULT_SESSION_ID = "CONTINUOUS"

Status = tuple[str, str]  # (TradSesStatus, Text)


@dataclass
class _Subscription:
    send: Callable[[fix.Message], None]
    req_id: str
    session_id: str
    sent: Status | None = None  # the status this subscriber was last told


class TradingStatusFeed:
    def __init__(self, status: Callable[[], Status]) -> None:
        """`status()` is the gateway's current (TradSesStatus, Text)."""
        self._status = status
        self._lock = threading.Lock()
        self._subs: dict[str, _Subscription] = {}

    def on_request(self, oms_session: str, send: Callable[[fix.Message], None],
                   f: m.Fields) -> None:
        req_id, kind = f["335"], f["263"]
        now = self._status()
        sub = _Subscription(send, req_id, f.get("336") or DEFAULT_SESSION_ID, now)
        with self._lock:
            if kind == "1":
                self._subs[oms_session] = sub
            elif kind == "2":
                self._subs.pop(oms_session, None)  # a snapshot (0) leaves a subscription be
        if kind != "2":
            send(self._message(sub, now, unsolicited=False))

    def drop(self, oms_session: str) -> None:
        with self._lock:
            self._subs.pop(oms_session, None)

    def poll(self) -> None:
        """Send the status to each subscriber it differs from what that one was last told."""
        now = self._status()
        with self._lock:
            due = [sub for sub in self._subs.values() if sub.sent != now]
            for sub in due:
                sub.sent = now
        for sub in due:
            sub.send(self._message(sub, now, unsolicited=True))

    @staticmethod
    def _message(sub: _Subscription, status: Status, unsolicited: bool) -> fix.Message:
        h = m.new_message("h")
        h.setField(TRAD_SES_REQ_ID, sub.req_id)
        h.setField(TRADING_SESSION_ID, sub.session_id)
        if unsolicited:
            h.setField(UNSOLICITED_INDICATOR, "Y")
        h.setField(TRAD_SES_STATUS, status[0])
        h.setField(m.TEXT, status[1])
        return h
