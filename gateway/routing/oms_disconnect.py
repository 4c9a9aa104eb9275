"""Cancel-on-disconnect for OMS sessions (``[[oms.sessions]] cancel_on_disconnect_s``).

A desk that turns it on wants no order of its resting at the venue while its OMS is away: when
its session has been down for that many seconds (it logged out, its connection dropped, or it
has not logged on since the gateway started), the gateway cancels the session's open orders
the way the kill switch does (`Router.cancel_each_unasked`, by ``cancel_on_disconnect``: an
order with a cancel on its way already, its OMS's own say, gets no second one). The OMS
gets the Canceled reports when it is back, through its session's normal resend. Logging on in
time disarms it. A cancel that could not be sent (no venue transport up) is tried again every
`retry_s` while the session stays down.

Threads: armed and disarmed from QuickFIX's logon/logout callbacks, which may hold the
session's mutex, so both only take this object's own lock and start or cancel a timer; the
cancels run on the timer's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.orders.model import Order

log = logging.getLogger("fixgw.routing")

BY = "cancel_on_disconnect"


@dataclass
class _Watch:
    delay_s: float
    generation: int = 0
    timer: threading.Timer | None = None
    down_since: float = 0.0


class OmsDisconnectCanceller:
    def __init__(self, open_orders: Callable[[str], list[Order]],
                 cancel_each: Callable[[list[Order], str, str, str],
                                       tuple[int, list[str], list[str]]],
                 retry_s: float = 5.0) -> None:
        """`open_orders(session)` lists a session's open orders; `cancel_each(orders, prefix,
        by, why)` is `Router.cancel_each_unasked` ((sent, "<ClOrdID>: why not" for those not
        sent, "<ClOrdID>: <its cancel on its way>" for those skipped))."""
        self._open_orders = open_orders
        self._cancel_each = cancel_each
        self.retry_s = retry_s
        self._lock = threading.Lock()
        self._watch: dict[str, _Watch] = {}
        self._closed = False

    def watch(self, session: str, delay_s: float) -> None:
        """Cancel `session`'s open orders once it has been down for `delay_s` seconds."""
        self._watch[session] = _Watch(delay_s)

    def watches(self, session: str) -> bool:
        return session in self._watch

    def down(self, session: str, why: str) -> None:
        """The session is down (logged out, disconnected, or not logged on yet): arm."""
        w = self._watch.get(session)
        if w is None:
            return
        with self._lock:
            if self._closed or w.timer is not None:
                return  # armed already: the first moment it went down counts
            w.generation += 1
            w.down_since = time.monotonic()
            self._arm(session, w, w.delay_s, why)

    def up(self, session: str) -> None:
        """The session logged on: disarm (a cancel already sent stays sent)."""
        w = self._watch.get(session)
        if w is None:
            return
        with self._lock:
            w.generation += 1
            if w.timer is not None:
                w.timer.cancel()
                w.timer = None

    def close(self) -> None:
        """No more cancels: the gateway is stopping and logs every session out itself."""
        with self._lock:
            self._closed = True
            for w in self._watch.values():
                if w.timer is not None:
                    w.timer.cancel()
                    w.timer = None

    def _arm(self, session: str, w: _Watch, delay_s: float, why: str) -> None:
        t = threading.Timer(delay_s, self._fire, (session, w.generation, why))
        t.daemon = True
        t.name = f"cancel-on-disconnect {session}"
        w.timer = t
        t.start()

    def _fire(self, session: str, generation: int, why: str) -> None:
        w = self._watch[session]
        with self._lock:
            if self._closed or generation != w.generation:
                return  # back in time, or stopping
            away = time.monotonic() - w.down_since
        orders = self._open_orders(session)
        text = f"cancel on disconnect: {session} {why}, down for {away:.0f}s"
        sent, failed, already = self._cancel_each(orders, "COD", BY, text)
        if orders:
            log.warning("%s: %d open order(s), cancel sent for %d%s%s", text, len(orders), sent,
                        f"; {len(already)} had a cancel on its way already" if already else "",
                        f"; not sent: {'; '.join(failed[:5])}" if failed else "")
        with self._lock:
            if generation != w.generation or self._closed:
                return
            w.timer = None
            if failed:
                log.warning("cancel on disconnect: trying %s's %d order(s) again in %gs",
                            session, len(failed), self.retry_s)
                self._arm(session, w, self.retry_s, why)
