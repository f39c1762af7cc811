"""Final events of workflow tasks that ended outside a worker's outcome (dead letters, expiry,
cancellation), told to the workflows service so that their chains, groups and chords go on."""

from __future__ import annotations

from tasktide.v1 import task_pb2, workflow_pb2
from tasktide_services.common.layout import WORKFLOW_HEADERS
from tasktide_services.common.peers import Peers

WORKFLOW = WORKFLOW_HEADERS[0]  # the header that places a task in a workflow (scheduler/workflows.py)


async def report_to_workflows(peers: Peers, events: list[task_pb2.TaskEvent], tasks: list[task_pb2.Task]) -> None:
    """Tell the workflows service about these final events of workflow tasks."""
    by_id = {t.id: t for t in tasks if WORKFLOW in t.spec.headers}
    completions = [
        workflow_pb2.Completion(task_id=e.task_id, headers=by_id[e.task_id].spec.headers, state=e.state, error=e.error)
        for e in events
        if e.task_id in by_id
    ]
    if completions:
        await peers.workflows.Completed(workflow_pb2.CompletedRequest(completions=completions))
