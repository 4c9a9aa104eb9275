"""What the message counters add to the FIX callbacks, per message (a micro-timeit, not a test).

    python -m tests.metrics.timeit_hot_path

Times `SessionApplication.fromApp` and `toApp` as they are now against the same callbacks
without the counting lines (copies of their bodies before metrics, below), on real QuickFIX
messages, and prints one JSON object: ns per call for each and the difference. The budget is
0.3 µs per message. Best of several rounds: the machines are noisy, and the minimum is the
closest to the code's own cost.
"""

from __future__ import annotations

import json
import logging
import time
import timeit

import quickfix as fix

from gateway.fix import messages as m
from gateway.fix.application import (
    BaseHandler,
    SessionApplication,
    StatusBoard,
    _pin_thread_state,
    poss_dup_problem,
    send_session_reject,
)
from gateway.fix.messages import split_fields

log = logging.getLogger("timeit")


class _Baseline(SessionApplication):
    """fromApp/toApp exactly as they were before the counters (git show efb0341)."""

    def toApp(self, message: fix.Message, sessionID: fix.SessionID) -> None:
        if self._log_secrets is not None:
            self._log_message("OUT", message, sessionID)

    def fromApp(self, message: fix.Message, sessionID: fix.SessionID) -> None:
        _pin_thread_state()
        if self._log_secrets is not None:
            self._log_message("IN", message, sessionID)
        fields = split_fields(message.toString())
        st = self._status.get(sessionID.toString()) or self.status(sessionID)
        st.last_received = time.time()
        if fields.get("43") == "Y":
            problem = poss_dup_problem(message)
            if problem is not None:
                send_session_reject(message, sessionID, problem)
                return
        try:
            self.handler.on_app_message(message, sessionID, fields)
        except Exception:
            log.exception("handling %s from %s failed", fields.get("35"), st.key)


def _message(msg_type: str, fields: list[tuple[int, str]]) -> fix.Message:
    msg = m.new_message(msg_type)
    for tag, value in fields:
        msg.setField(tag, value)
    return msg


def _ns(fn: object, *args: object, number: int = 100_000, repeat: int = 9) -> float:
    t = timeit.Timer(lambda: fn(*args))  # type: ignore[operator]
    return min(t.repeat(repeat=repeat, number=number)) / number * 1e9


def main() -> None:
    er = _message("8", [(11, "C1"), (17, "E1"), (150, "0"), (39, "0"), (55, "BTC/USD"),
                        (54, "1"), (151, "0.01"), (14, "0"), (6, "0"), (37, "O1")])
    order = _message("D", [(11, "C1"), (55, "BTC/USD"), (54, "1"), (38, "0.01"), (40, "2"),
                           (44, "30000"), (59, "1"), (60, "20260101-00:00:00")])
    oms_sid = fix.SessionID("FIX.4.4", "FIXGW", "OMS")
    venue_sid = fix.SessionID("FIX.4.4", "FIXGW", "KRAKEN-TRD")
    out = {}
    for name, role, msg, sid in (("oms_out_8", "oms", er, oms_sid),
                                 ("venue_out_D", "venue", order, venue_sid)):
        new = SessionApplication(BaseHandler(), role, StatusBoard())
        old = _Baseline(BaseHandler(), role, StatusBoard())
        new.onCreate(sid)
        old.onCreate(sid)
        a, b = _ns(new.toApp, msg, sid), _ns(old.toApp, msg, sid)
        out[f"toApp_{name}"] = {"with_counters_ns": round(a), "without_ns": round(b),
                                "added_ns": round(a - b)}
    new = SessionApplication(BaseHandler(), "oms", StatusBoard())
    old = _Baseline(BaseHandler(), "oms", StatusBoard())
    new.onCreate(oms_sid)
    old.onCreate(oms_sid)
    a, b = _ns(new.fromApp, order, oms_sid), _ns(old.fromApp, order, oms_sid)
    out["fromApp_oms_in_D"] = {"with_counters_ns": round(a), "without_ns": round(b),
                               "added_ns": round(a - b)}
    out["budget_ns"] = 300
    print(json.dumps(out))


if __name__ == "__main__":
    main()
