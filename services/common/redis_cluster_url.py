"""Redis Cluster URLs: `redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...][?OPTIONS]`, and
`rediss+cluster://` with TLS. What they may hold is described at `parse_cluster_url`; the link
that uses them is redis_cluster.py."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SCHEMES = ("redis+cluster", "rediss+cluster")

Addr = tuple[str, int]


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in SCHEMES


@dataclass(frozen=True)
class ClusterOptions:
    """A cluster URL, parsed: the seed nodes and what every connection to a node needs."""

    seeds: tuple[Addr, ...]
    username: str = ""
    password: str = ""
    tls: ssl.SSLContext | None = None
    wait_replicas: int = 0
    wait_timeout_ms: int = 1000
    tls_files: tuple[str, str, str] = ("", "", "")  # ssl_ca_certs, ssl_certfile, ssl_keyfile

    def node_kwargs(self, addr: Addr) -> dict[str, Any]:
        """What redis_link's connections take for one node."""
        kw: dict[str, Any] = {"host": addr[0], "port": addr[1], "socket_keepalive": True}
        if self.password:
            kw["password"] = self.password
            if self.username:
                kw["username"] = self.username
        if self.tls is not None:
            kw["ssl_context"] = self.tls
        return kw


def parse_cluster_url(url: str) -> ClusterOptions:
    """`redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...][?wait_replicas=N&wait_timeout_ms=T]`;
    `rediss+cluster://` with TLS (`ssl_ca_certs=PATH`, `ssl_certfile=`, `ssl_keyfile=` in the query).
    Raises ValueError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"a Redis Cluster URL starts with redis+cluster:// or rediss+cluster://, not {parts.scheme}://"
        )
    auth, _, hosts = parts.netloc.rpartition("@")
    username, _, password = auth.partition(":") if ":" in auth else ("", "", auth)
    seeds = tuple(_addr(h) for h in hosts.split(",") if h)
    if not seeds:
        raise ValueError("a Redis Cluster URL names at least one HOST:PORT")
    if parts.path not in ("", "/", "/0"):
        raise ValueError(f"a Redis Cluster has database 0 only, not {parts.path.lstrip('/')}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    known = {"wait_replicas", "wait_timeout_ms", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile"}
    unknown = sorted(set(query) - known)
    if unknown:
        raise ValueError(f"unknown option(s) in the Redis Cluster URL: {', '.join(unknown)}")
    wait = _count(query, "wait_replicas", 0)
    wait_ms = _count(query, "wait_timeout_ms", 1000)
    if wait and wait_ms < 1:
        raise ValueError("wait_timeout_ms is at least 1 (0 would make WAIT block for ever)")
    tls = None
    if parts.scheme == "rediss+cluster":
        tls = ssl.create_default_context(cafile=query.get("ssl_ca_certs") or None)
        if query.get("ssl_certfile"):
            tls.load_cert_chain(query["ssl_certfile"], query.get("ssl_keyfile") or None)
    files = (query.get("ssl_ca_certs", ""), query.get("ssl_certfile", ""), query.get("ssl_keyfile", ""))
    return ClusterOptions(seeds, unquote(username), unquote(password), tls, wait, wait_ms, files)


def _addr(text: str) -> Addr:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a Redis Cluster node is HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def _count(query: Mapping[str, str], name: str, default: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise ValueError(f"{name} in the Redis Cluster URL is a whole number >= 0, not {text!r}")
    return int(text)
