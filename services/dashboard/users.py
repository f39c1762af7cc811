"""Dashboard users from a file: one `name:role:hash` a line, the hash made by `hash_password`.

The hash is scrypt (hashlib, RFC 7914) with a random salt, written as
`scrypt$N$r$p$SALT$KEY` (salt and key in unpadded base64), so its parameters can be raised later
without breaking the lines already written. Roles: `viewer` (reads) and `admin` (also acts).
Blank lines and lines starting with `#` are skipped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

DASHBOARD_ROLES = ("viewer", "admin")
_N, _R, _P = 2**15, 8, 1  # about 32 MiB and a few tens of ms per check
_SALT_BYTES, _KEY_BYTES = 16, 32
_MAXMEM = 128 * 1024 * 1024


class UsersError(Exception):
    """A users file or a line of it that cannot be used."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=length)


def hash_password(password: str) -> str:
    """A new hash of `password` for a users file line."""
    if not password:
        raise UsersError("the password is empty")
    salt = os.urandom(_SALT_BYTES)
    key = _scrypt(password, salt, _N, _R, _P, _KEY_BYTES)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


def _parse_hash(text: str) -> tuple[int, int, int, bytes, bytes]:
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise UsersError("the hash is not of the form scrypt$N$r$p$SALT$KEY")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        raise UsersError("the hash has a bad number or base64 field") from None
    if n < 2**14 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16 or len(salt) < 8 or len(key) < 16:
        raise UsersError("the hash's parameters are too weak or malformed")
    return n, r, p, salt, key


def verify_password(password: str, stored: str) -> bool:
    n, r, p, salt, key = _parse_hash(stored)
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(key)), key)


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str


def parse_line(line: str) -> User:
    name, sep1, rest = line.partition(":")
    role, sep2, password_hash = rest.partition(":")
    if not (sep1 and sep2 and name.strip()):
        raise UsersError("a line must be name:role:hash")
    if role not in DASHBOARD_ROLES:
        raise UsersError(f"unknown role {role!r}; one of {', '.join(DASHBOARD_ROLES)}")
    _parse_hash(password_hash.strip())
    return User(name.strip(), role, password_hash.strip())


class Users:
    """The users of one file, read once when the dashboard starts."""

    def __init__(self, users: dict[str, User]) -> None:
        self._users = users
        # Checked against when the name is unknown, so a wrong name costs the same time as a wrong password.
        self._decoy = hash_password(os.urandom(12).hex())

    @classmethod
    def load(cls, path: str) -> Users:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise UsersError(f"cannot read the users file {path}: {exc.strerror}") from None
        users: dict[str, User] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                user = parse_line(line)
            except UsersError as exc:
                raise UsersError(f"{path}, line {number}: {exc}") from None
            if user.name in users:
                raise UsersError(f"{path}, line {number}: the user {user.name!r} appears twice")
            users[user.name] = user
        if not users:
            raise UsersError(f"the users file {path} names no user")
        return cls(users)

    def __len__(self) -> int:
        return len(self._users)

    def check(self, name: str, password: str) -> User | None:
        """The user when `password` is theirs, else None (same work either way)."""
        user = self._users.get(name)
        ok = verify_password(password, user.password_hash if user else self._decoy)
        return user if ok and user is not None else None
