"""The simulator's control channel: JSON lines over loopback TCP, for tests and rehearsals.

    {"cmd": "ping"}
    {"cmd": "md_fault", "fault": "corrupt_checksum" | "gap" | "stall", "symbol": "BTC/USD",
     "count": 1, "seconds": 5}
    {"cmd": "submission_counts"}            -> {"counts": {"OWNER ClOrdID": n, ...}}
    {"cmd": "levels", "symbol": "BTC/USD", "depth": 10}
    {"cmd": "drop_md", "client": "FIXGW", "refuse_s": 5}   -> {"was_logged_on": true}
        log the client's FIX market-data session out (trading untouched) and refuse its
        logons for refuse_s seconds, or until "restore_md" when refuse_s is left out
    {"cmd": "restore_md", "client": "FIXGW"}                accept its MD logons again now
    {"cmd": "ws_fault", "fault": "corrupt_checksum" | "stall" | "drop", "symbol": "BTC/USD",
     "count": 1, "seconds": 5}                              spot WS v2 faults
    {"cmd": "ws_stats"} -> {"connections": n, "book_subscriptions": n, "trade_subscriptions": n}
    {"cmd": "rest_fault", "fault": "delay" | "fail" | "clear", "seconds": 3, "n": 1,
     "after": true, "path_prefix": "/0/private/AmendOrder"}  spot REST faults

A separate port rather than FIX messages: faults must be injectable even when the FIX sessions
are the thing being broken. Every reply is one line: {"ok": true, ...} or {"ok": false,
"error": "..."}.
"""

from __future__ import annotations

import json
import logging
import socketserver
import threading
import time
from collections.abc import Callable
from typing import Any

import quickfix as fix

from gateway.venue_sim.fix_face import MD_COMP_ID
from gateway.venue_sim.spot_ws import SpotWsServer

log = logging.getLogger("fixgw.venue_sim.control")

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    def __init__(self, host: str, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers
        outer = self

        class _Conn(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    reply = outer.dispatch(line)
                    self.wfile.write((json.dumps(reply) + "\n").encode())

        self._server = socketserver.ThreadingTCPServer((host, 0), _Conn)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="sim-control",
                                        daemon=True)

    def dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            handler = self.handlers.get(req.get("cmd", ""))
            if handler is None:
                return {"ok": False, "error": f"unknown cmd {req.get('cmd')!r}; known: "
                                              f"{sorted(self.handlers)}"}
            return {"ok": True, **handler(req)}
        except Exception as exc:  # a bad command must not kill the channel
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Relogons:
    """Re-enables FIX sessions a control command dropped, once their refusal window is over.

    QuickFIX's `Session.logout()` only disables the session: the Logout goes out at the
    session's next timer tick, up to a second later, or later on a loaded machine. The window
    therefore starts when the session is seen logged out, not when the command ran; a timer
    from the command raced the tick, and a short window could close before the session ever
    dropped (a flaky failover test)."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def after_drop(self, session: fix.Session, refuse_s: float,
                   before_logon: Callable[[], object] | None = None) -> None:
        threading.Thread(target=self._run, args=(session, refuse_s, before_logon),
                         name="sim-relogon", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, session: fix.Session, refuse_s: float,
             before_logon: Callable[[], object] | None) -> None:
        deadline = time.monotonic() + 30
        while session.isLoggedOn() and time.monotonic() < deadline:
            if self._stop.wait(0.02):
                return
        if before_logon is not None:
            before_logon()
        if not self._stop.wait(refuse_s):
            session.logon()


def md_failover_handlers(spot_ws: SpotWsServer, default_client: str,
                         relogons: Relogons) -> dict[str, Handler]:
    """Commands for market-data failover tests: break the FIX MD session alone (so the
    gateway's WS fallback, not its order fallback, is what reacts) and the spot WS feed."""

    def md_session(req: dict[str, Any]) -> tuple[str, fix.Session]:
        client = str(req.get("client", default_client))
        session = fix.Session.lookupSession(fix.SessionID("FIX.4.4", MD_COMP_ID, client))
        if session is None:
            raise ValueError(f"no market-data session for client {client!r}")
        return client, session

    def drop_md(req: dict[str, Any]) -> dict[str, Any]:
        # QuickFIX's logout() also disables the session: logons are refused until logon().
        client, session = md_session(req)
        was_logged_on = bool(session.isLoggedOn())
        session.logout("dropped by the simulator's control channel")
        refuse_s = req.get("refuse_s")
        if refuse_s is not None:
            relogons.after_drop(session, float(refuse_s))
        log.info("dropped FIX market-data session of %s; logons refused %s", client,
                 "until restore_md" if refuse_s is None else f"for {float(refuse_s):.1f}s")
        return {"was_logged_on": was_logged_on}

    def restore_md(req: dict[str, Any]) -> dict[str, Any]:
        client, session = md_session(req)
        session.logon()
        log.info("FIX market-data session of %s accepts logons again", client)
        return {}

    def ws_fault(req: dict[str, Any]) -> dict[str, Any]:
        fault = str(req["fault"])
        symbol = req.get("symbol")
        if fault == "corrupt_checksum":
            spot_ws.corrupt_next_checksum(str(symbol), int(req.get("count", 1)))
        elif fault == "stall":
            spot_ws.stall(None if symbol is None else str(symbol), float(req["seconds"]))
        elif fault == "drop":
            spot_ws.drop_all()
        else:
            raise ValueError(f"unknown ws fault {fault!r}: corrupt_checksum, stall or drop")
        return {}

    def ws_stats(req: dict[str, Any]) -> dict[str, Any]:
        return spot_ws.subscription_counts()

    return {"drop_md": drop_md, "restore_md": restore_md, "ws_fault": ws_fault,
            "ws_stats": ws_stats}
