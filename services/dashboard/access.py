"""Who may use the dashboard: logins, the session they leave in the signed cookie, CSRF tokens.

A person logs in with a platform token (checked with the platform key: an admin or service token
gives the dashboard role `admin`, a producer or worker token `viewer`) or with a name and password
from the users file. The session cookie (starlette's SessionMiddleware, signed with itsdangerous)
then holds who they are, their role, when the session ends and its CSRF token; nothing secret.
With neither a key nor a users file the dashboard is open: everyone is a local admin (it then
serves loopback only unless told otherwise, see main.py). Every action (a POST) needs the session's
CSRF token, and a viewer's actions are refused.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import jwt

from tasktide_services.common.auth import DEFAULT_NAMESPACE, Authenticator, AuthError
from tasktide_services.dashboard.users import Users

# Dashboard role of each platform role.
TOKEN_ROLES = {"admin": "admin", "service": "admin", "producer": "viewer", "worker": "viewer"}
LOGGED_OUT_LIMIT = 10_000  # sessions remembered as ended before their time; the oldest go first
FAILURES_ALLOWED = 10  # failed logins from one address within FAILURE_WINDOW before it must wait
FAILURE_WINDOW = 60.0
FAILURE_ADDRESSES = 10_000  # addresses remembered; the oldest go first


class LoginRefused(Exception):
    """A login that does not succeed; the message is shown to the person."""


@dataclass(frozen=True)
class Identity:
    user: str
    role: str  # viewer | admin
    how: str  # token | password | open

    @property
    def may_act(self) -> bool:
        return self.role == "admin"


OPEN = Identity(user="local", role="admin", how="open")


@dataclass
class Access:
    """The login policy of one dashboard and the sessions it ended early."""

    authenticator: Authenticator | None = None
    users: Users | None = None
    lifetime_seconds: float = 8 * 3600.0
    namespace: str = DEFAULT_NAMESPACE  # what the dashboard shows: tokens of other namespaces are refused
    _logged_out: OrderedDict[str, float] = field(default_factory=OrderedDict)
    _failures: OrderedDict[str, tuple[float, int]] = field(default_factory=OrderedDict)

    @property
    def open(self) -> bool:
        return self.authenticator is None and self.users is None

    # -- logging in and out -------------------------------------------------------------------

    def with_token(self, token: str) -> tuple[Identity, float, str]:
        """(identity, end of the session, token id) for a platform token."""
        if self.authenticator is None:
            raise LoginRefused("this dashboard takes no platform tokens (it has no TASKTIDE_AUTH_KEY)")
        try:
            caller = self.authenticator.caller(token.strip())
        except AuthError as exc:
            raise LoginRefused(str(exc)) from None
        if caller.namespace != self.namespace:
            raise LoginRefused(
                f"the token is for the namespace {caller.namespace!r}; this dashboard shows {self.namespace!r}"
            )
        ends = time.time() + self.lifetime_seconds
        expires = _expiry(token)
        if expires is not None:
            ends = min(ends, expires)
        name = caller.subject or f"{caller.role}@{caller.namespace}"
        return Identity(name, TOKEN_ROLES[caller.role], "token"), ends, caller.token_id

    def with_password(self, name: str, password: str) -> tuple[Identity, float, str]:
        if self.users is None:
            raise LoginRefused("this dashboard has no users file")
        user = self.users.check(name, password) if name and password else None
        if user is None:
            raise LoginRefused("wrong name or password")
        return Identity(user.name, user.role, "password"), time.time() + self.lifetime_seconds, ""

    def start(self, session: dict[str, Any], identity: Identity, ends: float, token_id: str) -> None:
        """A new session (a new id and CSRF token: nothing carried over from before the login)."""
        session.clear()
        session.update(
            sid=secrets.token_urlsafe(16),
            user=identity.user,
            role=identity.role,
            how=identity.how,
            ends=int(ends),
            jti=token_id,
            csrf=secrets.token_urlsafe(32),
        )

    def end(self, session: dict[str, Any]) -> None:
        sid, ends = session.get("sid"), session.get("ends")
        if isinstance(sid, str) and isinstance(ends, int):
            self._logged_out[sid] = float(ends)
            now = time.time()
            while self._logged_out and (
                len(self._logged_out) > LOGGED_OUT_LIMIT or next(iter(self._logged_out.values())) < now
            ):
                self._logged_out.popitem(last=False)
        session.clear()

    def throttled(self, address: str) -> bool:
        """True while `address` has failed to log in too often (FAILURES_ALLOWED in FAILURE_WINDOW)."""
        since, count = self._failures.get(address, (0.0, 0))
        return count >= FAILURES_ALLOWED and time.monotonic() - since < FAILURE_WINDOW

    def failed(self, address: str) -> None:
        now = time.monotonic()
        since, count = self._failures.pop(address, (now, 0))
        self._failures[address] = (since, count + 1) if now - since < FAILURE_WINDOW else (now, 1)
        while len(self._failures) > FAILURE_ADDRESSES:
            self._failures.popitem(last=False)

    # -- every request ------------------------------------------------------------------------

    def identity(self, session: dict[str, Any]) -> Identity | None:
        """Who the session belongs to, or None when it is missing, over, logged out or revoked."""
        if self.open:
            return OPEN
        user, role, ends, sid = session.get("user"), session.get("role"), session.get("ends"), session.get("sid")
        if not (isinstance(user, str) and role in ("viewer", "admin") and isinstance(ends, int) and sid):
            return None
        if ends <= time.time() or sid in self._logged_out:
            return None
        jti = session.get("jti")
        if jti and self.authenticator is not None and jti in self.authenticator.revoked:
            return None
        return Identity(user, str(role), str(session.get("how", "")))

    @staticmethod
    def csrf(session: dict[str, Any]) -> str:
        """The session's CSRF token (made on first use)."""
        token = session.get("csrf")
        if not isinstance(token, str) or not token:
            token = secrets.token_urlsafe(32)
            session["csrf"] = token
        return token

    @staticmethod
    def csrf_ok(session: dict[str, Any], given: str | None) -> bool:
        expected = session.get("csrf")
        if not given or not isinstance(expected, str) or not expected:
            return False
        return hmac.compare_digest(given.encode(), expected.encode())


def _expiry(token: str) -> float | None:
    """The `exp` claim of a token the Authenticator has just verified."""
    exp = jwt.decode(token.strip(), options={"verify_signature": False}).get("exp")
    return float(exp) if isinstance(exp, int | float) else None
