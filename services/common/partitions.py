"""Partitioned queues: one busy queue spread over several ready queues, each in its own hash slot.

A queue declared with N partitions (`TASKTIDE_QUEUE_PARTITIONS=NAME:N,...`, read once by the
scheduler, the registry and a client's direct submission alike) is stored as N queues of the
registry: NAME itself (partition 0) and NAME#1 .. NAME#N-1. Each is an ordinary queue with its own
keys (`tt:w:{NAME#k}:...`), so its own hash tag and cluster slot, and every script still touches
one slot. NAME is the name as stored, with its namespace (`NS~NAME`, common/tenancy.py). Callers
cannot name a partition themselves: `#` is not allowed in the queue names they give.

- Admission (scheduler/admission.py, and direct.py for the caller's process) puts each new task in
  one partition, in turn per process and priority (`choose`). The partition's name is the task's
  `spec.queue` from then on, so its lease, retry, dead letter, cancel and `Explain` go to that
  partition with no other lookup.
- A worker session consuming NAME reads every partition (`of`): each dispatch takes from the
  partitions in turn, starting one further each time, sharing the session's credit among them.
- Queue statistics, pausing, dead letters and KEDA's queue depth take the partitions of NAME
  together; a worker still names NAME.

Priority is strict within a partition; across partitions, a task waits behind lower-priority tasks
of other partitions for at most the dispatches that serve those partitions first (docs/scaling.md
has the measured figure). Partition 0 is the queue as it was, so declaring partitions for a queue
in use strands nothing; lowering N leaves tasks in the dropped partitions until it is raised again.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping

from tasktide.v1 import task_pb2
from tasktide_services.common import validate
from tasktide_services.common.errors import InvalidArgument
from tasktide_services.common.settings import Limits

SEP = "#"
MAX_PARTITIONS = 256
_STORED = re.compile(r"(?P<base>[^#]+)(?:#(?P<k>[1-9][0-9]{0,2}))?")


def parse(text: str) -> dict[str, int]:
    """`NAME:N,NAME:N` as a mapping; raises ValueError with a message for anything else."""
    out: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, count = item.rpartition(":")
        if not sep or not validate.QUEUE_NAME.fullmatch(name) or not count.isdigit():
            raise ValueError(f"TASKTIDE_QUEUE_PARTITIONS: expected NAME:N items, got {item[:80]!r}")
        n = int(count)
        if not 1 <= n <= MAX_PARTITIONS:
            raise ValueError(f"TASKTIDE_QUEUE_PARTITIONS: {name[:80]} has {n} partitions; 1..{MAX_PARTITIONS}")
        out[name] = n
    return out


def base(queue: str) -> str:
    """The queue a stored queue name belongs to (itself when it is not a partition)."""
    return queue.partition(SEP)[0]


def check_stored(queue: str, limits: Limits) -> str:
    """A stored queue name, which may be a partition's (services pass those): INVALID_ARGUMENT else."""
    m = _STORED.fullmatch(queue or validate.DEFAULT_QUEUE)
    if m is None or int(m["k"] or 0) >= MAX_PARTITIONS:
        raise InvalidArgument(f"invalid queue name {queue[:80]!r}")
    validate.queue_name(m["base"], limits)
    return m.group(0)


def check_stored_spec(spec: task_pb2.TaskSpec, limits: Limits) -> None:
    """validate.spec for a spec already admitted, whose queue may be a partition's."""
    stored = check_stored(spec.queue, limits)
    spec.queue = base(stored)
    try:
        validate.spec(spec, limits)
    finally:
        spec.queue = stored


class Partitions:
    """The declared partition counts, and the turn of each partitioned queue in this process."""

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self.counts = dict(counts or {})
        # One counter per declared queue and priority: at most 201 per declared queue.
        self._turns: dict[tuple[str, int], Iterator[int]] = {}

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, int]]) -> Partitions:
        return cls(dict(pairs))

    def of(self, queue: str) -> list[str]:
        """Every stored queue of `queue`: itself, then its partitions."""
        n = self.counts.get(queue, 1)
        return [queue, *(f"{queue}{SEP}{k}" for k in range(1, n))]

    def expand(self, queues: Iterable[str]) -> list[str]:
        return [p for q in queues for p in self.of(q)]

    def choose(self, queue: str, priority: int = 0) -> str:
        """The partition a new task of `queue` goes to: each in turn, with a turn per priority, so
        every partition gets an even share of each priority whatever order they arrive in (a
        partition holding more of the high ones would hold them back behind others' low ones)."""
        n = self.counts.get(queue, 1)
        if n == 1:
            return queue
        turns = self._turns.get((queue, priority))
        if turns is None:
            turns = self._turns.setdefault((queue, priority), itertools.count())
        k = next(turns) % n
        return queue if k == 0 else f"{queue}{SEP}{k}"
