"""A QuickFIX Application that delegates to a handler and keeps each session's status.

QuickFIX calls these methods on its own socket threads; the handler runs right there (no
hand-off), which is what keeps the order path at relay speed. An exception escaping a
callback other than QuickFIX's own would make the binding end the process, so each is caught
and logged here with its session.

Lock rule for handlers: QuickFIX calls onLogout from Session::disconnect with that session's
mutex held (and parts of logon processing likewise). A logout handler must therefore never wait
for a lock that some thread may hold while sending on that session, or the two deadlock; record
the fact without a lock and let the sender's side clean up (see OmsMarketData.drop).

Resends towards an OMS: QuickFIX stores every message it sends and replays the stored ones on a
ResendRequest. ExecutionReports must be replayed; market data (35=W/X) must not (a stale book
ahead of the live one), so toApp refuses a resent W/X and QuickFIX sends a GapFill instead.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import quickfix as fix

from gateway.fix.messages import (
    BUSINESS_REJECT_REASON,
    MSG_SEQ_NUM,
    MSG_TYPE,
    ORIG_SENDING_TIME,
    POSS_DUP,
    REF_MSG_TYPE,
    REF_SEQ_NUM,
    SENDING_TIME,
    TEXT,
    Fields,
    get,
    msg_type,
    split_fields,
)
from gateway.fix.settings import session_key
from gateway.kraken.secrets import mask

log = logging.getLogger("fixgw.session")
# Every FIX message in and out, when `[gateway] fix_message_log` is on; masked (553/554 and the
# venue secrets) before it is formatted, so no handler ever sees a credential.
message_log = logging.getLogger("fixgw.fix.messages")

HEART_BT_INT = 108
REF_TAG_ID = 371
SESSION_REJECT_REASON = 373
NEW_SEQ_NO = 36
GAP_FILL_FLAG = 123

# The binding's own getFieldIfSet(FieldMap&, FieldBase&): not overloaded, so ~120 ns a call
# where FieldMap.getField(tag) (overload dispatch) or Message.getHeader() (a new proxy each
# call) cost 450-950 ns. Used to tell an outgoing message's type without its header. Like every
# wrapped call it releases the GIL while QuickFIX copies the field into the object it is given,
# so each thread probes into field objects of its own (`_ProbeFields`): two threads sending at
# once (two OMS sessions, or an OMS session and the venue thread) would otherwise copy into the
# same C++ object together.
_probe = fix._quickfix.FieldMap_getFieldIfSet


class _ProbeFields(threading.local):
    """Per thread: the field objects `_probe` fills (their values are never read)."""

    def __init__(self) -> None:
        self.exec_type = fix.ExecType()
        self.ord_type = fix.OrdType()
        self.orig_cl_ord_id = fix.OrigClOrdID()
        self.poss_dup = fix.PossDupFlag()


_probe_fields = _ProbeFields()

# Market data towards an OMS (MarketDataSnapshotFullRefresh, MarketDataIncrementalRefresh) is
# stored like every message (PersistMessages=Y, which the reports need), but a ResendRequest
# must not replay a stale book ahead of the live one: toApp refuses a resent one (PossDupFlag
# set, which QuickFIX does only on resends) and QuickFIX gap-fills it. Only these two types
# are checked, and only after the slow path already read their type: reports never pay for it.
_BOOK_TYPES = frozenset(("W", "X"))


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
    # Messages received by MsgType. One writer: QuickFIX calls fromApp/fromAdmin of a session on
    # that session's socket thread only. Read by gateway.metrics at scrape time.
    msgs_in: dict[str, int] = field(default_factory=dict)


class SessionHandler(Protocol):
    def on_logon(self, session_id: fix.SessionID) -> None: ...
    def on_logout(self, session_id: fix.SessionID) -> None: ...
    def on_app_message(self, msg: fix.Message, session_id: fix.SessionID,
                       fields: Fields) -> None: ...
    def on_admin_out(self, msg: fix.Message, session_id: fix.SessionID) -> None: ...
    def on_admin_in(self, msg: fix.Message, session_id: fix.SessionID) -> None: ...


class BaseHandler:
    """No-op defaults so a handler implements only what it needs."""

    def on_logon(self, session_id: fix.SessionID) -> None:
        pass

    def on_logout(self, session_id: fix.SessionID) -> None:
        pass

    def on_app_message(self, msg: fix.Message, session_id: fix.SessionID,
                       fields: Fields) -> None:
        pass

    def on_admin_out(self, msg: fix.Message, session_id: fix.SessionID) -> None:
        pass

    def on_admin_in(self, msg: fix.Message, session_id: fix.SessionID) -> None:
        pass


def counted(counter: itertools.count[int]) -> int:
    """How often ``next`` was called on an ``itertools.count()`` started at 0 (its repr is
    ``count(N)``; read at scrape time only)."""
    return int(repr(counter)[6:-1])


class StatusBoard:
    """Session statuses shared by every Application of one process (read by admin/CLI)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sessions: dict[str, SessionStatus] = {}
        self.listeners: list[_StatusListener] = []
        # QuickFIX passes every callback of a session the same SessionID object (the Session's
        # member), so its address identifies the session for the price of int(sid.this).
        self.pointers: dict[int, str] = {}
        # Outgoing messages {(session pointer, MsgType): counter} and rejects we sent
        # {(session pointer, "3" or "j", reason code): counter}. Any thread may send on any
        # session (the venue thread sends the OMS its reports, the admin thread a Logout), so
        # these are itertools.count objects: next() is one C call under the GIL, an increment
        # that cannot be lost between threads, with no lock (and cheaper than a per-thread
        # dict). A new key is added with setdefault, atomic as well.
        self.out: dict[tuple[int, str], itertools.count[int]] = {}
        self.out_rejects: dict[tuple[int, str, str], itertools.count[int]] = {}

    def out_counts(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str, str], int]]:
        """Outgoing messages {(session, MsgType): n} and rejects sent {(session, MsgType,
        reason): n} (called at scrape time, off the FIX path)."""
        names = dict(self.pointers)
        msgs: dict[tuple[str, str], int] = {}
        rejects: dict[tuple[str, str, str], int] = {}
        for (ptr, t), c in dict(self.out).items():
            k = (names.get(ptr, "unknown"), t)
            msgs[k] = msgs.get(k, 0) + counted(c)
        for (ptr, t, reason), c in dict(self.out_rejects).items():
            r = (names.get(ptr, "unknown"), t, reason)
            rejects[r] = rejects.get(r, 0) + counted(c)
        return msgs, rejects

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


# The exceptions QuickFIX's binding translates into protocol answers; any other exception
# escaping a callback makes the binding print it and exit the process.
_QUICKFIX_ANSWERS = (fix.RejectLogon, fix.FieldNotFound, fix.IncorrectDataFormat,
                     fix.IncorrectTagValue, fix.UnsupportedMessageType)


class SessionApplication(fix.Application):  # type: ignore[misc]
    def __init__(self, handler: SessionHandler, role: str, board: StatusBoard,
                 message_log_secrets: Iterable[str] | None = None) -> None:
        """``message_log_secrets``: None = no message log; otherwise log every message to
        ``fixgw.fix.messages`` with these strings (and every 553/554 value) masked."""
        super().__init__()
        self.handler = handler
        self.role = role
        self.board = board
        self._status: dict[str, SessionStatus] = {}
        # The same statuses by the address of QuickFIX's SessionID (see StatusBoard.pointers):
        # fromApp finds its session for int(sid.this), with no binding call to release the GIL.
        self._status_by_ptr: dict[int, SessionStatus] = {}
        self._log_secrets: tuple[str, ...] | None = (
            None if message_log_secrets is None else tuple(s for s in message_log_secrets if s))
        self._out = board.out
        self._out_rejects = board.out_rejects
        # Messages are counted for the gateway's own roles only (what /metrics shows); the
        # simulator, test clients and benchmarks built on this class skip it. The fast type
        # probes in toApp hold for what the gateway sends, not for what a venue sends.
        self._oms_role = role == "oms"
        self._venue_role = role == "venue"
        self._counted = self._oms_role or self._venue_role
        # Per session (by SessionID address): the Text for the Logout QuickFIX is about to send
        # after one of its header Rejects (`_explain_logout`).
        self._logout_text: dict[int, str] = {}

    def _log_message(self, direction: str, message: fix.Message,
                     session_id: fix.SessionID) -> None:
        if self._log_secrets is None:
            return
        try:
            text = mask(message.toString().replace("\x01", "|"), self._log_secrets)
            message_log.info("%s %s %s", direction, session_key(session_id), text)
        except Exception:
            log.exception("FIX message not logged")

    def status(self, session_id: fix.SessionID) -> SessionStatus:
        # Keyed by QuickFIX's own string form: one binding call, cheaper than rebuilding a key.
        sid = session_id.toString()
        st = self._status.get(sid)
        if st is None:
            st = self._status[sid] = self.board.get(session_key(session_id), self.role)
            ptr = int(session_id.this)
            self.board.pointers[ptr] = st.key
            self._status_by_ptr[ptr] = st
        return st

    def _count_out_slow(self, message: fix.Message, ptr: int) -> str:
        """MsgType from the header (~1 µs; for the types the probes in toApp do not cover), and
        the reason of a Reject (3) or BusinessMessageReject (j) we send."""
        t = msg_type(message)
        tag = SESSION_REJECT_REASON if t == "3" else BUSINESS_REJECT_REASON if t == "j" else 0
        if tag:
            reason = get(message, tag) or "none"
            k = (ptr, t, reason)
            c = self._out_rejects.get(k)
            next(c if c is not None else self._out_rejects.setdefault(k, itertools.count()))
        return t

    # QuickFIX callbacks ----------------------------------------------------------------
    def onCreate(self, sessionID: fix.SessionID) -> None:
        self.status(sessionID)

    def onLogon(self, sessionID: fix.SessionID) -> None:
        st = self.status(sessionID)
        ptr = int(sessionID.this)
        self.board.pointers[ptr] = st.key
        self._status_by_ptr[ptr] = st
        st.last_logon = time.time()
        st.logons += 1
        # The handler first: whoever sees the session "logged_on" (the log line, the session
        # event, ops) can use it at once; the router takes orders on its own logon flag.
        try:
            self.handler.on_logon(sessionID)
        except Exception:
            log.exception("on_logon failed for %s", st.key)
        self.board.change(st, "logged_on")

    def onLogout(self, sessionID: fix.SessionID) -> None:
        st = self.status(sessionID)
        st.last_logout = time.time()
        # The handler first, as in onLogon: once the session is seen "logged_out" (the log
        # line, the session event, ops), the router already refuses to send on it.
        try:
            self.handler.on_logout(sessionID)
        except Exception:
            log.exception("on_logout failed for %s", st.key)
        self.board.change(st, "logged_out")
        # QuickFIX calls this on the thread that read the connection, which then ends (an
        # acceptor's) or goes on with the other sessions (the initiator's): see _Pin.
        _unpin_thread_state()

    def toAdmin(self, message: fix.Message, sessionID: fix.SessionID) -> None:
        self.status(sessionID).last_sent = time.time()
        ptr = int(sessionID.this)
        if self._counted:
            t = self._count_out_slow(message, ptr)
            k = (ptr, t)
            c = self._out.get(k)
            next(c if c is not None else self._out.setdefault(k, itertools.count()))
        else:
            t = msg_type(message)  # admin traffic: not the order path
        self._explain_logout(t, message, ptr)
        try:
            self.handler.on_admin_out(message, sessionID)
        except Exception:
            log.exception("toAdmin failed for %s", session_key(sessionID))
        self._log_message("OUT", message, sessionID)  # after the handler: as sent (Logon fields)

    def fromAdmin(self, message: fix.Message, sessionID: fix.SessionID) -> None:
        st = self.status(sessionID)
        st.last_received = time.time()
        t = msg_type(message)  # admin traffic: not the order path
        if self._counted:
            st.msgs_in[t] = st.msgs_in.get(t, 0) + 1
        if t == "A" and message.isSetField(HEART_BT_INT):
            # The interval the counterparty asked for (an acceptor takes the OMS's): for ops.
            st.extra["heartbeat_interval_s"] = message.getField(HEART_BT_INT)
        self._log_message("IN", message, sessionID)
        self._logout_text.pop(int(sessionID.this), None)
        if t == "4" and (seq := _lowered_seq_num(message)) is not None:
            # A rejected message is still received: the counterparty goes on at the next
            # MsgSeqNum (QuickFIX's Reject does not count a SequenceReset, so count it here).
            session = fix.Session.lookupSession(sessionID)
            if session is not None:
                session.setNextTargetMsgSeqNum(seq + 1)
            raise fix.IncorrectTagValue(NEW_SEQ_NO)  # QuickFIX answers 373=5 371=36
        problem = poss_dup_problem(message)
        if problem == _MISSING_ORIG:
            raise fix.FieldNotFound(ORIG_SENDING_TIME)  # QuickFIX answers 373=1 371=122
        if problem is not None:
            send_session_reject(message, sessionID, problem)
        try:
            self.handler.on_admin_in(message, sessionID)
        except _QUICKFIX_ANSWERS:
            raise  # RejectLogon refuses a logon; the others become a session Reject
        except Exception:
            # Any other exception would make the QuickFIX binding end the process (Py_Exit).
            log.exception("fromAdmin failed for %s", session_key(sessionID))

    def _explain_logout(self, t: str, message: fix.Message, ptr: int) -> None:
        """Give the Logout that QuickFIX sends right after a CompID or SendingTime Reject a Text
        naming the problem (FIX 4.4 session test cases 2k and 2o). QuickFIX's doBadCompID and
        doBadTime send the Reject and then a Logout with no Text; the Reject is remembered
        here and spent on that Logout. Any other message in or out forgets it, so a later
        Logout (ops, shutdown, an answer to the counterparty's) never carries a stale one."""
        if t == "5":
            text = self._logout_text.pop(ptr, None)
            if text is not None and not message.isSetField(TEXT):
                message.setField(TEXT, text)
            return
        self._logout_text.pop(ptr, None)
        if t == "3" and message.isSetField(SESSION_REJECT_REASON):
            reason = message.getField(SESSION_REJECT_REASON)
            text = get(message, TEXT) or ""
            problem = _LOGOUT_AFTER_REJECT.get((reason, text))
            if problem is not None:
                ref = get(message, REF_SEQ_NUM) or "?"
                self._logout_text[ptr] = f"{problem} (MsgSeqNum {ref})"

    def toApp(self, message: fix.Message, sessionID: fix.SessionID) -> None:
        # Counted by MsgType without touching the header (see _probe): towards an OMS the
        # gateway sends one type with ExecType (150), ExecutionReport; towards the venue one
        # with OrdType (40) and no OrigClOrdID (41), NewOrderSingle. A new outgoing type that
        # carries those fields needs its own check here. Everything else takes the slow path,
        # where a resent W/X towards an OMS is refused (see _BOOK_TYPES).
        pf = _probe_fields
        if self._oms_role:
            if _probe(message, pf.exec_type):
                t = "8"
            else:
                t = self._count_out_slow(message, int(sessionID.this))
                if (t in _BOOK_TYPES and _probe(message.getHeader(), pf.poss_dup)
                        and pf.poss_dup.getValue()):
                    raise fix.DoNotSend()  # a resend: QuickFIX gap-fills it (_BOOK_TYPES)
        elif not self._venue_role:
            t = ""
        elif _probe(message, pf.ord_type) and not _probe(message, pf.orig_cl_ord_id):
            t = "D"
        else:
            t = self._count_out_slow(message, int(sessionID.this))
        if t:
            k = (int(sessionID.this), t)
            c = self._out.get(k)
            next(c if c is not None else self._out.setdefault(k, itertools.count()))
        if self._log_secrets is not None:
            self._log_message("OUT", message, sessionID)

    def fromApp(self, message: fix.Message, sessionID: fix.SessionID) -> None:
        _pin_thread_state()
        if self._log_secrets is not None:
            self._log_message("IN", message, sessionID)
        try:
            fields = split_fields(message.toString())
        except Exception:  # nothing may escape into QuickFIX: its binding would end the process
            log.exception("%s message from %s could not be read; not processed", self.role,
                          session_key(sessionID))
            return
        st = self._status_by_ptr.get(int(sessionID.this)) or self.status(sessionID)
        st.last_received = time.time()
        if self._counted:
            t = fields["35"]
            st.msgs_in[t] = st.msgs_in.get(t, 0) + 1
        if fields.get("43") == "Y":
            problem = poss_dup_problem(message)
            if problem is not None:
                # A session-level problem: a session Reject, and the message is not processed.
                send_session_reject(message, sessionID, problem)
                return
        try:
            self.handler.on_app_message(message, sessionID, fields)
        except _QUICKFIX_ANSWERS:
            raise
        except Exception:
            log.exception("handling %s from %s failed", fields.get("35"), st.key)


# SWIG's director wraps every callback in PyGILState_Ensure/Release. QuickFIX's threads were not
# started by Python, so each callback would create and destroy a Python thread state (measured
# on every callback by tools/bench_fix.py's profiler: ~15-20 % of the gateway's CPU per order).
# One extra Ensure on a logged-on session's first application message keeps its thread's state
# alive, and the matching Release at the session's logout lets it go with the thread.
#
# Why a threading.local and not the thread's ident: QuickFIX starts a thread per connection, and
# the C library hands a new thread the ident (pthread_t) of one that ended. Remembering idents,
# an OMS's second connection was taken for pinned and paid the per-callback state for the rest
# of the process, while its first connection's state leaked. A threading.local lives in the
# thread state itself, so a new state starts unpinned. Why pin only on application messages:
# a connection refused at logon has no logout callback to unpin it, and would leak its state.
class _Pin(threading.local):
    gil_state: int | None = None


_pin = _Pin()
_ensure = ctypes.pythonapi.PyGILState_Ensure
_ensure.restype = ctypes.c_int
_release = ctypes.pythonapi.PyGILState_Release
_release.argtypes = (ctypes.c_int,)
_release.restype = None


def _pin_thread_state() -> None:
    if _pin.gil_state is None:
        _pin.gil_state = _ensure()


def _unpin_thread_state() -> None:
    """Give back this thread's pin, if it has one: the director's Release at the end of the
    current callback then deletes the state (a thread QuickFIX goes on using gets a new one,
    pinned again at its next application message). A Python thread is never pinned for good:
    Python deletes its state when it ends, whatever the count."""
    state = _pin.gil_state
    if state is not None:
        _pin.gil_state = None
        _release(state)


# QuickFIX checks PossDupFlag/OrigSendingTime only on messages whose MsgSeqNum is too low; FIX
# 4.4 (session test cases 2f, 2g) wants the same at the expected MsgSeqNum. These fill the gap.
_MISSING_ORIG = ("1", "required tag missing: OrigSendingTime (122) with PossDupFlag=Y")
_ORIG_AFTER = ("10", "SendingTime accuracy problem: OrigSendingTime (122) after SendingTime (52)")

# QuickFIX's own Rejects (reason, Text) that it follows with a bare Logout, and the Text that
# Logout gets instead (`SessionApplication._explain_logout`). Keyed on QuickFIX's exact Text,
# so the gateway's own reason-10 Reject above (which no Logout follows) is not taken for one.
_LOGOUT_AFTER_REJECT = {
    ("9", "CompID problem"): "CompID problem: incorrect SenderCompID or TargetCompID",
    ("10", "SendingTime accuracy problem"):
        "SendingTime accuracy problem: SendingTime not within the accepted latency",
}


def _lowered_seq_num(msg: fix.Message) -> int | None:
    """The MsgSeqNum of a SequenceReset-GapFill whose NewSeqNo is not above it (FIX 4.4
    session test case 10: "attempt to lower sequence number"), else None. QuickFIX rejects
    only NewSeqNo below the expected MsgSeqNum; at the expected one it would take NewSeqNo ==
    MsgSeqNum silently. QuickFIX calls fromAdmin for a GapFill only at the expected MsgSeqNum
    (too high asks for a resend; too low is ignored as a PossDup, else answered by a Logout)."""
    if get(msg, GAP_FILL_FLAG) != "Y":
        return None
    try:
        seq = int(msg.getHeader().getField(MSG_SEQ_NUM))
        return seq if int(msg.getField(NEW_SEQ_NO)) <= seq else None
    except (fix.FieldNotFound, ValueError):
        return None  # QuickFIX's dictionary check answers a missing or malformed NewSeqNo


def _utc(value: str) -> datetime:
    fmt = "%Y%m%d-%H:%M:%S.%f" if "." in value else "%Y%m%d-%H:%M:%S"
    return datetime.strptime(value, fmt)


def poss_dup_problem(msg: fix.Message) -> tuple[str, str] | None:
    """(SessionRejectReason, text) when a PossDupFlag=Y message breaks the 122/52 rules."""
    header = msg.getHeader()
    if get(header, POSS_DUP) != "Y":
        return None
    if not header.isSetField(ORIG_SENDING_TIME):
        return _MISSING_ORIG
    try:
        if _utc(header.getField(ORIG_SENDING_TIME)) > _utc(header.getField(SENDING_TIME)):
            return _ORIG_AFTER
    except ValueError:
        return None  # a malformed timestamp is QuickFIX's own 373=6 case
    return None


def send_session_reject(msg: fix.Message, session_id: fix.SessionID,
                        problem: tuple[str, str]) -> None:
    header = msg.getHeader()
    rej = fix.Message()
    rej.getHeader().setField(MSG_TYPE, "3")
    rej.setField(REF_SEQ_NUM, header.getField(MSG_SEQ_NUM))
    rej.setField(REF_MSG_TYPE, header.getField(MSG_TYPE))
    rej.setField(SESSION_REJECT_REASON, problem[0])
    if problem[0] == "1":
        rej.setField(REF_TAG_ID, str(ORIG_SENDING_TIME))
    rej.setField(TEXT, problem[1])
    session = fix.Session.lookupSession(session_id)
    if session is not None:
        session.send(rej)


def is_logon(msg: fix.Message) -> bool:
    return msg_type(msg) == "A"
