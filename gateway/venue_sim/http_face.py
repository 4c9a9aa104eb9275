"""What every HTTP face of the simulator shares: a loopback ThreadingHTTPServer bound at
construction (so `.port`/`.base_url` are known before `start()`), the same port across
`stop()`/`start()` (a client configured once sees the venue go away and come back), and a
`stop()` that really drops keep-alive connections, as a venue outage would."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class _HTTPServer(ThreadingHTTPServer):
    """Tracks live connections so `stop()` can drop keep-alive clients; otherwise a client could
    keep talking to a handler thread of a "stopped" server."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if isinstance(request, socket.socket):
            with self._conns_lock:
                self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._conns_lock:
                self._conns.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):  # already closed by the peer
                conn.shutdown(socket.SHUT_RDWR)


class HttpFace:
    """Base of the simulator's HTTP faces; subclasses provide `_handler_class()` and may
    override `_on_start()` (a log line) and `close()` (detach from the engine)."""

    face_name = "http"

    def _init_http(self, host: str, port: int) -> None:
        self.host = host
        self._httpd: _HTTPServer | None = self._bind(port)
        self.port: int = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def _bind(self, port: int) -> _HTTPServer:
        return _HTTPServer((self.host, port), self._handler_class())

    def _on_start(self) -> None:
        pass

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Serve on a daemon thread; after `stop()`, rebinds the same port."""
        if self.running:
            return
        if self._httpd is None:
            self._httpd = self._bind(self.port)
        # A short poll interval makes stop() return in ~50 ms instead of the default 0.5 s.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name=f"{self.face_name}:{self.port}", daemon=True)
        self._thread.start()
        self._on_start()

    def stop(self) -> None:
        """Stop serving, close the listening socket and drop open connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        if self._thread is not None:
            httpd.shutdown()
            self._thread.join(timeout=5.0)
            self._thread = None
        httpd.server_close()
        httpd.drop_connections()

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
