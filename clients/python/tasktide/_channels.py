"""Channels to the platform, as the settings ask: TLS with the platform's CA (and a client
certificate for mutual TLS), and the token sent as `authorization: Bearer TOKEN` on every call,
streams included. Every channel of the client and of the worker runtime is made here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from tasktide._exceptions import ConfigurationError
from tasktide._settings import ClientSettings
from tasktide._targets import Target, parse


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} {path}: {exc.strerror}") from None


def credentials(settings: ClientSettings) -> grpc.ChannelCredentials:
    """TLS credentials from the settings' CA and client certificate."""
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigurationError("a client certificate needs both TASKTIDE_TLS_CERT and TASKTIDE_TLS_KEY")
    root = _read(settings.tls_ca, "TLS CA") if settings.tls_ca else None
    if settings.tls_cert:
        key, cert = _read(settings.tls_key, "TLS key"), _read(settings.tls_cert, "TLS certificate")
        return grpc.ssl_channel_credentials(root, key, cert)
    return grpc.ssl_channel_credentials(root)


def _metadata(details: Any, token: str) -> list[tuple[str, str]]:
    return [*(details.metadata or ()), ("authorization", f"Bearer {token}")]


class _Details(grpc.ClientCallDetails):
    def __init__(self, base: Any, metadata: list[tuple[str, str]]) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


Next = Callable[[Any, Any], Any]


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """The token on every call of a blocking channel."""

    def __init__(self, token: Callable[[], str]) -> None:
        self._token = token

    def _details(self, details: Any) -> _Details:
        return _Details(details, _metadata(details, self._token()))

    def intercept_unary_unary(self, continuation: Next, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Next, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Next, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Next, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


class _AioBearer:
    """The token on every call of an asyncio channel. grpc.aio files an interceptor under the first
    kind of call it serves, so each kind has its own class (aio_bearer_interceptors)."""

    def __init__(self, token: Callable[[], str]) -> None:
        self._token = token

    def _details(self, details: Any) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add("authorization", f"Bearer {self._token()}")
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class _AioUnaryUnary(_AioBearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Next, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _AioUnaryStream(_AioBearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Next, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _AioStreamUnary(_AioBearer, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Next, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _AioStreamStream(_AioBearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Next, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def aio_bearer_interceptors(token: Callable[[], str]) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that send `authorization: Bearer token()` on every kind of call."""
    return [cls(token) for cls in (_AioUnaryUnary, _AioUnaryStream, _AioStreamUnary, _AioStreamStream)]


def bearer_interceptor(token: Callable[[], str]) -> grpc.UnaryUnaryClientInterceptor:
    """An interceptor for grpc.intercept_channel that sends `authorization: Bearer token()` on every
    kind of call of a blocking channel (a token that is renewed: pass a function)."""
    return _Bearer(token)


def target(address: str, tls: bool = False) -> Target:
    """The gRPC target and balancing options for an address setting: one address, a DNS name or a
    comma list of replicas (_targets.py). ConfigurationError for a list gRPC could not use."""
    return parse(address, tls=tls)


def _options(settings: ClientSettings, where: Target) -> list[tuple[str, Any]]:
    return [*settings.channel_options, *where.options]


def blocking_channel(settings: ClientSettings, address: str) -> grpc.Channel:
    """A channel to `address` (one address or several replicas, balanced round robin) with the
    settings' TLS and token."""
    where = target(address, settings.tls)
    opts = _options(settings, where)
    if settings.tls:
        channel = grpc.secure_channel(where.target, credentials(settings), options=opts)
    else:
        channel = grpc.insecure_channel(where.target, options=opts)
    token = settings.token
    if token:
        channel = grpc.intercept_channel(channel, _Bearer(lambda: token))
    return channel


def aio_channel(
    settings: ClientSettings, address: str, interceptors: Sequence[grpc.aio.ClientInterceptor] = ()
) -> grpc.aio.Channel:
    """An asyncio channel to `address` (one address or several replicas, balanced round robin) with
    the settings' TLS and token (before `interceptors`)."""
    where = target(address, settings.tls)
    token = settings.token
    chain = aio_bearer_interceptors(lambda: token) if token else []
    chain.extend(interceptors)
    opts = _options(settings, where)
    if settings.tls:
        return grpc.aio.secure_channel(where.target, credentials(settings), options=opts, interceptors=chain or None)
    return grpc.aio.insecure_channel(where.target, options=opts, interceptors=chain or None)
