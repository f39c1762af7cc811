"""Wake-ups across replicas through one Redis pub/sub channel.

A message names one or more keys (comma-separated): a queue that received work, or task ids that
have new events. A waiter takes `event(key)` *before* it checks Redis, then waits on it, so a
message published between the check and the wait is not missed.

Waiters on keys that come and go (task ids) take the event with `hold(key)` and give it back with
`release(key, event)`: the event is forgotten once its last holder released it, whether or not it
ever fired, so waiting on ids that are never named (unknown tasks) leaves nothing behind.

A message may end with its publisher's mark (a key of its own, never a real one). A notifier given
the mark of the writer in its process (`origin`) takes its own messages to the subscriptions made
without `finals` only: the waiters (`hold`, `event`) and the subscriptions made with `finals` wait
for final results, which the writer tells them of itself (`wake_waiters`) once it has its reply,
with what it wrote; woken by the message, which may come first, they would read it back. The keys
of every other message go to `on_others` first, if set: what the writer keeps of its own writes
(results it has just written) is forgotten as soon as another process names the same task.

A subscription keeps the keys named since its last read as a set: a key named many times while its
reader is busy (a Watch held up by a slow client, or pausing while Redis is away) is kept once, so
what it holds is bounded by the keys it subscribed to, however many messages name them. Its keys
may grow and shrink while it is read (`grow`, `shrink`: a Follow stream adding and forgetting ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tasktide_services.common.redis_link import ChannelSubscription, linkable, subscribe

log = logging.getLogger("tasktide.notify")


class Subscription:
    def __init__(self, keys: set[str], finals: bool = False) -> None:
        self.keys = keys
        self.finals = finals  # also named by `wake_waiters` (a final result recorded in this process)
        self._named: set[str] = set()  # named since the last read, each once
        self._ready = asyncio.Event()  # set while _named is not empty

    def __len__(self) -> int:
        """Keys named and not read yet (at most the keys subscribed to)."""
        return len(self._named)

    def named(self, key: str) -> None:
        self._named.add(key)
        self._ready.set()

    def unname(self, keys: set[str]) -> None:
        """Drops `keys` from those named and not read yet."""
        self._named -= keys  # a reader woken for nothing finds an empty set

    def poke(self) -> None:
        """Wakes the reader with no key named (its owner has something else to look at)."""
        self._ready.set()

    def take(self) -> set[str]:
        """The keys named since the last read (perhaps none), without waiting."""
        got, self._named = self._named, set()
        self._ready.clear()
        return got

    async def next_batch(self, timeout: float) -> set[str] | None:
        """The keys named since the last call; None when `timeout` passed with none."""
        if not self._named:
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        return self.take()


class Notifier:
    def __init__(
        self, redis: Redis, channel: str, on_message: Callable[[str], None] | None = None, origin: str = ""
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.origin = origin  # the mark that ends this process's own messages ('' = none)
        self.on_message = on_message or self.wake
        # Told the keys of each message not from this process (module doc).
        self.on_others: Callable[[list[str]], None] | None = None
        self._events: dict[str, asyncio.Event] = {}
        self._holders: dict[str, int] = {}  # key -> holders of its current event (hold/release)
        self._subs: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._sub: ChannelSubscription | None = None

    def event(self, key: str) -> asyncio.Event:
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = asyncio.Event()
        return ev

    def hold(self, key: str) -> asyncio.Event:
        """`event(key)`, counted: give it back with `release` when done waiting."""
        ev = self.event(key)
        self._holders[key] = self._holders.get(key, 0) + 1
        return ev

    def release(self, key: str, ev: asyncio.Event) -> None:
        """A holder of `ev` (from `hold(key)`) is done; the last one forgets it if it never fired
        (one that fired was already forgotten by `wake`)."""
        if self._events.get(key) is not ev:
            return
        left = self._holders.get(key, 0) - 1
        if left > 0:
            self._holders[key] = left
            return
        self._holders.pop(key, None)
        del self._events[key]

    def waiting(self) -> int:
        """Keys with a waiter's event or a subscription: what is held in memory for waiters."""
        return len(self._events.keys() | self._subs.keys())

    def unread(self) -> int:
        """Keys named and not yet read, over every subscription."""
        return sum(len(sub) for sub in set().union(*self._subs.values()))

    def subscribe(self, keys: set[str], finals: bool = False) -> Subscription:
        """A queue that receives each of `keys` whenever it is named; for waiting on many keys. With
        `finals`, also when `wake_waiters` names it: for a reader that stops following a key once
        it read its final result (Follow), so the channel's message that comes later finds it gone."""
        sub = Subscription(set(keys), finals)
        for key in keys:
            self._subs.setdefault(key, set()).add(sub)
        return sub

    def grow(self, sub: Subscription, keys: set[str]) -> None:
        """`sub` also receives `keys` from now on."""
        for key in keys - sub.keys:
            self._subs.setdefault(key, set()).add(sub)
        sub.keys |= keys

    def shrink(self, sub: Subscription, keys: set[str]) -> None:
        """`sub` no longer receives `keys` (those named and not read yet are dropped too)."""
        for key in keys & sub.keys:
            subs = self._subs.get(key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[key]
        sub.keys -= keys
        sub.unname(keys)

    def unsubscribe(self, sub: Subscription) -> None:
        for key in sub.keys:
            subs = self._subs.get(key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[key]

    def wake(self, keys: str) -> None:
        names = keys.split(",")
        if self.origin and names[-1] == self.origin:  # `wake_waiters` told the others
            for key in names:
                for sub in self._subs.get(key, ()):
                    if not sub.finals:
                        sub.named(key)
            return
        if self.on_others is not None:
            self.on_others(names)
        for key in names:
            ev = self._events.pop(key, None)
            self._holders.pop(key, None)
            if ev is not None:
                ev.set()
            for sub in self._subs.get(key, ()):
                sub.named(key)

    def wake_waiters(self, keys: list[str]) -> None:
        """Wakes the waiters of `keys` (`hold`/`event`) and the subscriptions made with `finals`, not
        the others (a Watch, which would read again on the channel's message): for what this process
        wrote itself and knows at once; the channel's message still comes for every replica (and,
        here, finds those waiters gone)."""
        for key in keys:
            ev = self._events.pop(key, None)
            if ev is not None:
                self._holders.pop(key, None)
                ev.set()
            for sub in self._subs.get(key, ()):
                if sub.finals:
                    sub.named(key)

    async def start(self) -> None:
        if linkable(self.redis):
            self._sub = await subscribe(self.redis, self.channel, lambda data: self.on_message(data.decode()))
            return
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.channel)
        self._task = asyncio.create_task(self._listen(pubsub))

    async def _listen(self, pubsub: object) -> None:
        ps = pubsub  # redis.asyncio.client.PubSub
        try:
            while True:
                try:
                    msg = await ps.get_message(timeout=1.0)  # type: ignore[attr-defined]
                except (RedisError, OSError) as exc:  # a lost connection: the next call resubscribes
                    log.warning("notify channel lost: %s", exc)
                    await asyncio.sleep(0.5)
                    continue
                if msg is not None:
                    data = msg["data"]
                    self.on_message(data.decode() if isinstance(data, bytes) else str(data))
        finally:
            with contextlib.suppress(Exception):
                await ps.aclose()  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def wait_any(events: list[asyncio.Event], timeout: float) -> None:
    """Wait until one of `events` is set or `timeout` passes."""
    if any(e.is_set() for e in events):
        return
    if len(events) == 1:  # the common case (one task, one queue): no task to create
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await events[0].wait()
        return
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
