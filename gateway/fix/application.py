"""A QuickFIX Application that delegates to a handler and keeps each session's status.

QuickFIX calls these methods on its own socket threads; the handler runs right there (no
hand-off), which is what keeps the order path at relay speed. An exception escaping a
callback would be swallowed by the SWIG layer, so each is logged here with its session.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import quickfix as fix

from gateway.fix.messages import MSG_TYPE
from gateway.fix.settings import session_key

log = logging.getLogger("fixgw.session")


@dataclass
class SessionStatus:
    """What ops want to see about a session at a glance."""

    key: str
    role: str
    state: str = "created"
    last_logon: float | None = None
    last_logout: float | None = None
    last_received: float | None = None
    last_sent: float | None = None
    logons: int = 0
    extra: dict[str, str] = field(default_factory=dict)


class SessionHandler(Protocol):
    def on_logon(self, session_id: fix.SessionID) -> None: ...
    def on_logout(self, session_id: fix.SessionID) -> None: ...
    def on_app_message(self, msg: fix.Message, session_id: fix.SessionID) -> None: ...
    def on_admin_out(self, msg: fix.Message, session_id: fix.SessionID) -> None: ...
    def on_admin_in(self, msg: fix.Message, session_id: fix.SessionID) -> None: ...


class BaseHandler:
    """No-op defaults so a handler implements only what it needs."""

    def on_logon(self, session_id: fix.SessionID) -> None:
        pass

    def on_logout(self, session_id: fix.SessionID) -> None:
        pass

    def on_app_message(self, msg: fix.Message, session_id: fix.SessionID) -> None:
        pass

    def on_admin_out(self, msg: fix.Message, session_id: fix.SessionID) -> None:
        pass

    def on_admin_in(self, msg: fix.Message, session_id: fix.SessionID) -> None:
        pass


class StatusBoard:
    """Session statuses shared by every Application of one process (read by admin/CLI)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sessions: dict[str, SessionStatus] = {}
        self.listeners: list[_StatusListener] = []

    def get(self, key: str, role: str) -> SessionStatus:
        with self._lock:
            st = self.sessions.get(key)
            if st is None:
                st = self.sessions[key] = SessionStatus(key=key, role=role)
            return st

    def change(self, st: SessionStatus, new_state: str, reason: str = "") -> None:
        old, st.state = st.state, new_state
        if old != new_state:
            log.info("session %s (%s): %s -> %s%s", st.key, st.role, old, new_state,
                     f" ({reason})" if reason else "")
            for listener in list(self.listeners):
                listener(st, old, reason)


class _StatusListener(Protocol):
    def __call__(self, status: SessionStatus, old_state: str, reason: str) -> None: ...


class SessionApplication(fix.Application):  # type: ignore[misc]
    def __init__(self, handler: SessionHandler, role: str, board: StatusBoard) -> None:
        super().__init__()
        self.handler = handler
        self.role = role
        self.board = board
        self._status: dict[str, SessionStatus] = {}

    def status(self, session_id: fix.SessionID) -> SessionStatus:
        # Keyed by QuickFIX's own string form: one binding call, cheaper than rebuilding a key.
        sid = session_id.toString()
        st = self._status.get(sid)
        if st is None:
            st = self._status[sid] = self.board.get(session_key(session_id), self.role)
        return st

    # QuickFIX callbacks ----------------------------------------------------------------
    def onCreate(self, sessionID: fix.SessionID) -> None:
        self.status(sessionID)

    def onLogon(self, sessionID: fix.SessionID) -> None:
        st = self.status(sessionID)
        st.last_logon = time.time()
        st.logons += 1
        self.board.change(st, "logged_on")
        try:
            self.handler.on_logon(sessionID)
        except Exception:
            log.exception("on_logon failed for %s", st.key)

    def onLogout(self, sessionID: fix.SessionID) -> None:
        st = self.status(sessionID)
        st.last_logout = time.time()
        self.board.change(st, "logged_out")
        try:
            self.handler.on_logout(sessionID)
        except Exception:
            log.exception("on_logout failed for %s", st.key)

    def toAdmin(self, message: fix.Message, sessionID: fix.SessionID) -> None:
        self.status(sessionID).last_sent = time.time()
        try:
            self.handler.on_admin_out(message, sessionID)
        except Exception:
            log.exception("toAdmin failed for %s", session_key(sessionID))

    def fromAdmin(self, message: fix.Message, sessionID: fix.SessionID) -> None:
        self.status(sessionID).last_received = time.time()
        # RejectLogon must propagate to QuickFIX: it is how a logon is refused.
        self.handler.on_admin_in(message, sessionID)

    def toApp(self, message: fix.Message, sessionID: fix.SessionID) -> None:
        pass

    def fromApp(self, message: fix.Message, sessionID: fix.SessionID) -> None:
        st = self.status(sessionID)
        st.last_received = time.time()
        try:
            self.handler.on_app_message(message, sessionID)
        except fix.UnsupportedMessageType:
            raise
        except Exception:
            log.exception("handling %s from %s failed",
                          message.getHeader().getField(MSG_TYPE), st.key)


def is_logon(msg: fix.Message) -> bool:
    return bool(msg.getHeader().getField(MSG_TYPE) == "A")
