"""`tasktide dashboard`: serves the web dashboard for one platform."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys

DEFAULT_LISTEN = "127.0.0.1:8080"


def _host_port(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what} must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tasktide dashboard", description="A live web dashboard of a tasktide platform (reads its services)."
    )
    p.add_argument(
        "--address",
        default=os.environ.get("TASKTIDE_ADDRESS", "127.0.0.1:50051"),
        help="the platform, HOST:PORT (default: $TASKTIDE_ADDRESS, 127.0.0.1:50051)",
    )
    p.add_argument("--listen", default=DEFAULT_LISTEN, help=f"HTTP HOST:PORT to serve on (default: {DEFAULT_LISTEN})")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        _host_port(args.address, "--address")
        host, port = _host_port(args.listen, "--listen")
    except ValueError as exc:
        print(f"tasktide dashboard: {exc}", file=sys.stderr)
        return 2
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

    from tasktide_services.dashboard.app import create_app

    bound = sock.getsockname()[1]
    print(f"tasktide dashboard on http://{host}:{bound}/ for the platform at {args.address}", flush=True)
    config = uvicorn.Config(create_app(args.address), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
