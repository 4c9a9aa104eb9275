"""`stop_engines`: every session logs out with a real Logout exchange, the engines stop, and the
same sessions can run again in this process (QuickFIX's registry was freed). Over loopback TCP
against a real initiator (`FixClient`)."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import quickfix as fix

from gateway.config.model import ScheduleConfig
from gateway.fix.application import BaseHandler, SessionApplication, StatusBoard
from gateway.fix.client import FixClient, Received
from gateway.fix.engines import stop_engines
from gateway.fix.messages import msg_type
from gateway.fix.settings import SessionBlock, SettingsFile, common_defaults, free_port
from tests.fix_session.rawclient import RawFixClient


class _AdminIn(BaseHandler):
    def __init__(self) -> None:
        self.types: queue.Queue[str] = queue.Queue()

    def on_admin_in(self, msg: fix.Message, session_id: fix.SessionID) -> None:
        self.types.put(msg_type(msg))


def _acceptor(tmp: Path, port: int, handler: _AdminIn) -> tuple[fix.Acceptor, list[object]]:
    defaults = common_defaults(connection_type="acceptor", store_dir=tmp / "store", log_dir=None,
                               schedule=ScheduleConfig(mode="non-stop"))
    defaults.update({"SocketAcceptPort": str(port), "HeartBtInt": "30"})
    settings = SettingsFile(defaults, [SessionBlock("ACC", "INI", {})]).write(tmp / "acc.cfg")
    app = SessionApplication(handler, "acceptor", StatusBoard())
    store = fix.FileStoreFactory(settings)
    return fix.ThreadedSocketAcceptor(app, store, settings), [app, settings, store]


def _types(q: queue.Queue[Received] | queue.Queue[str]) -> list[str]:
    out: list[str] = []
    while not q.empty():
        item = q.get_nowait()
        out.append(item if isinstance(item, str) else item.msg_type)
    return out


def test_sessions_log_out_cleanly_and_run_again(tmp_path: Path) -> None:
    port = free_port()
    for run in range(2):  # the second run needs the first one's sessions gone from QuickFIX
        seen = _AdminIn()
        acceptor, keep = _acceptor(tmp_path, port, seen)
        acceptor.start()
        client = FixClient(host="127.0.0.1", port=port, sender="INI", target="ACC",
                           store_dir=tmp_path / "client")
        try:
            client.start()
            stop_engines([acceptor])
            # The acceptor asked (Logout out) and the client answered (Logout in): a clean
            # end, not a dropped connection.
            assert "5" in _types(seen.types), f"run {run}: no Logout answer from the client"
            assert "5" in _types(client.admin), f"run {run}: the client got no Logout"
            session = fix.Session.lookupSession(fix.SessionID("FIX.4.4", "ACC", "INI"))
            assert session is not None and not session.isLoggedOn()
        finally:
            client.stop()
            del acceptor, keep


def test_a_peer_that_never_answers_the_logout_does_not_hang_the_stop(tmp_path: Path) -> None:
    """A counterparty that takes the Logout and says nothing: QuickFIX drops it after its
    LogoutTimeout, and the stop goes on (a shutdown must never wait on a silent peer)."""
    port = free_port()
    acceptor, keep = _acceptor(tmp_path, port, _AdminIn())
    acceptor.start()
    peer = RawFixClient("127.0.0.1", port, "INI", "ACC").connect()
    try:
        peer.logon(heartbeat_s=30)
        # QuickFIX sends its Logon answer a moment before it counts the session as logged on;
        # a stop in between has nothing to log out (seen under load in CI).
        session = fix.Session.lookupSession(fix.SessionID("FIX.4.4", "ACC", "INI"))
        deadline = time.monotonic() + 5
        while not session.isLoggedOn() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session.isLoggedOn()
        stopper = threading.Thread(target=stop_engines, args=([acceptor],), daemon=True)
        stopper.start()
        peer.expect("5", timeout=5)  # asked to log out; never answers
        stopper.join(timeout=30)
        assert not stopper.is_alive(), "stop_engines still waiting on a silent peer"
        assert peer.is_closed(timeout=5), peer.transcript()
    finally:
        peer.close()
        del acceptor, keep
