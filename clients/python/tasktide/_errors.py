"""Mapping of gRPC failures to the tasktide error tree, at the boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from tasktide._exceptions import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
)

_BY_CODE: dict[grpc.StatusCode, type[ServiceError]] = {
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}


# Trailing metadata of a status a tasktide service answered itself (services/common/rpc.py): an
# UNAVAILABLE with it comes from a service that is up, whose Redis or peer is out of reach.
ANSWERED = "tasktide-answered"


def _answered(exc: grpc.RpcError) -> bool:
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    return any(key == ANSWERED for key, _ in trailing or ())


def translate(exc: grpc.RpcError, address: str = "") -> ServiceError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    cls = _BY_CODE.get(code, ServiceError)
    if cls is Unavailable and _answered(exc):
        details = f"tasktide at {address or '?'} is unavailable: {details}"
    elif cls is Unavailable:
        details = f"cannot reach tasktide at {address or '?'}: {details}"
    elif cls in (Unauthenticated, PermissionDenied):
        details = f"tasktide at {address or '?'} refused the call: {details}"
    return cls(details or code.name, code.name)


def error_from_status(code: int, message: str) -> ServiceError:
    """The error for a status carried as data (a refused submission on SubmitStream)."""
    status = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    return _BY_CODE.get(status, ServiceError)(message or status.name, status.name)


def stream_closed(address: str) -> ServiceError:
    return Unavailable(f"the submission stream to {address} closed before the answer came", "UNAVAILABLE")


@contextmanager
def translated(address: str) -> Iterator[None]:
    """Runs a block of gRPC calls to the service at `address`; a failed call leaves it as the
    matching ServiceError (the one place a grpc.RpcError is turned into tasktide's errors)."""
    try:
        yield
    except grpc.RpcError as exc:
        raise translate(exc, address) from None
