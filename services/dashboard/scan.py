"""Reading the task index over a window for the dashboard's summaries: newest first, a page at a
time, up to SCAN_LIMIT tasks (the caller says in its answer when the scan stopped there)."""

from __future__ import annotations

import datetime as dt

from tasktide import Client
from tasktide.v1 import task_pb2

SCAN_LIMIT = 5000  # tasks read per scan at most
PAGE = 1000


def scan(
    client: Client, since: dt.datetime, name: str = "", worker_id: str = ""
) -> tuple[list[task_pb2.TaskResult], bool]:
    """The tasks of the index changed since `since` (of task `name`, or whose latest event came from
    `worker_id`, or all), and whether the scan stopped at SCAN_LIMIT with more left."""
    tasks: list[task_pb2.TaskResult] = []
    cursor = ""
    while True:
        page = client.list_tasks(name=name, worker_id=worker_id, since=since, limit=PAGE, cursor=cursor)
        tasks.extend(page.tasks)
        cursor = page.next_cursor
        if not cursor:
            return tasks, False
        if len(tasks) >= SCAN_LIMIT:
            return tasks, True
