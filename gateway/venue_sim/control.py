"""The simulator's control channel: JSON lines over loopback TCP, for tests and rehearsals.

    {"cmd": "ping"}
    {"cmd": "md_fault", "fault": "corrupt_checksum" | "gap" | "stall", "symbol": "BTC/USD",
     "count": 1, "seconds": 5}
    {"cmd": "submission_counts"}            -> {"counts": {"OWNER ClOrdID": n, ...}}
    {"cmd": "levels", "symbol": "BTC/USD", "depth": 10}

A separate port rather than FIX messages: faults must be injectable even when the FIX sessions
are the thing being broken. Every reply is one line: {"ok": true, ...} or {"ok": false,
"error": "..."}.
"""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from collections.abc import Callable
from typing import Any

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
