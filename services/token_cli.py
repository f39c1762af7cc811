"""`tasktide token create`: prints a signed token for a namespace and a role.

    tasktide token create --namespace shop --role producer [--queues a,b] [--ttl 30d] [--subject web]

The key is the servers' own (TASKTIDE_AUTH_KEY, or --key). Revoke a token by adding its id (`tasktide
token show TOKEN` prints it) to the file the servers read as TASKTIDE_AUTH_REVOKED.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jwt

from tasktide_services.common.auth import ROLES, AuthError, mint, parse_duration, read_key


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tasktide token", description="Make and read platform tokens.")
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("create", help="print a signed token")
    c.add_argument("--namespace", required=True, help="the namespace the token acts in")
    c.add_argument("--role", required=True, choices=ROLES)
    c.add_argument("--queues", default="", help="comma-separated queues a worker token may consume")
    c.add_argument("--ttl", default="", help="lifetime: 90s, 15m, 12h, 30d (default: no expiry)")
    c.add_argument("--subject", default="", help="who the token is for, shown in logs")
    c.add_argument("--key", default="", help="the signing key or @FILE (default: $TASKTIDE_AUTH_KEY)")
    s = sub.add_parser("show", help="print a token's claims (id, namespace, role, expiry) without checking it")
    s.add_argument("token")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.action == "show":
        try:
            claims = jwt.decode(args.token, options={"verify_signature": False})
        except jwt.InvalidTokenError as exc:
            print(f"tasktide token: not a token: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(claims, sort_keys=True))
        return 0
    setting = args.key or os.environ.get("TASKTIDE_AUTH_KEY", "")
    if not setting:
        print("tasktide token: set TASKTIDE_AUTH_KEY (or --key) to the servers' signing key", file=sys.stderr)
        return 2
    try:
        token = mint(
            read_key(setting),
            namespace=args.namespace,
            role=args.role,
            queues=[q.strip() for q in args.queues.split(",") if q.strip()],
            ttl_seconds=parse_duration(args.ttl) if args.ttl else None,
            subject=args.subject,
        )
    except AuthError as exc:
        print(f"tasktide token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0
