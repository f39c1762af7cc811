"""ListTasks: the request checked and turned into an index read (index.py) for the caller's namespace."""

from __future__ import annotations

from tasktide.v1 import results_pb2, task_pb2
from tasktide_services.common import tenancy
from tasktide_services.common.auth import Caller
from tasktide_services.common.errors import FailedPrecondition, InvalidArgument
from tasktide_services.common.settings import Limits
from tasktide_services.results.index import Filters
from tasktide_services.results.store import ResultsStore

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def filters_of(req: results_pb2.ListTasksRequest, caller: Caller, limits: Limits) -> Filters:
    for what, value in (("name", req.name), ("queue", req.queue), ("worker_id", req.worker_id)):
        if len(value) > limits.max_name_length:
            raise InvalidArgument(f"{what} is longer than {limits.max_name_length} characters")
    if len(req.error_type) > 1000:
        raise InvalidArgument("error_type is longer than 1000 characters")
    states = frozenset(int(s) for s in req.states)
    unknown = [s for s in states if s not in task_pb2.TaskState.values() or s == 0]
    if unknown:
        raise InvalidArgument(f"unknown task state {unknown[0]}")
    queue = tenancy.caller_name(caller, req.queue, "queue name") if req.queue else ""
    return Filters(states, req.name, queue, req.worker_id, req.error_type)


async def list_tasks(
    store: ResultsStore, req: results_pb2.ListTasksRequest, caller: Caller, limits: Limits
) -> results_pb2.ListTasksResponse:
    if not store.index.settings.enabled:
        raise FailedPrecondition("the task index is off on this server (TASKTIDE_INDEX=0)")
    if req.limit > MAX_LIMIT:
        raise InvalidArgument(f"limit is at most {MAX_LIMIT}")
    if req.since_ms < 0 or req.until_ms < 0 or (req.until_ms and req.since_ms >= req.until_ms):
        raise InvalidArgument("since_ms and until_ms are Unix ms, since_ms before until_ms")
    filters = filters_of(req, caller, limits)
    namespace = caller.namespace
    page = await store.index.page(
        store.redis,
        namespace,
        filters,
        req.since_ms,
        req.until_ms,
        req.limit or DEFAULT_LIMIT,
        req.cursor,
        store.get,
    )
    out = results_pb2.ListTasksResponse(next_cursor=page.cursor)
    for r in page.tasks:
        if tenancy.owns(caller, r.spec):
            out.tasks.append(r)
    if req.counts:
        counts = await store.index.counts(store.redis, namespace, req.since_ms, req.until_ms)
        out.counts_by_state.update(counts["state"])
        out.counts_by_name.update(counts["name"])
    return out
