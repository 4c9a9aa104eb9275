"""A small FIX 4.4 initiator that collects what it receives: the OMS of `fixgw oms`, the
benchmarks' client and the integration tests' counterparty.

Received application messages land in a queue as dicts of tag -> value (plus the raw string),
so callers can wait for "the next ExecutionReport for ClOrdID X" without QuickFIX types.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import quickfix as fix

from gateway.config.model import ScheduleConfig
from gateway.fix.application import BaseHandler, SessionApplication, StatusBoard
from gateway.fix.engines import stop_engines
from gateway.fix.messages import Fields, new_message
from gateway.fix.settings import SessionBlock, SettingsFile, common_defaults

SOH = "\x01"


def parse_fix(raw: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for part in raw.split(SOH):
        if "=" in part:
            tag, _, value = part.partition("=")
            out.setdefault(int(tag), value)
    return out


@dataclass
class Received:
    msg_type: str
    fields: dict[int, str]
    raw: str
    at: float = field(default_factory=time.monotonic)


class _Collector(BaseHandler):
    def __init__(self, client: FixClient) -> None:
        self.client = client

    def on_logon(self, session_id: fix.SessionID) -> None:
        self.client.logged_on.set()

    def on_logout(self, session_id: fix.SessionID) -> None:
        self.client.logged_on.clear()

    def on_admin_in(self, msg: fix.Message, session_id: fix.SessionID) -> None:
        raw = msg.toString()
        f = parse_fix(raw)
        self.client.admin.put(Received(f.get(35, ""), f, raw))

    def on_admin_out(self, msg: fix.Message, session_id: fix.SessionID) -> None:
        if self.client.on_admin_out is not None:
            self.client.on_admin_out(msg)

    def on_app_message(self, msg: fix.Message, session_id: fix.SessionID,
                       fields: Fields) -> None:
        if self.client.on_message is not None:
            self.client.on_message(msg, fields)
            return
        f = {int(k): v for k, v in fields.items()}
        self.client.inbox.put(Received(f.get(35, ""), f, msg.toString()))


class FixClient:
    """One initiator session. `on_message`, when set, replaces queueing (benchmarks use it to
    answer from inside the callback, the way the reference figures were measured)."""

    def __init__(self, *, host: str, port: int, sender: str, target: str, store_dir: Path,
                 heartbeat_s: int = 30, reset_on_logon: bool = False,
                 extra: dict[str, str] | None = None) -> None:
        self.sender, self.target = sender, target
        self.session_id = fix.SessionID("FIX.4.4", sender, target)
        self.inbox: queue.Queue[Received] = queue.Queue()
        self.admin: queue.Queue[Received] = queue.Queue()
        self.logged_on = threading.Event()
        # Called with the message and its fields as parsed once (`split_fields`).
        self.on_message: Callable[[fix.Message, Fields], None] | None = None
        self.on_admin_out: Callable[[fix.Message], None] | None = None
        opts = {"SocketConnectHost": host, "SocketConnectPort": str(port),
                "HeartBtInt": str(heartbeat_s), "ReconnectInterval": "1"}
        if reset_on_logon:
            opts["ResetOnLogon"] = "Y"
        opts.update(extra or {})
        defaults = common_defaults(connection_type="initiator", store_dir=store_dir / "store",
                                   log_dir=None, schedule=ScheduleConfig(mode="non-stop"))
        self._settings = SettingsFile(defaults, [SessionBlock(sender, target, opts)]).write(
            store_dir / "client.cfg")
        self._app = SessionApplication(_Collector(self), "client", StatusBoard())
        self._store = fix.FileStoreFactory(self._settings)
        self._initiator: fix.SocketInitiator | None = fix.SocketInitiator(
            self._app, self._store, self._settings)
        self._session: fix.Session | None = None

    def start(self, wait_logon_s: float | None = 10.0) -> None:
        assert self._initiator is not None, "a stopped client cannot be restarted"
        self._initiator.start()
        if wait_logon_s is not None and not self.logged_on.wait(wait_logon_s):
            raise TimeoutError(f"{self.sender}->{self.target}: no logon within {wait_logon_s} s")

    def stop(self) -> None:
        if self._initiator is not None:
            stop_engines([self._initiator])
            # Free the session from QuickFIX's process-wide registry (see Gateway.stop).
            self._initiator = None
            self._session = None

    @property
    def session(self) -> fix.Session:
        if self._session is None:
            self._session = fix.Session.lookupSession(self.session_id)
        return self._session

    def send(self, msg: fix.Message) -> bool:
        return bool(self.session.send(msg))

    def send_fields(self, msg_type: str, fields: list[tuple[int, str]]) -> bool:
        msg = new_message(msg_type)
        for tag, value in fields:
            msg.setField(tag, value)
        return self.send(msg)

    def next_app(self, timeout: float = 5.0,
                 match: Callable[[Received], bool] | None = None) -> Received:
        """The next application message (optionally the next one matching), or TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching application message received")
            try:
                r = self.inbox.get(timeout=left)
            except queue.Empty:
                continue
            if match is None or match(r):
                return r
