"""Stopping QuickFIX engines (acceptors and initiators) without their whole-second waits.

QuickFIX's own `stop()` logs its sessions out and then, while any is still logged on, sleeps a
whole second at a time (`process_sleep(1)` in Acceptor::stop and Initiator::stop). The answer
to a Logout takes a millisecond on loopback, but the first check comes before it, so every
stop of an engine with a session up cost at least one second, and `stop()` on two engines one
after the other cost two. Here every session of every engine is asked to log out at once, the
exchange is awaited in short polls, and the engines are then stopped together, each without
QuickFIX's wait. What remains is QuickFIX's own tick: a session sends its Logout, and an
engine thread notices that it must end, on its next timer tick (at most a second).

A session logged out here is left disabled, so `stop()` neither unregisters it nor logs it on
again; callers drop the engine after stopping it, which deletes its sessions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Protocol

import quickfix as fix

#: As long as QuickFIX itself waits for the Logout exchange before it gives up.
LOGOUT_WAIT_S = 10.0
_POLL_S = 0.01


class Engine(Protocol):
    def getSessions(self) -> tuple[fix.SessionID, ...]: ...

    def stop(self, force: bool = False) -> None: ...


def stop_engines(engines: Sequence[Engine], logout_wait_s: float = LOGOUT_WAIT_S) -> None:
    """Log out every session of `engines`, wait for the Logouts (up to `logout_wait_s`), then
    stop the engines in parallel."""
    sessions = [s for engine in engines for sid in engine.getSessions()
                if (s := fix.Session.lookupSession(sid)) is not None and s.isLoggedOn()]
    for s in sessions:
        s.logout()
    deadline = time.monotonic() + logout_wait_s
    while any(s.isLoggedOn() for s in sessions) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    # force: the Logout exchange is over (or timed out above); QuickFIX need not wait again.
    threads = [threading.Thread(target=e.stop, args=(True,), name="fixgw-engine-stop",
                                daemon=True) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
