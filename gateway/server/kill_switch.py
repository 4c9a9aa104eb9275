"""The operator's kill switch's cancels: every open order when an operator turns it on, and
again after each logon of the venue trading session (or move of the order flow to the REST
fallback) while it stays on.

A cancel that cannot be sent when the switch goes on (the venue trading session down and no
REST fallback) would otherwise stay unsent for as long as the switch is on: the order rests at
the venue, the very thing the operator halted trading to prevent. So once the venue is back,
the orders still open are swept again; a restart that finds the switch on (kill-switch.json)
sweeps at its first logon the same way. Every sweep, the operator's first included, skips the
orders a cancel is already on its way for (`Router.cancel_in_flight`: the kill switch's own
from an earlier sweep, an operator's, the OMS's), and says how many: their status stays New
until the venue answers, and a second cancel each would double the traffic to a venue that
is slow already and draw a cancel reject for each once the first has closed the order. A kill
switch set in the config (`[risk] kill_switch = true`) only blocks: nobody asked for its
cancels, so it does not arm the sweeps.

Threads: `on` runs on an admin thread; the logon comes from QuickFIX's callback, which may
hold the session's mutex, so the re-sweep runs on a timer's thread, after the logon exchange
settles (the venue's resend may close orders first), as `Router.reconcile` does. The two
timers race: after a restart the re-sweep may run before the reconcile that sends again the
cancels journaled before the restart and never answered. Such a cancel counts as on its way
from the logon on (`Router.cancel_in_flight`), and the reconcile decides and sends under the
same lock as the sweep's cancels, so either order gives each order one cancel.

May import: gateway.orders, gateway.fix.application (types).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.fix.application import SessionStatus
from gateway.orders.model import Order

log = logging.getLogger("fixgw.gateway")

BY = "kill_switch"


@dataclass(frozen=True)
class SweepResult:
    """One sweep's cancels: how many went out, each order not sent with why, and each order
    skipped because a cancel is on its way for it already (with which)."""

    sent: int = 0
    not_sent: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)


class KillSwitchSweeper:
    def __init__(self, open_orders: Callable[[], list[Order]],
                 cancel_each: Callable[[list[Order], str, str, str],
                                       tuple[int, list[str], list[str]]],
                 is_on: Callable[[], bool], trading_session: str,
                 settle_s: float = 1.0) -> None:
        """`cancel_each(orders, prefix, by, why)` is `Router.cancel_each_unasked` ((sent, why
        each other was not, the cancel on its way for each skipped)); `trading_session` names
        the venue trading session on the status board; `settle_s` is how long after its logon
        the re-sweep waits."""
        self._open_orders = open_orders
        self._cancel_each = cancel_each
        self._is_on = is_on
        self.trading_session = trading_session
        self.settle_s = settle_s
        self._lock = threading.Lock()  # one sweep at a time: two would cancel an order twice
        # Set while an operator's kill switch is on (turned on, or found on at start).
        self.armed = False

    def arm(self) -> None:
        """An operator's kill switch is on: sweep again at each venue trading logon."""
        self.armed = True

    def disarm(self) -> None:
        """The operator turned the kill switch off."""
        self.armed = False

    def sweep(self, why: str) -> SweepResult:
        """Cancel every open order but those with a cancel on its way already, each under its
        own request ClOrdID ``KILL-<µs>-<n>``; arms the sweeps after each logon."""
        self.armed = True
        with self._lock:
            sent, not_sent, already = self._cancel_each(self._open_orders(), "KILL", BY, why)
            return SweepResult(sent, not_sent, already)

    def session_changed(self, status: SessionStatus, old_state: str, reason: str) -> None:
        """Status board listener: the venue trading session logged on while the switch is
        on, so sweep again once the logon settles."""
        if (status.key != self.trading_session or status.state != "logged_on"
                or not self._active()):
            return
        self._sweep_later(f"venue {self.trading_session} logged on again")

    def transport_switched(self, old: str, new: str, reason: str, automatic: bool) -> None:
        """Gateway transport listener: the order flow moved to the REST fallback while the
        switch is on, so the cancels the FIX session could not carry go that way now."""
        if new == "rest" and self._active():
            self._sweep_later("the order flow moved to the REST fallback")

    def _sweep_later(self, what: str) -> None:
        t = threading.Timer(self.settle_s, self._sweep_again, args=(what,))
        t.daemon = True
        t.name = "kill-switch re-sweep"
        t.start()

    def _active(self) -> bool:
        return self.armed and self._is_on()

    def _sweep_again(self, what: str) -> None:
        if not self._active():
            return  # turned off meanwhile
        result = self.sweep(f"kill switch still on: {what}")
        if result.sent or result.not_sent:
            log.warning("kill switch on: %s, cancel sent for %d open order(s)%s%s", what,
                        result.sent, f"; not sent: {'; '.join(result.not_sent[:5])}"
                        if result.not_sent else "",
                        f"; {len(result.already)} already had a cancel on its way"
                        if result.already else "")
