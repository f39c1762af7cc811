"""Bulk actions of the Tasks page (admin only, with the CSRF token, like every action):
cancel the tasks the page's filters select, requeue the dead letters they select.

Each action takes at most BULK_LIMIT tasks, the newest first; a preview (GET) tells how many an
action would take, for the page's confirmation step, and the action (POST) answers what it did.
Tasks already final are not cancelled (there is nothing to stop) and are counted apart.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from tasktide import Client, TaskState

BULK_LIMIT = 1000
FILTERS = ("state", "name", "queue", "worker", "error")


def _states(query: dict[str, str]) -> list[str]:
    return [s for s in query.get("state", "").split(",") if s]


def cancellable(client: Client, query: dict[str, str]) -> tuple[list[str], int, bool]:
    """(ids of the selected tasks not yet final, how many selected are final, more than BULK_LIMIT)."""
    page = client.list_tasks(
        _states(query),
        name=query.get("name", ""),
        queue=query.get("queue", ""),
        worker_id=query.get("worker", ""),
        error_type=query.get("error", ""),
        limit=BULK_LIMIT,
    )
    live = [r.task_id for r in page.tasks if not TaskState.from_proto(r.state).is_final]
    return live, len(page.tasks) - len(live), bool(page.next_cursor)


def cancel_preview(client: Client, query: dict[str, str]) -> dict[str, Any]:
    live, final, more = cancellable(client, query)
    return {"action": "cancel", "count": len(live), "final": final, "more": more, "limit": BULK_LIMIT}


def cancel(client: Client, query: dict[str, str]) -> dict[str, Any]:
    live, final, more = cancellable(client, query)
    states: dict[str, int] = defaultdict(int)
    for task_id in live:
        states[client.cancel(task_id).name] += 1
    return {"action": "cancel", "count": len(live), "final": final, "more": more, "limit": BULK_LIMIT, "states": states}


def dead_selected(client: Client, query: dict[str, str]) -> dict[str, list[str]]:
    """The selected dead letters by queue (filters: queue and name; at most BULK_LIMIT)."""
    by_queue: dict[str, list[str]] = defaultdict(list)
    name = query.get("name", "")
    for d in client.dead_letters(query.get("queue", ""), limit=BULK_LIMIT):
        if not name or d.name == name:
            by_queue[d.queue].append(d.task_id)
    return by_queue


def requeue_preview(client: Client, query: dict[str, str]) -> dict[str, Any]:
    selected = dead_selected(client, query)
    return {"action": "requeue", "count": sum(map(len, selected.values())), "limit": BULK_LIMIT}


def requeue(client: Client, query: dict[str, str]) -> dict[str, Any]:
    selected = dead_selected(client, query)
    done = sum(client.requeue_dead(queue, ids) for queue, ids in selected.items())
    return {"action": "requeue", "count": done, "limit": BULK_LIMIT}
