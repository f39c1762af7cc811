"""`tasktide dashboard`: serves the web dashboard for one platform.

    tasktide dashboard [--listen HOST:PORT] [--users FILE] [--allowed-hosts a,b] ...
    tasktide dashboard hash-password NAME [--role viewer|admin]   (prints a users file line)

Settings are read here once: TASKTIDE_AUTH_KEY (platform tokens may log in), TASKTIDE_AUTH_REVOKED,
TASKTIDE_TOKEN (the dashboard's own token towards the platform), TASKTIDE_DASHBOARD_SESSION_KEY (signs
the session cookie; a random one per start when unset, so sessions end with the process).
"""

from __future__ import annotations

import argparse
import errno
import getpass
import os
import secrets
import socket
import sys
from dataclasses import dataclass

from tasktide_services.common.auth import Authenticator, AuthError, Revocations, parse_duration, read_key
from tasktide_services.dashboard.users import DASHBOARD_ROLES, Users, UsersError, hash_password

DEFAULT_LISTEN = "127.0.0.1:8080"


def _host_port(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what} must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tasktide dashboard",
        description="A live web dashboard of a tasktide platform (reads its services).",
        epilog="`tasktide dashboard hash-password NAME --role viewer|admin` prints a line for the --users file.",
    )
    p.add_argument(
        "--address",
        default=os.environ.get("TASKTIDE_ADDRESS", "127.0.0.1:50051"),
        help="the platform, HOST:PORT or unix:PATH (default: $TASKTIDE_ADDRESS, 127.0.0.1:50051); "
        "$TASKTIDE_REGISTRY_ADDRESS and $TASKTIDE_RESULTS_ADDRESS name those services when they run apart",
    )
    p.add_argument("--listen", default=DEFAULT_LISTEN, help=f"HTTP HOST:PORT to serve on (default: {DEFAULT_LISTEN})")
    p.add_argument(
        "--users",
        default=os.environ.get("TASKTIDE_DASHBOARD_USERS", ""),
        help="a file of name:role:hash lines (see `tasktide dashboard hash-password`); they log in with a password",
    )
    p.add_argument(
        "--auth-key",
        default=os.environ.get("TASKTIDE_AUTH_KEY", ""),
        help="the platform key (or @FILE) that checks platform tokens people log in with (default: $TASKTIDE_AUTH_KEY)",
    )
    p.add_argument(
        "--auth-revoked",
        default=os.environ.get("TASKTIDE_AUTH_REVOKED", ""),
        help="a file of revoked token ids (default: $TASKTIDE_AUTH_REVOKED)",
    )
    p.add_argument(
        "--allowed-hosts",
        default="",
        help="Host header values served, comma separated (default: the --listen host, localhost, 127.0.0.1)",
    )
    p.add_argument(
        "--sample-seconds",
        type=float,
        default=5.0,
        help="how often the charts sample the platform (default: 5; the last hour is kept in memory)",
    )
    p.add_argument("--session-lifetime", default="8h", help="how long a login lasts: 90m, 8h, 2d (default: 8h)")
    p.add_argument("--tls-cert", default="", help="serve https with this certificate (PEM)")
    p.add_argument("--tls-key", default="", help="the key of --tls-cert")
    p.add_argument(
        "--secure-cookie",
        action="store_true",
        help="send the session cookie over https only (implied by --tls-cert; for a dashboard behind an https proxy)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="serve beyond loopback with neither --auth-key nor --users: anyone who reaches the port can act",
    )
    return p


def hash_password_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="tasktide dashboard hash-password",
        description="Print a users file line for NAME; the password is asked for (or read from standard input).",
    )
    p.add_argument("name")
    p.add_argument("--role", choices=DASHBOARD_ROLES, default="viewer")
    args = p.parse_args(argv)
    if ":" in args.name or not args.name.strip():
        print("tasktide dashboard: a user name cannot be empty or contain ':'", file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("tasktide dashboard: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        print(f"{args.name}:{args.role}:{hash_password(password)}")
    except UsersError as exc:
        print(f"tasktide dashboard: {exc}", file=sys.stderr)
        return 2
    return 0


@dataclass
class _Auth:
    authenticator: Authenticator | None
    users: Users | None
    key: bytes | None


def _auth(args: argparse.Namespace) -> _Auth:
    key = read_key(args.auth_key) if args.auth_key else None
    authenticator = Authenticator(key, Revocations(args.auth_revoked)) if key else None
    users = Users.load(args.users) if args.users else None
    return _Auth(authenticator, users, key)


def main(argv: list[str]) -> int:
    if argv[:1] == ["hash-password"]:
        return hash_password_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if not (args.address.startswith("unix:") and args.address[5:]):  # unix:PATH as clients take it
            _host_port(args.address, "--address")
        host, port = _host_port(args.listen, "--listen")
        lifetime = parse_duration(args.session_lifetime)
        auth = _auth(args)
        session_setting = os.environ.get("TASKTIDE_DASHBOARD_SESSION_KEY", "")
        session_key = read_key(session_setting).decode() if session_setting else secrets.token_urlsafe(32)
    except (ValueError, AuthError, UsersError) as exc:
        print(f"tasktide dashboard: {exc}", file=sys.stderr)
        return 2
    if not 0.1 <= args.sample_seconds <= 600:
        print("tasktide dashboard: --sample-seconds must be between 0.1 and 600", file=sys.stderr)
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("tasktide dashboard: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if auth.authenticator is None and auth.users is None and not is_loopback(host) and not args.insecure:
        print(
            f"tasktide dashboard: refusing to serve {args.listen} without a login "
            "(set TASKTIDE_AUTH_KEY or --users FILE, or pass --insecure)",
            file=sys.stderr,
        )
        return 2
    allowed = [h.strip() for h in args.allowed_hosts.split(",") if h.strip()] or [host, "localhost", "127.0.0.1"]
    if host in ("0.0.0.0", "::") and not args.allowed_hosts:
        print(
            "tasktide dashboard: listening on every interface but answering only the Host names "
            f"{', '.join(allowed[1:])}; pass --allowed-hosts with the names people use",
            file=sys.stderr,
        )

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        print(f"tasktide dashboard: cannot listen on {args.listen}: {reason}", file=sys.stderr)
        return 2

    import uvicorn

    from tasktide_services.dashboard.access import Access
    from tasktide_services.dashboard.app import WebSettings, create_app
    from tasktide_services.dashboard.credentials import MintedToken, TokenHooks, static, token_namespace

    token = os.environ.get("TASKTIDE_TOKEN", "")
    hooks = TokenHooks(static(token)) if token else TokenHooks(MintedToken(auth.key)) if auth.key else None
    access = Access(auth.authenticator, auth.users, lifetime, namespace=token_namespace(token))
    web = WebSettings(access, session_key, tuple(allowed), secure_cookie=bool(args.tls_cert) or args.secure_cookie)
    scheme = "https" if args.tls_cert else "http"
    bound = sock.getsockname()[1]
    login = "open (no login)" if access.open else "login required"
    print(f"tasktide dashboard on {scheme}://{host}:{bound}/ for the platform at {args.address}; {login}", flush=True)
    config = uvicorn.Config(
        create_app(args.address, web, hooks, sample_seconds=args.sample_seconds),
        log_level="warning",
        access_log=False,
        ssl_certfile=args.tls_cert or None,
        ssl_keyfile=args.tls_key or None,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0
