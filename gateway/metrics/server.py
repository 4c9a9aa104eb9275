"""The metrics HTTP listener: ``GET /metrics`` in the Prometheus text format.

prometheus_client's own WSGI server on a daemon thread, with a private registry that holds only
the gateway's collector: a scrape runs `GatewayMetrics.collect` on that thread and nowhere else.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.registry import Collector, CollectorRegistry

from gateway.listen import ListenError

log = logging.getLogger("fixgw.metrics")


class MetricsServer:
    """``start()`` binds and returns the port (``port=0`` picks a free one); ``stop()``."""

    def __init__(self, collector: Collector, host: str = "127.0.0.1", port: int = 9464) -> None:
        self.host, self.port = host, port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        try:
            server, thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            raise ListenError(f"metrics listener cannot bind {self.host}:{self.port} "
                              f"({exc.strerror or exc})") from None
        self._server, self._thread = server, thread
        self.port = int(server.server_port)
        log.info("Prometheus metrics on http://%s:%d/metrics", self.host, self.port)
        return self.port

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
