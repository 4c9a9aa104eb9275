"""The Python thread state of a QuickFIX connection thread: kept alive while its session is
logged on (one per thread, not one per callback), and let go at the logout. Over loopback TCP,
with a real acceptor and a raw client connecting again and again: QuickFIX starts a thread per
connection, and the C library gives each new one the ident of the one before."""

from __future__ import annotations

import ctypes
import queue
import threading
import time
from pathlib import Path

import quickfix as fix

from gateway.config.model import ScheduleConfig
from gateway.fix.application import BaseHandler, SessionApplication, StatusBoard
from gateway.fix.messages import Fields
from gateway.fix.settings import SessionBlock, SettingsFile, common_defaults, free_port
from tests.fix_session.rawclient import RawFixClient

_py = ctypes.pythonapi
_py.PyInterpreterState_Get.restype = ctypes.c_void_p
_py.PyInterpreterState_ThreadHead.restype = ctypes.c_void_p
_py.PyInterpreterState_ThreadHead.argtypes = (ctypes.c_void_p,)
_py.PyThreadState_Next.restype = ctypes.c_void_p
_py.PyThreadState_Next.argtypes = (ctypes.c_void_p,)


def _thread_states() -> int:
    """How many thread states the interpreter holds (a leaked one stays on this list)."""
    n, ts = 0, _py.PyInterpreterState_ThreadHead(_py.PyInterpreterState_Get())
    while ts:
        n += 1
        ts = _py.PyThreadState_Next(ts)
    return n


class _Marks(threading.local):
    """Set on a thread's first application message: still there at the next one only if the
    thread state lived on between the two callbacks."""
    seen = False


class _Recorder(BaseHandler):
    def __init__(self) -> None:
        self.marks = _Marks()
        self.app: queue.Queue[tuple[int, bool]] = queue.Queue()
        self.logouts: queue.Queue[int] = queue.Queue()

    def on_app_message(self, msg: fix.Message, session_id: fix.SessionID,
                       fields: Fields) -> None:
        self.app.put((threading.get_ident(), self.marks.seen))
        self.marks.seen = True

    def on_logout(self, session_id: fix.SessionID) -> None:
        self.logouts.put(threading.get_ident())


def _logged_on(port: int) -> RawFixClient:
    """A client logged on to the acceptor. QuickFIX finishes tearing down the previous
    connection just after its onLogout; a Logon in that instant is dropped with the new
    connection, and the client connects again, as an OMS would."""
    for _attempt in range(20):
        client = RawFixClient("127.0.0.1", port, "INI", "ACC").connect()
        try:
            client.logon(heartbeat_s=30, reset=True)
            return client
        except AssertionError:
            client.close()
            if not client.received or client.received[-1].get(35) != b"A":
                time.sleep(0.05)
                continue
            raise
    raise AssertionError("no logon in 20 attempts")


def _news(client: RawFixClient, text: str) -> None:
    client.send("B", [(148, text), (33, "1"), (58, text)])


def test_each_connection_thread_keeps_one_state_and_lets_it_go(tmp_path: Path) -> None:
    port = free_port()
    defaults = common_defaults(connection_type="acceptor", store_dir=tmp_path / "store",
                               log_dir=None, schedule=ScheduleConfig(mode="non-stop"))
    defaults.update({"SocketAcceptPort": str(port), "HeartBtInt": "30"})
    settings = SettingsFile(defaults, [SessionBlock("ACC", "INI", {})]).write(
        tmp_path / "acc.cfg")
    rec = _Recorder()
    app = SessionApplication(rec, "acceptor", StatusBoard())
    store = fix.FileStoreFactory(settings)
    acceptor = fix.ThreadedSocketAcceptor(app, store, settings)
    acceptor.start()
    try:
        before = _thread_states()
        for connection in range(5):
            client = _logged_on(port)
            try:
                for i in range(3):
                    _news(client, f"c{connection} m{i}")
                got = [rec.app.get(timeout=5) for _ in range(3)]
                assert [seen for _, seen in got] == [False, True, True], (
                    f"connection {connection}: the thread state did not live on between "
                    f"callbacks ({got}, {client.transcript()})")
                client.logout()
                assert rec.logouts.get(timeout=5) == got[0][0]
            finally:
                client.close()
        # Five connection threads came and went; their states went with them (the last may
        # still be on its way out, and other tests' threads in this process come and go: the
        # count is read until it settles, while a leak stays at +5 for good).
        deadline = time.monotonic() + 3
        while (left := _thread_states() - before) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert left <= 1, f"{left} thread states left behind by 5 connections"
    finally:
        acceptor.stop(True)
        del acceptor, app, store, settings
