"""Namespaces: every task, queue, idempotency key, rate limit, schedule and dead letter belongs to the
namespace of the credential that made it, and one namespace never sees another's.

How it is kept, in one place:

- A submission is stamped at the RPC that takes it in (`stamp`): the task's spec gets the header
  `tasktide-namespace`, and its queue is qualified as `NS~QUEUE`. The ready queues, leases and dead
  letters are the registry's keys of that qualified queue, so each namespace's queues are apart in
  Redis and keep their own hash tag. Queue names given by callers may not contain `~`.
- Idempotency keys, rate limits and schedule ids are scoped the same way (`scoped`).
- A read by task id checks the task's namespace (`owns`): another namespace's task is NOT_FOUND,
  as an unknown id is, so ids cannot be probed.
- The namespace `default` is not written anywhere: a platform without tokens, and tokens of the
  namespace `default`, see the names they gave (queues, keys, schedules) unchanged.

Callers with the `service` role (the services themselves, and any caller when the server checks no
tokens) act in every namespace: they pass specs that were stamped when they came in.
"""

from __future__ import annotations

from tasktide.v1 import task_pb2
from tasktide_services.common.auth import DEFAULT_NAMESPACE, Caller
from tasktide_services.common.errors import InvalidArgument, NotFound

HEADER = "tasktide-namespace"
SEP = "~"


def acts_everywhere(caller: Caller) -> bool:
    return caller.role == "service"


def namespace_of(spec: task_pb2.TaskSpec) -> str:
    return spec.headers.get(HEADER, DEFAULT_NAMESPACE)


def scoped(namespace: str, name: str) -> str:
    """A name (queue, idempotency key, rate limit, schedule id) as stored for `namespace`."""
    return name if namespace == DEFAULT_NAMESPACE else f"{namespace}{SEP}{name}"


def unscoped(namespace: str, name: str) -> str | None:
    """The name a caller of `namespace` gave, for a stored one; None when it belongs to another."""
    if namespace == DEFAULT_NAMESPACE:
        return None if SEP in name else name
    prefix = f"{namespace}{SEP}"
    return name[len(prefix) :] if name.startswith(prefix) else None


def caller_name(caller: Caller, name: str, what: str) -> str:
    """A name a caller gave (queue, schedule id...), as stored: scoped by its namespace."""
    if acts_everywhere(caller):
        return name
    if SEP in name:
        raise InvalidArgument(f"{what} {name[:80]!r} may not contain {SEP!r}")
    return scoped(caller.namespace, name)


def visible(caller: Caller, stored: str) -> bool:
    """Whether a stored name (a queue, a schedule id) belongs to the caller's namespace."""
    return acts_everywhere(caller) or unscoped(caller.namespace, stored) is not None


def shown(caller: Caller, stored: str) -> str:
    """A stored name as the caller gave it (without its namespace)."""
    if acts_everywhere(caller):
        return stored
    return unscoped(caller.namespace, stored) or stored


def stamp(spec: task_pb2.TaskSpec, caller: Caller) -> None:
    """Make a spec that a caller submits belong to the caller's namespace (see the module's doc)."""
    if acts_everywhere(caller):
        return
    spec.queue = caller_name(caller, spec.queue or "default", "queue name")
    if caller.namespace == DEFAULT_NAMESPACE:
        spec.headers.pop(HEADER, None)
    else:
        spec.headers[HEADER] = caller.namespace


def owns(caller: Caller, spec: task_pb2.TaskSpec) -> bool:
    return acts_everywhere(caller) or namespace_of(spec) == caller.namespace


def check_owner(caller: Caller, spec: task_pb2.TaskSpec, task_id: str) -> None:
    """NOT_FOUND, as for an unknown id, for a task of another namespace."""
    if not owns(caller, spec):
        raise NotFound(f"no task with id {task_id}")
