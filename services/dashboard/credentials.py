"""The dashboard's own credential towards the platform: every gRPC call it makes carries
`authorization: Bearer TOKEN`, through the client's `wrap_channel` hook.

The token is TASKTIDE_TOKEN when set (an admin token: the dashboard lists workers, queues, dead
letters and schedules, which need the admin role); else, with the platform key at hand, the dashboard
mints itself an admin token and renews it before it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import jwt

from tasktide._channels import bearer_interceptor
from tasktide._hooks import Hooks
from tasktide_services.common.auth import DEFAULT_NAMESPACE, RenewedToken

SUBJECT = "tasktide-dashboard"


class MintedToken(RenewedToken):
    """An admin token made from the platform key, renewed at half its lifetime."""

    def __init__(self, key: bytes, namespace: str = DEFAULT_NAMESPACE) -> None:
        super().__init__(key, role="admin", subject=SUBJECT, namespace=namespace)


class TokenHooks(Hooks):
    """Client hooks that put the token on every call of the blocking client's channels."""

    def __init__(self, token: Callable[[], str]) -> None:
        self._interceptor = bearer_interceptor(token)

    def wrap_channel(self, channel: Any) -> Any:
        return grpc.intercept_channel(channel, self._interceptor)


def static(token: str) -> Callable[[], str]:
    return lambda: token


def token_namespace(token: str) -> str:
    """The namespace the dashboard's token acts in (the platform checks the token; this only reads it)."""
    if not token:
        return DEFAULT_NAMESPACE
    try:
        ns = jwt.decode(token, options={"verify_signature": False}).get("ns")
    except jwt.InvalidTokenError:
        return DEFAULT_NAMESPACE
    return ns if isinstance(ns, str) and ns else DEFAULT_NAMESPACE
