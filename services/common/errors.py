"""The server's error tree. Each maps to one gRPC status at the RPC boundary (common/rpc.py).

ServiceError                 INTERNAL
├── InvalidArgument          INVALID_ARGUMENT
├── NotFound                 NOT_FOUND
├── ResourceExhausted        RESOURCE_EXHAUSTED
├── FailedPrecondition       FAILED_PRECONDITION
├── PermissionDenied         PERMISSION_DENIED (a credential that may not do this)
└── Unavailable              UNAVAILABLE (Redis out of reach of a submission made in a caller's process)
"""

from __future__ import annotations

import grpc


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
