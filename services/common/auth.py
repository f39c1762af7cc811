"""Who is calling: signed tokens, roles, and the one server interceptor that checks every call.

A token is a JWT (PyJWT) signed with the platform's key (`TASKTIDE_AUTH_KEY`: the secret itself, or
`@/path/to/file` holding it), HMAC-SHA256. Its claims:

    sub    who it was made for (free text, shown in logs)
    ns     the namespace the caller acts in
    role   producer | worker | admin | service
    queues the queues a worker token may consume (absent or empty: any of its namespace)
    jti    the token's id, which a revocation list can refuse
    iat, exp

Roles add up: a worker may do what a producer does (a task submits subtasks) and open a Session; an
admin may do what a producer does and run the platform (queues, dead letters, schedules, workers);
a service may call everything, including the internal RPCs the services call on each other.

The interceptor checks the token of every call and of every stream's opening, except gRPC health
checking (left open for probes), and hands the handler a `Caller` through `current_caller()`;
handlers never read metadata themselves. Calls between services hosted in one process do not pass
through gRPC: they run as the service caller (`as_service`).
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import jwt

from tasktide._channels import aio_bearer_interceptors

log = logging.getLogger("tasktide.auth")

ROLES = ("producer", "worker", "admin", "service")
ISSUER = "tasktide"
DEFAULT_NAMESPACE = "default"
_ALG = "HS256"
_MIN_KEY_BYTES = 32  # RFC 7518: an HS256 key at least as long as the hash
NAMESPACE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


class AuthError(Exception):
    """A token that cannot be used: missing, malformed, expired, revoked, or a bad key setting."""


@dataclass(frozen=True)
class Caller:
    """The credential a call was made with, as the handlers see it."""

    namespace: str
    role: str
    queues: frozenset[str] = frozenset()
    subject: str = ""
    token_id: str = ""

    def may_consume(self, queue: str) -> bool:
        """A worker token names the queues it may consume; no list means any queue of its namespace."""
        return self.role in ("service", "admin") or not self.queues or queue in self.queues


SERVICE = Caller(namespace=DEFAULT_NAMESPACE, role="service", subject="tasktide-service")
# Without TASKTIDE_AUTH_KEY nothing is checked: every caller acts as this one (dev set-ups).
ANONYMOUS = Caller(namespace=DEFAULT_NAMESPACE, role="service", subject="anonymous")

_current: contextvars.ContextVar[Caller] = contextvars.ContextVar("tasktide_caller", default=ANONYMOUS)


def current_caller() -> Caller:
    """The caller of the RPC being handled (ANONYMOUS when the server checks no tokens)."""
    return _current.get()


@contextmanager
def as_service() -> Iterator[None]:
    """Run a call between services of one process as the service caller."""
    token = _current.set(SERVICE)
    try:
        yield
    finally:
        _current.reset(token)


def read_key(setting: str) -> bytes:
    """The signing key from its setting: the secret itself, or `@PATH` of a file holding it."""
    if setting.startswith("@"):
        try:
            raw = Path(setting[1:]).read_bytes().strip()
        except OSError as exc:
            raise AuthError(f"cannot read the key file {setting[1:]}: {exc.strerror}") from None
    else:
        raw = setting.encode()
    if len(raw) < _MIN_KEY_BYTES:
        raise AuthError(f"the auth key must be at least {_MIN_KEY_BYTES} bytes long (it has {len(raw)})")
    return raw


def parse_duration(text: str) -> float:
    """Seconds from `90`, `90s`, `15m`, `12h`, `30d`."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    try:
        if text and text[-1] in units:
            value = float(text[:-1]) * units[text[-1]]
        else:
            value = float(text)
    except ValueError:
        raise AuthError(f"not a duration: {text!r} (use 90s, 15m, 12h or 30d)") from None
    if not value > 0:
        raise AuthError(f"a duration must be positive, got {text!r}")
    return value


def mint(
    key: bytes,
    *,
    namespace: str,
    role: str,
    queues: Iterable[str] = (),
    ttl_seconds: float | None = None,
    subject: str = "",
    now: float | None = None,
) -> str:
    """A signed token for `namespace` and `role`."""
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if not NAMESPACE.fullmatch(namespace):
        raise AuthError(f"a namespace is 1..64 of A-Z a-z 0-9 _ . : -, got {namespace[:80]!r}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": subject or f"{role}@{namespace}",
        "ns": namespace,
        "role": role,
        "jti": uuid.uuid4().hex,
        "iat": issued,
    }
    queue_list = sorted(set(queues))
    if queue_list:
        claims["queues"] = queue_list
    if ttl_seconds is not None:
        claims["exp"] = issued + int(ttl_seconds)
    return jwt.encode(claims, key, algorithm=_ALG)


class Revocations:
    """Token ids refused although their signature holds: one id per line in a file, read again
    when the file changes (checked at most once a second)."""

    def __init__(self, path: str = "") -> None:
        self._path = path
        self._ids: frozenset[str] = frozenset()
        self._mtime = -1.0
        self._checked = 0.0

    def __contains__(self, token_id: str) -> bool:
        if not self._path:
            return False
        now = time.monotonic()
        if now - self._checked >= 1.0:
            self._checked = now
            self._reload()
        return token_id in self._ids

    def _reload(self) -> None:
        try:
            mtime = os.stat(self._path).st_mtime
            if mtime == self._mtime:
                return
            lines = Path(self._path).read_text().splitlines()
        except OSError as exc:  # kept as it was: a missing file does not un-revoke anything
            log.warning("cannot read the revocation list %s: %s", self._path, exc.strerror)
            return
        self._ids = frozenset(s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#"))
        self._mtime = mtime


@dataclass
class Authenticator:
    """Checks tokens signed with `key`."""

    key: bytes
    revoked: Revocations = field(default_factory=Revocations)

    def caller(self, token: str) -> Caller:
        try:
            claims = jwt.decode(
                token, self.key, algorithms=[_ALG], issuer=ISSUER, options={"require": ["iat", "jti", "iss"]}
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"the token is not valid: {exc}") from None
        role, namespace = claims.get("role"), claims.get("ns")
        if role not in ROLES or not isinstance(namespace, str) or not NAMESPACE.fullmatch(namespace):
            raise AuthError("the token names no valid role and namespace")
        if claims["jti"] in self.revoked:
            raise AuthError(f"the token {claims['jti']} has been revoked")
        queues = claims.get("queues") or []
        if not isinstance(queues, list) or not all(isinstance(q, str) for q in queues):
            raise AuthError("the token's queues are not a list of names")
        return Caller(namespace, role, frozenset(queues), str(claims.get("sub", "")), str(claims["jti"]))


def bearer(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The token of an `authorization: Bearer TOKEN` entry; raises AuthError without one."""
    for k, v in metadata or ():
        if k == "authorization":
            value = v.decode() if isinstance(v, bytes) else v
            scheme, _, token = value.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("the authorization header must be 'Bearer TOKEN'")
            return token.strip()
    raise AuthError("no token: send 'authorization: Bearer TOKEN' (TASKTIDE_TOKEN)")


Handler = Callable[..., Any]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks the token and the role of every call but health checking, at the opening of streams
    too; the handler then runs with the caller set (current_caller)."""

    def __init__(
        self, authenticator: Authenticator, allowed: Mapping[str, frozenset[str]], open_methods: Iterable[str]
    ):
        self._auth = authenticator
        self._allowed = allowed
        self._open = tuple(open_methods)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(self._open):
            return handler
        try:
            caller = self._auth.caller(bearer(details.invocation_metadata))
        except AuthError as exc:
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, f"{method}: {exc}")
        roles = self._allowed.get(method)
        if roles is None or caller.role not in roles:
            return _refusal(handler, grpc.StatusCode.PERMISSION_DENIED, f"{method}: not allowed for role {caller.role}")
        return _with_caller(handler, caller)


def _with_caller(handler: grpc.RpcMethodHandler, caller: Caller) -> grpc.RpcMethodHandler:
    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            _current.set(caller)  # this call's own task: the value does not leak to other calls
            return await inner_uu(request, context)

        return handler._replace(unary_unary=unary_unary)
    if handler.unary_stream is not None:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            _current.set(caller)
            async for item in inner_us(request, context):
                yield item

        return handler._replace(unary_stream=unary_stream)
    if handler.stream_stream is not None:
        inner_ss = handler.stream_stream

        async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            _current.set(caller)
            async for item in inner_ss(requests, context):
                yield item

        return handler._replace(stream_stream=stream_stream)
    inner_su = handler.stream_unary

    async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        _current.set(caller)
        return await inner_su(requests, context)

    return handler._replace(stream_unary=stream_unary)


def _refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind that aborts with `code`, so streams are refused at their opening."""

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - abort raises

    ser, de = handler.response_serializer, handler.request_deserializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary, de, ser)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(streaming, de, ser)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(streaming, de, ser)
    return grpc.stream_unary_rpc_method_handler(unary, de, ser)


class RenewedToken:
    """A token minted from the platform key for this process's own calls, renewed at half its
    lifetime; call it for the current one."""

    LIFETIME = 3600.0

    def __init__(self, key: bytes, *, role: str, subject: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._key, self._role, self._subject, self._namespace = key, role, subject, namespace
        self._token = ""
        self._renew_at = 0.0

    def __call__(self) -> str:
        now = time.time()
        if now >= self._renew_at:
            self._token = mint(
                self._key,
                namespace=self._namespace,
                role=self._role,
                ttl_seconds=self.LIFETIME,
                subject=self._subject,
                now=now,
            )
            self._renew_at = now + self.LIFETIME / 2
        return self._token


class ServiceToken(RenewedToken):
    """The token a service sends to its peers."""

    def __init__(self, key: bytes) -> None:
        super().__init__(key, role="service", subject="tasktide-service")

    def interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        return aio_bearer_interceptors(self)
