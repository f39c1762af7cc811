"""Mapping of gRPC failures to the tasktide error tree, at the boundary."""

from __future__ import annotations

import grpc

from tasktide._exceptions import (
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)

_BY_CODE: dict[grpc.StatusCode, type[ServiceError]] = {
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
}


def translate(exc: grpc.RpcError, address: str = "") -> ServiceError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    cls = _BY_CODE.get(code, ServiceError)
    if cls is Unavailable:
        details = f"cannot reach tasktide at {address or '?'}: {details}"
    return cls(details or code.name, code.name)
