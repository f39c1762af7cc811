"""The services' Redis link to a Redis Cluster: `redis+cluster://HOST:PORT[,HOST:PORT...]`
(redis_cluster_url.py; the client the stores see: redis_cluster_client.py).

Any reachable node of the URL is enough: the slot map is read with CLUSTER SLOTS and kept. Every
command goes to the primary of its key's slot: a script (EVALSHA) by its first key (Redis refuses
a script whose keys span slots with CROSSSLOT, so such a layout fails in the tests, never
silently), any other command by the key after its name; commands without a key (PUBLISH, PING,
CONFIG GET) go to one primary, SCRIPT LOAD and FLUSHALL to every primary. A
pipeline is split by node and each part is sent over that node's link (redis_link._Link: one
multiplexed connection per node), the parts at once, the replies put back in order. Commands
without a key in a pipeline (PUBLISH: a wake-up) are sent once the keyed parts are done, so no
subscriber hears of a write before it is made. A script marked to run last (lua.py, `LuaFile.last`:
confirming an idempotency key, which must never name a task whose record was not written) is sent
after the other keyed parts have answered, and not at all when one of them failed. Across nodes the
parts are otherwise unordered (on one node a pipeline's commands run in order).

Redirections are followed within one call: MOVED (the slot moved: the map is updated and read
again in full) and ASK (the slot is migrating: ASKING then the command on the node named), and
CLUSTERDOWN / TRYAGAIN (a failover or migration in progress) are retried after a pause; none of
them means the command ran. A script the node does not have (NOSCRIPT, for instance on a replica
just promoted) is loaded on that node and only that command is sent again, so the parts of a
pipeline that ran elsewhere never run twice; the link knows the sources of every script the
process has loaded (`remember_scripts`). A lost connection fails the call with ConnectionError,
as on one node, and the map is read again before the next call.

Pub/sub: the services' channels are plain channels, which a cluster broadcasts to every node, so
a subscription is one connection to any node, moved to another node when it is lost. (Sharded
pub/sub, SSUBSCRIBE, needs Redis 7 and would put each of the few global channels on one shard.)

Replication is asynchronous: a write confirmed by a primary that dies before its replica has it
is lost with it. `?wait_replicas=N&wait_timeout_ms=T` in the URL makes every part of a pipeline
that writes end with `WAIT N T` on the same connection, so a call returns once N replicas have
what it wrote (or T ms passed: logged, and the call still returns; WAIT does not undo a write).
N is capped by the replicas the slot map lists for the node (a failed replica is not listed): a
primary whose replicas are all gone, as after a failover until the old primary returns, is not
waited on, so writes go on at full speed and promise what asynchronous replication promises (a
WAIT that heard too few replicas has the map read again, which drops a replica the cluster has
since marked as failed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)

from tasktide_services.common.redis_cluster_url import Addr, ClusterOptions

log = logging.getLogger("tasktide.redis")

SLOTS = 16384
REDIRECTS = 8  # rounds of MOVED/ASK/CLUSTERDOWN/TRYAGAIN within one call
RETRY_PAUSE = 0.1  # seconds before a CLUSTERDOWN / TRYAGAIN is tried again
REFRESH_EVERY = 0.5  # the map is read at most this often after lost connections
EVERY_PRIMARY = frozenset({"SCRIPT LOAD", "SCRIPT FLUSH", "FLUSHALL", "FLUSHDB"})
KEYLESS = frozenset({"PUBLISH", "PING", "INFO", "CONFIG GET", "TIME", "ECHO", "DBSIZE", "WAIT", "CLUSTER SLOTS"})
# Commands that write nothing: a pipeline's part made only of these needs no WAIT.
READS = frozenset(
    {"GET", "MGET", "EXISTS", "TTL", "PTTL", "TYPE", "STRLEN", "HGET", "HMGET", "HGETALL", "HLEN", "HEXISTS"}
    | {"HKEYS", "HVALS", "LLEN", "LRANGE", "LINDEX", "SCARD", "SMEMBERS", "SISMEMBER", "SMISMEMBER", "ZCARD"}
    | {"ZCOUNT", "ZSCORE", "ZMSCORE", "ZRANK", "ZREVRANK", "ZRANGE", "ZREVRANGE", "ZRANGEBYSCORE"}
    | {"ZREVRANGEBYSCORE", "ZRANGEBYLEX", "XLEN", "XRANGE", "XREVRANGE", "MEMORY USAGE", "OBJECT ENCODING"}
    | KEYLESS
)


def _name(command: tuple[Any, ...]) -> str:
    name = command[0]
    return (name.decode() if isinstance(name, bytes) else str(name)).upper()


def command_slot(command: tuple[Any, ...]) -> int | None:
    """The slot a command addresses (None: it has no key)."""
    name = _name(command)
    if name in ("EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO"):
        key = command[3] if int(command[2]) > 0 else None
    elif name in KEYLESS or name in EVERY_PRIMARY or len(command) < 2:
        key = None
    else:
        key = command[1]
    if key is None:
        return None
    return key_slot(key if isinstance(key, bytes) else str(key).encode())


class Topology:
    """Slot -> primary, from a CLUSTER SLOTS reply."""

    def __init__(self, reply: list[Any], asked: Addr) -> None:
        self.slots: list[Addr | None] = [None] * SLOTS
        self.primaries: list[Addr] = []
        self.nodes: list[Addr] = []  # primaries and replicas
        self.replicas: dict[Addr, int] = {}  # primary -> replicas the cluster does not deem failed
        for start, end, primary, *replicas in reply:
            owner = _node(primary, asked)
            self.slots[int(start) : int(end) + 1] = [owner] * (int(end) - int(start) + 1)
            if owner not in self.primaries:
                self.primaries.append(owner)
            self.replicas[owner] = len(replicas)
            for n in (owner, *(_node(r, asked) for r in replicas)):
                if n not in self.nodes:
                    self.nodes.append(n)


def _node(entry: list[Any], asked: Addr) -> Addr:
    host = entry[0].decode() if isinstance(entry[0], bytes) else str(entry[0])
    return (host or asked[0], int(entry[1]))  # an empty host: the node we asked


class ClusterLink:
    """Routes commands and pipelines over one redis_link connection per node (module doc)."""

    def __init__(self, options: ClusterOptions, make_link: Callable[[dict[str, Any]], Any]) -> None:
        self.options = options
        self._make_link = make_link
        self._links: dict[Addr, Any] = {}
        self._topology: Topology | None = None
        self._refreshing: asyncio.Future[None] | None = None
        self._stale = False
        self._refreshed_at = -REFRESH_EVERY
        self._sources: dict[str, str] = {}  # sha -> source of the scripts loaded through this link
        self._last: set[str] = set()  # shas of the scripts sent after the rest of their pipeline
        self.unreplicated = 0  # writes for which WAIT heard fewer replicas than asked

    def remember_scripts(self, sources: Iterable[tuple[str, str]]) -> None:
        self._sources.update(sources)

    def run_last(self, shas: Iterable[str]) -> None:
        """Scripts a pipeline sends once its other keyed commands have answered (module doc)."""
        self._last.update(shas)

    def nodes(self) -> list[Addr]:
        """Every node known (the seeds first when the map was never read)."""
        known = self._topology.nodes if self._topology is not None else []
        return [*known, *(s for s in self.options.seeds if s not in known)]

    def _link(self, addr: Addr) -> Any:
        link = self._links.get(addr)
        if link is None:
            link = self._links[addr] = self._make_link(self.options.node_kwargs(addr))
        return link

    async def topology(self) -> Topology:
        if self._topology is None or self._stale:
            await self.refresh()
        assert self._topology is not None
        return self._topology

    async def refresh(self) -> None:
        """Read the slot map from the first node that answers (one reader at a time)."""
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._read_map())
        refreshing = self._refreshing
        try:
            await asyncio.shield(refreshing)
        finally:
            if refreshing.done() and self._refreshing is refreshing:
                self._refreshing = None

    async def _read_map(self) -> None:
        errors: list[str] = []
        for addr in self.nodes():
            try:
                (reply,) = await self._link(addr).run([("CLUSTER SLOTS",)])
            except (ConnectionError, OSError) as exc:
                errors.append(f"{addr[0]}:{addr[1]}: {exc}")
                continue
            if isinstance(reply, Exception) or not reply:
                errors.append(f"{addr[0]}:{addr[1]}: {reply or 'no slots assigned'}")
                continue
            self._topology = Topology(reply, addr)
            self._stale = False
            self._refreshed_at = asyncio.get_running_loop().time()
            return
        raise ConnectionError(f"no node of the Redis Cluster answered CLUSTER SLOTS: {'; '.join(errors)}")

    def _mark_stale(self) -> None:
        if asyncio.get_running_loop().time() - self._refreshed_at >= REFRESH_EVERY:
            self._stale = True

    async def every_primary(self, command: tuple[Any, ...]) -> Any:
        """A command run on every primary; the first primary's reply (an error anywhere is raised)."""
        top = await self.topology()
        replies = await asyncio.gather(*(self._run_on(a, [command]) for a in top.primaries))
        for (reply,) in replies:
            if isinstance(reply, Exception):
                raise reply
        if _name(command) == "SCRIPT LOAD":
            self._sources[replies[0][0].decode()] = command[1] if isinstance(command[1], str) else command[1].decode()
        return replies[0][0]

    async def run(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """The replies of `commands` in order (an error reply as its exception, not raised). The
        parts of the nodes run at once; the scripts marked to run last are sent once those have
        answered (not at all if one of them failed), then the commands without a key (PUBLISH), so
        a wake-up is never heard before what it announces was written."""
        replies: list[Any] = [None] * len(commands)
        keyed: list[int] = []
        last: list[int] = []
        keyless: list[int] = []
        for i, c in enumerate(commands):
            if command_slot(c) is None:
                keyless.append(i)
            elif _name(c) == "EVALSHA" and str(c[1]) in self._last:
                last.append(i)
            else:
                keyed.append(i)
        if keyed:
            await self._run_phase(commands, keyed, replies)
        if last and any(isinstance(replies[i], Exception) for i in keyed):
            for i in last:
                replies[i] = ResponseError("not run: an earlier command of its pipeline failed")
        elif last:
            await self._run_phase(commands, last, replies)
        if keyless:
            await self._run_phase(commands, keyless, replies)
        return replies

    async def _run_phase(self, commands: list[tuple[Any, ...]], pending: list[int], replies: list[Any]) -> None:
        moved_to: dict[int, Addr] = {}  # command -> node named by ASK or MOVED, or lacking a script
        asking: set[int] = set()
        for _ in range(REDIRECTS):
            top = await self.topology()
            groups: dict[Addr, list[int]] = {}
            for i in sorted(pending):
                addr = moved_to.pop(i) if i in moved_to else self._route(top, commands[i])
                groups.setdefault(addr, []).append(i)
            calls = [
                self._run_part(a, [commands[i] for i in idx], [i in asking for i in idx]) for a, idx in groups.items()
            ]
            parts = await asyncio.gather(*calls, return_exceptions=True)
            pending, asking, again = [], set(), False
            for (addr, idx), got in zip(groups.items(), parts, strict=True):
                if isinstance(got, BaseException):
                    self._mark_stale()
                    raise got
                for i, reply in zip(idx, got, strict=True):
                    replies[i] = reply
                    if isinstance(reply, AskError):
                        moved_to[i] = (reply.host, reply.port)
                        asking.add(i)
                    elif isinstance(reply, MovedError):
                        moved_to[i] = (reply.host, reply.port)
                        top.slots[reply.slot_id] = moved_to[i]
                        self._stale = True
                    elif isinstance(reply, ClusterDownError | TryAgainError):
                        again = True
                        self._stale = True
                    elif isinstance(reply, NoScriptError) and self._sources.get(str(commands[i][1])):
                        await self._run_on(addr, [("SCRIPT LOAD", self._sources[str(commands[i][1])])])
                        moved_to[i] = addr
                    else:
                        continue
                    pending.append(i)
            if not pending:
                return
            if again:
                await asyncio.sleep(RETRY_PAUSE)
        # after REDIRECTS rounds the last redirection errors stand as the replies

    def _route(self, top: Topology, command: tuple[Any, ...]) -> Addr:
        slot = command_slot(command)
        if slot is None:
            return top.primaries[0] if top.primaries else self.options.seeds[0]
        owner = top.slots[slot]
        if owner is None:
            self._stale = True
            raise ClusterDownError(f"CLUSTERDOWN Hash slot {slot} not served by any node")
        return owner

    async def _run_part(self, addr: Addr, commands: list[tuple[Any, ...]], asking: list[bool]) -> list[Any]:
        """One node's part of a call: ASKING before each command redirected by ASK, and WAIT after
        a part that writes when the URL asks for it; the replies of `commands` only."""
        sent: list[tuple[Any, ...]] = []
        for command, ask in zip(commands, asking, strict=True):
            if ask:
                sent.append(("ASKING",))
            sent.append(command)
        wait = self.options.wait_replicas
        if wait and self._topology is not None:  # a primary left without replicas has none to wait for
            wait = min(wait, self._topology.replicas.get(addr, wait))
        writes = wait > 0 and any(_name(c) not in READS for c in commands)
        if writes:
            sent.append(("WAIT", wait, self.options.wait_timeout_ms))
        got = await self._run_on(addr, sent)
        if writes:
            acked = got.pop()
            if isinstance(acked, int) and acked < wait:
                self.unreplicated += 1
                self._mark_stale()  # a replica may have failed: the map says how many are left
                ms = self.options.wait_timeout_ms
                log.warning("WAIT: %d of %d replicas of %s:%d have a write within %d ms", acked, wait, *addr, ms)
        if any(asking):
            kept: list[Any] = []
            it = iter(got)
            for ask in asking:
                if ask:
                    next(it)  # ASKING's OK
                kept.append(next(it))
            got = kept
        return got

    async def _run_on(self, addr: Addr, commands: list[tuple[Any, ...]]) -> list[Any]:
        replies: list[Any] = await self._link(addr).run(commands)
        return replies

    def close(self) -> None:
        for link in self._links.values():
            link.close()
