"""Reconnect with exponential backoff for QuickFIX initiator sessions.

QuickFIX retries a dead connection every ReconnectInterval seconds, forever, at a fixed pace.
Against a venue that is down or refusing us, that hammers it and fills logs. This supervisor
lets QuickFIX try for one interval, then disables the session (Session.logout) for a backoff
that doubles up to a maximum, with jitter so a fleet of gateways does not reconnect in step,
and re-enables it (Session.logon). A successful logon resets the backoff.

During the venue's daily rollover (`ScheduleConfig`) QuickFIX itself keeps the sessions down:
that is not a failure, so it neither counts towards the backoff nor delays the first logon
after it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import quickfix as fix

from gateway.config.model import ScheduleConfig
from gateway.fix.settings import session_key

log = logging.getLogger("fixgw.reconnect")


class _Track:
    def __init__(self) -> None:
        self.failures = 0
        self.enabled_at = time.monotonic()
        self.resume_at: float | None = None


class ReconnectSupervisor:
    def __init__(self, session_ids: Iterable[fix.SessionID], *, attempt_window_s: float,
                 min_backoff_s: float, max_backoff_s: float, poll_s: float = 0.2,
                 rollover: ScheduleConfig | None = None) -> None:
        self._ids = list(session_ids)
        self._rollover = rollover
        self._in_rollover = False
        self._window = attempt_window_s
        self._min = min_backoff_s
        self._max = max_backoff_s
        self._poll = poll_s
        self._tracks = {sid.toString(): _Track() for sid in self._ids}
        self._stop = threading.Event()
        self._paused: set[str] = set()  # sessions an operator logged out: leave them alone
        # One session's check-and-act in `_run` against an operator's hold or release: a
        # logout must not be undone by a logon the loop decided on just before it.
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="fix-reconnect", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def hold(self, session_id: fix.SessionID, held: bool) -> None:
        """Operator control: a held session is not re-enabled by the supervisor. A release
        starts the session's track afresh: the time it was held is no failed attempt, and
        counting it would log the session out again just after the operator logged it on."""
        key = session_id.toString()
        with self._lock:
            if held:
                self._paused.add(key)
                return
            self._paused.discard(key)
            tr = self._tracks.get(key)
            if tr is not None:
                tr.failures, tr.enabled_at, tr.resume_at = 0, time.monotonic(), None

    def _rolling_over(self, now: float) -> bool:
        """Inside the daily rollover: log its start and end once, and keep every session's
        track fresh, so the first logon after it gets a whole attempt window."""
        inside = self._rollover is not None and self._rollover.in_rollover(datetime.now(UTC))
        if inside != self._in_rollover:
            self._in_rollover = inside
            if inside:
                assert self._rollover is not None
                log.info("venue daily rollover: sessions are down until %s, then start again "
                         "from sequence number 1", self._rollover.back_at())
            else:
                log.info("venue daily rollover over: logging on")
        if inside:
            for tr in self._tracks.values():
                tr.failures = 0
                tr.enabled_at = now
                if tr.resume_at is not None:
                    tr.resume_at = now
        return inside

    def backoff(self, failures: int) -> float:
        base = min(self._max, self._min * (2 ** max(0, failures - 1)))
        return float(base * random.uniform(0.8, 1.2))

    def _run(self) -> None:
        while not self._stop.wait(self._poll):
            now = time.monotonic()
            if self._rolling_over(now):
                continue
            for sid in self._ids:
                with self._lock:
                    self._check(sid, now)

    def _check(self, sid: fix.SessionID, now: float) -> None:
        """One session: back it off after a failed attempt window, or re-enable it once its
        backoff is over (caller holds `_lock`)."""
        key = sid.toString()
        if key in self._paused:
            return
        session = fix.Session.lookupSession(sid)
        if session is None:
            return
        tr = self._tracks[key]
        if session.isLoggedOn():
            tr.failures = 0
            tr.enabled_at = now
            return
        if tr.resume_at is not None:
            if now >= tr.resume_at:
                tr.resume_at = None
                tr.enabled_at = now
                session.logon()
            return
        if session.sentLogon():
            return  # a logon is in flight: QuickFIX's LogonTimeout decides, not us
        if session.isEnabled() and now - tr.enabled_at > self._window:
            tr.failures += 1
            delay = self.backoff(tr.failures)
            log.info("session %s: no logon after %.1f s (attempt %d); next try in %.1f s",
                     session_key(sid), self._window, tr.failures, delay)
            session.logout()
            tr.resume_at = now + delay
