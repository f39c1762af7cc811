"""The server's error tree. Each maps to one gRPC status at the RPC boundary (common/rpc.py).

ServiceError                 INTERNAL
├── InvalidArgument          INVALID_ARGUMENT
├── NotFound                 NOT_FOUND
├── ResourceExhausted        RESOURCE_EXHAUSTED
├── FailedPrecondition       FAILED_PRECONDITION
├── PermissionDenied         PERMISSION_DENIED (a credential that may not do this)
└── Unavailable              UNAVAILABLE (Redis or another service out of reach: try again)

`from_exception` gives the error of an exception raised while serving a call, so that a Redis out of
reach is UNAVAILABLE (never INTERNAL) and a failed call to another service keeps its status.
"""

from __future__ import annotations

import logging

import grpc
from redis.exceptions import ClusterDownError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class ServiceError(Exception):
    code = grpc.StatusCode.INTERNAL


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


# Redis errors that mean "not now": no connection, no answer in time, a server still loading its
# data (a ConnectionError), a cluster without a quorum or moving a slot.
REDIS_AWAY = (RedisConnectionError, RedisTimeoutError, ClusterDownError, TryAgainError)
_AWAY_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def out_of_reach(exc: BaseException) -> bool:
    """Whether `exc` says only that Redis or another service did not answer (REDIS_AWAY, a timeout,
    a call or a local peer ending UNAVAILABLE or DEADLINE_EXCEEDED), nothing of what was asked:
    asking again later may succeed."""
    if isinstance(exc, (*REDIS_AWAY, TimeoutError)):
        return True
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code() in _AWAY_CODES
    return isinstance(exc, ServiceError) and exc.code in _AWAY_CODES


# A status of another service's answer passed on as it is; any other means that service failed.
_PEER = {c.code: c for c in (InvalidArgument, NotFound, ResourceExhausted, FailedPrecondition, PermissionDenied)}


def from_exception(exc: BaseException, where: str) -> ServiceError:
    """The error `exc` stands for, its message prefixed by `where` (the service or method): itself
    if it is one; UNAVAILABLE for Redis out of reach; for a failed call to another service, that
    call's status if it is one a caller can act on, else UNAVAILABLE; INTERNAL for anything else."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, REDIS_AWAY):
        return Unavailable(f"{where}: Redis is out of reach ({exc}); try again")
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        kind = _PEER.get(code)
        if kind is not None:
            return kind(f"{where}: {exc.details()}")
        return Unavailable(f"{where}: another service is out of reach or failed ({code.name}: {exc.details()}); retry")
    return ServiceError(f"{where}: {type(exc).__name__}: {exc}")


def reported(exc: BaseException, where: str, log: logging.Logger) -> ServiceError:
    """`from_exception`, logged when it is not already a ServiceError: a defect (INTERNAL) with its
    traceback, a refusal or an outage as a warning."""
    error = from_exception(exc, where)
    if error is not exc:
        if error.code == grpc.StatusCode.INTERNAL:
            log.error("%s failed", where, exc_info=exc)
        else:
            log.warning("%s refused: %s", where, error)
    return error
