"""Registering a servicer on a grpc.aio server, with request parsing and error mapping in one place.

Requests arrive as raw bytes and are parsed here, so a truncated or malformed message gets
INVALID_ARGUMENT (not INTERNAL), and every tasktide ServiceError becomes its gRPC status. Redis out of
reach is UNAVAILABLE and a failed call to another service keeps its status (errors.from_exception,
errors.reported). Other exceptions become INTERNAL with the exception's type; the server keeps
serving. Each such status carries the trailing metadata ANSWERED, so that a client can tell a
service that answered UNAVAILABLE (its Redis or a peer out of reach) from one it could not reach.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import descriptor, message_factory
from google.protobuf.message import DecodeError, Message

from tasktide_services.common.errors import reported

log = logging.getLogger("tasktide.rpc")

ANSWERED = (("tasktide-answered", "1"),)


def _serialize(msg: Message) -> bytes:
    return msg.SerializeToString()


_MALFORMED = (DecodeError, RuntimeError, ValueError)


async def _malformed(cls: type[Message], exc: Exception, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed {cls.DESCRIPTOR.full_name}: {exc}")


async def _parse(cls: type[Message], raw: bytes, context: grpc.aio.ServicerContext) -> Message:
    try:
        return cls.FromString(raw)
    except _MALFORMED as exc:
        await _malformed(cls, exc, context)
        raise  # unreachable: abort raises


async def _fail(exc: BaseException, context: grpc.aio.ServicerContext, method: str) -> None:
    error = reported(exc, method, log)
    await context.abort(error.code, str(error), trailing_metadata=ANSWERED)


def _unary(fn: Callable[..., Any], cls: type[Message], name: str) -> Callable[..., Any]:
    async def handler(raw: bytes, context: grpc.aio.ServicerContext) -> Message:
        req = await _parse(cls, raw, context)
        try:
            return await fn(req, context)  # type: ignore[no-any-return]
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to a status
            await _fail(exc, context, name)
            raise

    return handler


def _server_stream(fn: Callable[..., Any], cls: type[Message], name: str) -> Callable[..., Any]:
    async def handler(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Message]:
        req = await _parse(cls, raw, context)
        try:
            async for item in fn(req, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await _fail(exc, context, name)

    return handler


def _bidi(fn: Callable[..., Any], cls: type[Message], name: str) -> Callable[..., Any]:
    async def handler(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[Message]:
        async def parsed() -> AsyncIterator[Message]:
            async for raw in requests:  # parsed here, with no coroutine per message
                try:
                    req = cls.FromString(raw)
                except _MALFORMED as exc:
                    await _malformed(cls, exc, context)
                    raise  # unreachable: abort raises
                yield req

        try:
            async for item in fn(parsed(), context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await _fail(exc, context, name)

    return handler


def add_service(server: grpc.aio.Server, service: descriptor.ServiceDescriptor, impl: object) -> None:
    """Serve every method of `service` from the same-named coroutine (or async generator) of `impl`."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for m in service.methods:
        cls = message_factory.GetMessageClass(m.input_type)
        fn = getattr(impl, m.name)
        name = f"{service.name}.{m.name}"
        if m.client_streaming and m.server_streaming:
            handlers[m.name] = grpc.stream_stream_rpc_method_handler(_bidi(fn, cls, name), None, _serialize)
        elif m.server_streaming:
            handlers[m.name] = grpc.unary_stream_rpc_method_handler(_server_stream(fn, cls, name), None, _serialize)
        elif m.client_streaming:
            raise NotImplementedError(f"client-streaming method {name} is not used by tasktide")
        else:
            handlers[m.name] = grpc.unary_unary_rpc_method_handler(_unary(fn, cls, name), None, _serialize)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
