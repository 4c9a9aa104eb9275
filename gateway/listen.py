"""Binding our gRPC listeners, with an error an operator can act on.

A port that is taken must stop `fixgw run` with one line naming the listener and the address
(and, added by the runner, the flag or setting that picks another), not a traceback from
inside grpcio. Low-level: imports grpc and nothing of ours; the admin service and the event
server bind through `grpc_bind`, the metrics listener raises `ListenError` itself.
"""

from __future__ import annotations

import grpc

__all__ = ["ListenError", "grpc_bind", "host_port"]


class ListenError(OSError):
    """A listener could not bind its address; the message says which and where. An OSError,
    as the bind's own error is: code that retries a start on OSError (the event process's
    restart) goes on doing so."""


def host_port(host: str, port: int) -> str:
    """`host:port` as gRPC and operators write it: an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def grpc_bind(server: grpc.Server | grpc.aio.Server, address: str,
              credentials: grpc.ServerCredentials | None, listener: str) -> int:
    """Add `address` to `server` (TLS with `credentials`); returns the bound port."""
    try:
        port = (server.add_secure_port(address, credentials) if credentials is not None
                else server.add_insecure_port(address))
    except RuntimeError:  # grpcio >= 1.57 raises where older ones returned 0
        port = 0
    if port == 0:
        raise ListenError(f"{listener} cannot listen on {address} (address in use?)")
    return int(port)
