"""What every WebSocket face of the simulator shares: an asyncio loop on a daemon thread, one
writer task and outbound queue per connection, the path check, and the faults tests inject
(stall a key or everything, drop every connection).

Why a queue per connection: faces produce frames from the engine's listener and from timers on
the loop, and a slow client must not hold up the others; the writer task is the only one that
awaits the socket. Subclasses say what a connection holds (`_new_conn`), what runs next to the
server (`_tasks`), and how a message is answered (`_on_message`); see `spot_ws` and
`futures_ws`. May import: the standard library and `websockets`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from gateway.transports.kraken_ws import dumps

__all__ = ["WsConn", "WsFace"]

CLOSE_TIMEOUT_S = 1.0

log = logging.getLogger("fixgw.venue_sim")


@dataclass(eq=False)
class WsConn:
    """One client connection: its socket and the frames waiting to be written (None closes)."""

    ws: ServerConnection
    out: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)


ConnT = TypeVar("ConnT", bound=WsConn)


class WsFace(Generic[ConnT]):
    """Lifecycle and connection plumbing; call `_init_ws` from the subclass's __init__."""

    path: ClassVar[str]
    label: ClassVar[str]  # in thread names, log lines and errors, e.g. "spot WS"
    max_size: ClassVar[int] = 2**16

    def _init_ws(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._stop_evt: asyncio.Event | None = None
        self._conns: set[ConnT] = set()
        self._stall_until: dict[str | None, float] = {}
        self.connections_total = 0  #: accepted connections so far (tests count reconnects)

    # ---- what a face adds -----------------------------------------------------------------------

    def _new_conn(self, ws: ServerConnection) -> ConnT:
        raise NotImplementedError

    async def _on_message(self, conn: ConnT, raw: str | bytes) -> None:
        raise NotImplementedError

    async def _on_open(self, conn: ConnT) -> None:
        """A client connected (before its first message)."""

    async def _on_start(self) -> None:
        """On the loop, before the port is bound."""

    def _on_stop(self) -> None:
        """On the face's thread once the loop has ended (also after a failed start)."""

    def _tasks(self) -> list[Coroutine[Any, Any, None]]:
        """Coroutines that run while the face serves (timers, publishers)."""
        return []

    # ---- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.path}"

    def start(self) -> None:
        """Bind and serve on a daemon thread; returns once the port is known."""
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self._stop_evt = asyncio.Event()
            await self._on_start()
            # close_timeout: at stop, a client that no longer reads (its own loop already
            # stopped) would hold the face for websockets' default 10 s per connection.
            async with serve(self._handle, self.host, self.port, max_size=self.max_size,
                             close_timeout=CLOSE_TIMEOUT_S) as server:
                self._server = server
                self.port = int(next(iter(server.sockets)).getsockname()[1])
                tasks = [asyncio.create_task(c) for c in self._tasks()]
                ready.set()
                log.info("%s simulator on %s", self.label, self.url)
                await self._stop_evt.wait()
                for t in tasks:
                    t.cancel()
                for c in list(self._conns):
                    c.out.put_nowait(None)
                server.close()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(main())
            except BaseException as exc:  # surfaced to start()'s caller
                failure.append(exc)
                ready.set()
            finally:
                self._on_stop()
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        name = "venue-sim-" + self.label.lower().replace(" ", "-")
        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()
        ready.wait(10.0)
        if failure:
            self._thread = None
            raise RuntimeError(f"{self.label} face failed to start") from failure[0]

    def stop(self, timeout: float = 5.0) -> None:
        loop, evt, thread = self._loop, self._stop_evt, self._thread
        if loop is not None and evt is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(evt.set)
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    # ---- faults ---------------------------------------------------------------------------------

    def drop_all(self) -> None:
        """Close every client connection (the venue dropping sockets)."""
        def drop() -> None:
            for c in list(self._conns):
                c.out.put_nowait(None)
        self._post(drop)

    def _stall(self, key: str | None, seconds: float) -> None:
        until = time.monotonic() + seconds
        self._post(lambda: self._stall_until.__setitem__(key, until))

    def _stalled(self, key: str | None) -> bool:
        """Stalled for `key`, or everything is (the None key)."""
        now = time.monotonic()
        if self._stall_until.get(None, 0.0) > now:
            return True
        return key is not None and self._stall_until.get(key, 0.0) > now

    def _post(self, fn: Callable[[], object]) -> None:
        """Run `fn` on the face's loop and wait for it (any thread)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("server not started")
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        loop.call_soon_threadsafe(run)
        done.wait(5.0)

    # ---- connections ----------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        if path.split("?")[0].rstrip("/") != self.path:
            await ws.close(1008, "unknown path")
            return
        conn = self._new_conn(ws)
        self._conns.add(conn)
        self.connections_total += 1
        writer = asyncio.create_task(self._writer(conn))
        try:
            await self._on_open(conn)
            async for raw in ws:
                await self._on_message(conn, raw)
        except ConnectionClosed:
            pass
        finally:
            self._conns.discard(conn)
            conn.out.put_nowait(None)
            await writer

    async def _writer(self, conn: ConnT) -> None:
        try:
            while True:
                text = await conn.out.get()
                if text is None:
                    break
                await conn.ws.send(text)
        except ConnectionClosed:
            pass
        finally:
            self._conns.discard(conn)
            await conn.ws.close()

    def _send(self, conn: ConnT, msg: Mapping[str, Any]) -> None:
        conn.out.put_nowait(dumps(msg))
