#!/usr/bin/env python3
"""The bare QuickFIX relay: the baseline the gateway is judged against.

    python tools/benchlib/relay.py --listen-port P --venue-port V [--sender RELAY]

An acceptor toward the OMS (--oms-side-comp, default FIXGW; the benchmark uses RELAY so its
OMS sessions to relay and gateway differ) and an initiator toward the venue (RELAY ->
KRAKEN-TRD), with the same QuickFIX settings the gateway renders (FileStore, data dictionary
validation, no message log). Each application message is copied to the other session inside
the fromApp callback that received it; nothing is mapped, checked or recorded. So the relay
costs exactly what any QuickFIX-in-Python hop costs: two parses, two validations, two store
writes, two socket writes and the SWIG round trips; the gateway's overhead is whatever it
adds on top.

ClOrdIDs pass through unchanged and the venue answers with them, so every report goes back
to the one OMS session. Prints one JSON line `{"port": P}` once the venue session is logged
on, then runs until SIGTERM/SIGINT or until stdin closes (so it never outlives its parent).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

import quickfix as fix

from gateway.config.model import ScheduleConfig
from gateway.fix.engines import stop_engines
from gateway.fix.kraken_logon import KrakenCredentials, add_trading_logon_fields
from gateway.fix.settings import (
    SessionBlock,
    SettingsFile,
    acceptor_address_policy,
    common_defaults,
)

_STRIP = (43, 97, 122)  # PossDupFlag, PossResend, OrigSendingTime: new message on the next hop
_MSG_TYPE = 35
_LOGON = "A"


class RelayApp(fix.Application):  # type: ignore[misc]
    """Copies every application message to the peer session; signs the venue logon."""

    def __init__(self, venue_comp: str, creds: KrakenCredentials | None) -> None:
        super().__init__()
        self.venue_comp = venue_comp
        self.creds = creds
        self.venue_up = threading.Event()
        # session id string -> the peer fix.Session, filled at logon (one lookup, then cached).
        self._peer: dict[str, fix.Session] = {}
        self._oms_sid: fix.SessionID | None = None
        self._venue_sid: fix.SessionID | None = None

    def _is_venue(self, sid: fix.SessionID) -> bool:
        return bool(sid.getTargetCompID().getValue() == self.venue_comp)

    def _link(self) -> None:
        if self._oms_sid is None or self._venue_sid is None:
            return
        oms = fix.Session.lookupSession(self._oms_sid)
        venue = fix.Session.lookupSession(self._venue_sid)
        self._peer = {self._oms_sid.toString(): venue, self._venue_sid.toString(): oms}

    def onCreate(self, sessionID: fix.SessionID) -> None:
        if self._is_venue(sessionID):
            self._venue_sid = sessionID
        else:
            self._oms_sid = sessionID
        self._link()

    def onLogon(self, sessionID: fix.SessionID) -> None:
        self._link()
        if self._is_venue(sessionID):
            self.venue_up.set()

    def onLogout(self, sessionID: fix.SessionID) -> None:
        if self._is_venue(sessionID):
            self.venue_up.clear()

    def toAdmin(self, message: fix.Message, sessionID: fix.SessionID) -> None:
        if (self.creds is not None and self._is_venue(sessionID)
                and message.getHeader().getField(_MSG_TYPE) == _LOGON):
            add_trading_logon_fields(message, self.creds, False)

    def fromAdmin(self, message: fix.Message, sessionID: fix.SessionID) -> None:
        pass

    def toApp(self, message: fix.Message, sessionID: fix.SessionID) -> None:
        pass

    def fromApp(self, message: fix.Message, sessionID: fix.SessionID) -> None:
        peer = self._peer.get(sessionID.toString())
        if peer is None:
            return
        header = message.getHeader()
        for tag in _STRIP:
            if header.isSetField(tag):
                header.removeField(tag)
        peer.send(message)


def _settings(data_dir: Path, connection_type: str, extra: dict[str, str],
              sessions: list[SessionBlock]) -> fix.SessionSettings:
    defaults = common_defaults(connection_type=connection_type,
                               store_dir=data_dir / "store" / connection_type, log_dir=None,
                               schedule=ScheduleConfig(mode="non-stop"), extra=extra)
    return SettingsFile(defaults, sessions).write(data_dir / f"{connection_type}.cfg")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="bare QuickFIX relay (benchmark baseline)")
    p.add_argument("--listen-port", type=int, required=True)
    p.add_argument("--venue-host", default="127.0.0.1")
    p.add_argument("--venue-port", type=int, required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--sender", default="RELAY", help="our CompID toward the venue")
    p.add_argument("--venue-comp", default="KRAKEN-TRD")
    p.add_argument("--oms-side-comp", default="FIXGW", help="our CompID toward the OMS")
    p.add_argument("--oms-comp", default="OMS")
    p.add_argument("--logon-timeout", type=float, default=20.0)
    args = p.parse_args(argv)

    key, secret = os.environ.get("FIXGW_BENCH_API_KEY"), os.environ.get("FIXGW_BENCH_API_SECRET")
    creds = KrakenCredentials(key, secret) if key and secret else None
    app = RelayApp(args.venue_comp, creds)
    venue_settings = _settings(
        args.data_dir, "initiator", {"HeartBtInt": "30", "ReconnectInterval": "1"},
        [SessionBlock(args.sender, args.venue_comp,
                      {"SocketConnectHost": args.venue_host,
                       "SocketConnectPort": str(args.venue_port)})])
    oms_settings = _settings(
        args.data_dir, "acceptor",
        {"SocketAcceptPort": str(args.listen_port), **acceptor_address_policy("127.0.0.1", ())},
        [SessionBlock(args.oms_side_comp, args.oms_comp)])
    logs = fix.ScreenLogFactory(False, False, False)
    venue_store = fix.FileStoreFactory(venue_settings)
    oms_store = fix.FileStoreFactory(oms_settings)
    initiator = fix.SocketInitiator(app, venue_store, venue_settings, logs)
    acceptor = fix.SocketAcceptor(app, oms_store, oms_settings, logs)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    def _watch_stdin() -> None:
        # Raw os.read: a daemon thread parked in a buffered read can abort interpreter exit.
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        done.set()

    threading.Thread(target=_watch_stdin, daemon=True).start()
    initiator.start()
    accepting = False
    try:
        if not app.venue_up.wait(args.logon_timeout):
            print(f"relay: venue session not logged on within {args.logon_timeout} s",
                  file=sys.stderr, flush=True)
            return 1
        acceptor.start()
        accepting = True
        print(json.dumps({"port": args.listen_port}), flush=True)
        while not done.wait(0.5):
            pass
    finally:
        stop_engines([acceptor, initiator] if accepting else [initiator])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
