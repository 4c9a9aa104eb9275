"""Pass-through of whole gRPC services to another server, bytes in and bytes out.

The event process (`gateway.events.process`) owns the public gRPC port, but SignalService and
PositioningService live inside the gateway, next to the signal runner they read and feed. Rather
than a second public port, the event process forwards those services' calls to a loopback
server in the gateway: requests and responses are never parsed here (no serializers), status
codes, details and deadlines pass through, and the services stay listed for reflection and
health because their descriptors are in the generated code this module imports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, NoReturn, TypeAlias

import grpc
from google.protobuf import descriptor_pool

from gateway._proto.fixgw.v1 import signals_pb2  # noqa: F401  (registers the descriptors)

__all__ = ["proxy_registrations"]

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


async def _abort(context: Context, err: grpc.aio.AioRpcError) -> NoReturn:
    trailing = tuple((k, v) for k, v in (err.trailing_metadata() or ()))
    await context.abort(err.code(), err.details() or "", trailing_metadata=trailing)
    raise AssertionError("unreachable: abort raises")


async def _relay(call: Any, context: Context) -> AsyncIterator[bytes]:
    """The responses of a streaming call, its status passed on, cancelled if our client goes."""
    try:
        async for response in call:
            yield response
    except grpc.aio.AioRpcError as err:
        await _abort(context, err)
    finally:
        call.cancel()


class _Forwarder:
    """One channel to the target, created on the serving loop (aio channels bind to a loop)."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._channel: grpc.aio.Channel | None = None

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._target)
        return self._channel

    def unary_unary(self, method: str) -> Callable[[bytes, Context], Any]:
        async def handle(request: bytes, context: Context) -> bytes:
            call = self.channel.unary_unary(method)
            try:
                response: bytes = await call(request, timeout=context.time_remaining())
            except grpc.aio.AioRpcError as err:
                await _abort(context, err)
            return response
        return handle

    def unary_stream(self, method: str) -> Callable[[bytes, Context], AsyncIterator[bytes]]:
        async def handle(request: bytes, context: Context) -> AsyncIterator[bytes]:
            call = self.channel.unary_stream(method)(request, timeout=context.time_remaining())
            async for response in _relay(call, context):  # an async generator, as grpc wants
                yield response
        return handle

    def stream_unary(self, method: str) -> Callable[[AsyncIterator[bytes], Context], Any]:
        async def handle(requests: AsyncIterator[bytes], context: Context) -> bytes:
            call = self.channel.stream_unary(method)
            try:
                response: bytes = await call(requests, timeout=context.time_remaining())
            except grpc.aio.AioRpcError as err:
                await _abort(context, err)
            return response
        return handle

    def stream_stream(
        self, method: str
    ) -> Callable[[AsyncIterator[bytes], Context], AsyncIterator[bytes]]:
        async def handle(requests: AsyncIterator[bytes],
                         context: Context) -> AsyncIterator[bytes]:
            call = self.channel.stream_stream(method)(requests, timeout=context.time_remaining())
            async for response in _relay(call, context):
                yield response
        return handle


def _handlers(forward: _Forwarder, service: str) -> grpc.GenericRpcHandler:
    desc = descriptor_pool.Default().FindServiceByName(service)
    methods: dict[str, grpc.RpcMethodHandler] = {}
    for m in desc.methods:
        path = f"/{service}/{m.name}"
        if m.client_streaming and m.server_streaming:
            methods[m.name] = grpc.stream_stream_rpc_method_handler(forward.stream_stream(path))
        elif m.client_streaming:
            methods[m.name] = grpc.stream_unary_rpc_method_handler(forward.stream_unary(path))
        elif m.server_streaming:
            methods[m.name] = grpc.unary_stream_rpc_method_handler(forward.unary_stream(path))
        else:
            methods[m.name] = grpc.unary_unary_rpc_method_handler(forward.unary_unary(path))
    return grpc.method_handlers_generic_handler(service, methods)


def proxy_registrations(
    target: str, services: Sequence[str]
) -> list[Callable[[grpc.aio.Server], str]]:
    """For ``EventServer(extra_services=...)``: forward each named service to `target`."""
    forward = _Forwarder(target)

    def register(service: str) -> Callable[[grpc.aio.Server], str]:
        def add(server: grpc.aio.Server) -> str:
            server.add_generic_rpc_handlers((_handlers(forward, service),))
            return service
        return add

    return [register(s) for s in services]
