"""Where a channel goes: one address, a DNS name, or several replicas of a service.

An address setting (TASKTIDE_ADDRESS, TASKTIDE_SCHEDULER_ADDRESS, ...) takes:

- one address (`host:port`, `unix:/path`, any gRPC target such as `dns:///svc.ns:50051`): a name
  that resolves to several addresses (a Kubernetes headless Service) spreads calls over all of them;
- a comma list of the replicas of one service: `10.0.0.5:50051,10.0.0.6:50051`,
  `unix:/run/a.sock,unix:/run/b.sock`, `[fd00::5]:50051,[fd00::6]:50051` or names
  (`sched-a:50051,sched-b:50051`, resolved once when the channel is made; use one DNS name for a set
  that changes).

A list or a resolver target is balanced with gRPC's `round_robin` policy (one plain address keeps
the default, `pick_first`): each call (a stream: for its whole life)
goes to a replica that is connected, and a replica that goes away is left out until it is back, so
a call made after a replica died reaches another one. All entries of a list must be of one kind
(unix paths, or IPv4, or IPv6 once names are resolved). gRPC's own list forms (`ipv4:A,B`,
`ipv6:A,B`, `unix:/a,/b`) are taken as they are. With TLS and names in a list, the certificate is
checked against the first name, so the replicas' certificates must all carry it (a shared Service name).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from tasktide._exceptions import ConfigurationError

ROUND_ROBIN = ("grpc.lb_policy_name", "round_robin")


@dataclass(frozen=True)
class Target:
    """A gRPC target and the channel options that go with it."""

    target: str
    options: tuple[tuple[str, str], ...] = (ROUND_ROBIN,)


def _bad(address: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"invalid address list {address[:200]!r}: {why}")


def _host_port(entry: str, address: str) -> tuple[str, str]:
    host, sep, port = entry.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(address, f"{entry!r} is not HOST:PORT (or unix:/path)")
    return host.strip("[]") if host.startswith("[") else host, port


def _literal(host: str) -> int:
    """4 or 6 for an IP literal, 0 for a name."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return 0


def _resolve(host: str, port: str, address: str) -> list[tuple[int, str]]:
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as exc:
        raise _bad(address, f"cannot resolve {host!r}: {exc}") from None
    found: list[tuple[int, str]] = []
    for family, _, _, _, sockaddr in infos:
        version = 4 if family == socket.AF_INET else 6 if family == socket.AF_INET6 else 0
        if version and (version, str(sockaddr[0])) not in found:
            found.append((version, str(sockaddr[0])))
    return found


def _ip_entry(version: int, host: str, port: str) -> str:
    return f"[{host}]:{port}" if version == 6 else f"{host}:{port}"


def parse(address: str, *, tls: bool = False) -> Target:
    """The target for an address setting (see the module's docstring); ConfigurationError for a
    list gRPC could not use."""
    entries = [e.strip() for e in address.split(",")]
    native = address.startswith(("ipv4:", "ipv6:")) or (
        len(entries) > 1 and entries[0].startswith("unix:") and all(e.startswith("/") for e in entries[1:])
    )
    if native and all(entries):  # already gRPC's own list form: ipv4:A,B / unix:/a,/b
        return Target(address.strip())
    if len(entries) == 1:
        if not entries[0]:
            raise _bad(address, "empty")
        # One address keeps gRPC's default policy (pick_first), which reconnects when the next call
        # comes; round_robin would fail calls at once while it backs off from a restarted server.
        # A resolver target (dns:///...) may name several replicas: it is balanced.
        return Target(entries[0], (ROUND_ROBIN,) if "/" in entries[0] and not entries[0].startswith("unix:") else ())
    if any(not e for e in entries):
        raise _bad(address, "an empty entry")
    if any(e.startswith("unix:") for e in entries):
        if not all(e.startswith("unix:") for e in entries):
            raise _bad(address, "unix sockets and TCP addresses cannot be mixed")
        paths = [e.removeprefix("unix:").removeprefix("//") for e in entries]
        return Target("unix:" + ",".join(paths))
    if any("/" in e for e in entries):
        raise _bad(address, "a list takes HOST:PORT entries; for a resolver target (dns:///...) give it alone")
    by_version: dict[int, list[str]] = {4: [], 6: []}
    named = ""
    for entry in entries:
        host, port = _host_port(entry, address)
        version = _literal(host)
        if version:
            by_version[version].append(_ip_entry(version, host, port))
            continue
        named = named or entry
        resolved = _resolve(host, port, address)
        v4 = [ip for v, ip in resolved if v == 4]
        chosen = (4, v4) if v4 else (6, [ip for v, ip in resolved if v == 6])
        by_version[chosen[0]].extend(_ip_entry(chosen[0], ip, port) for ip in chosen[1])
    if by_version[4] and by_version[6]:
        raise _bad(address, "IPv4 and IPv6 replicas cannot share a list")
    version = 4 if by_version[4] else 6
    target = f"ipv{version}:" + ",".join(dict.fromkeys(by_version[version]))
    options: tuple[tuple[str, str], ...] = (ROUND_ROBIN,)
    if tls and named:  # the certificates name the host, not the addresses it resolved to
        options += (("grpc.default_authority", named),)
    return Target(target, options)
