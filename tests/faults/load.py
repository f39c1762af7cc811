"""A producer that keeps submitting while a fault happens, as an application would: a refused or
failed submission is tried again with the same idempotency key, so it never makes a second task."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from tasktide import Client


class Load:
    """Submits `total` tasks `t.marked` at about `rate` per second, from `producers` threads of one
    client (sharing its submission stream, so several submissions travel in one message)."""

    def __init__(
        self, client: Client, queue: str, marker_dir: Path, total: int, rate: float = 100.0, producers: int = 1
    ) -> None:
        self.client, self.queue, self.marker_dir = client, queue, marker_dir
        self.total, self.rate = total, rate
        self.ids: list[str] = []
        self.refused = 0
        self.prefix = uuid.uuid4().hex[:8]
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(k, producers), name=f"fault-load-{k}", daemon=True)
            for k in range(producers)
        ]

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def join(self, timeout: float = 90.0) -> list[str]:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            raise AssertionError(f"the producers confirmed only {len(self.ids)} of {self.total} within {timeout} s")
        return self.ids

    def submit_one(self, i: int, until: float) -> str:
        while True:
            try:
                handle = self.client.submit(
                    "t.marked", [str(self.marker_dir), 0.02], queue=self.queue, idempotency_key=f"{self.prefix}-{i}"
                )
                return str(handle.id)  # waits for the confirmation: a refusal is raised here
            except Exception:  # noqa: BLE001 - refused while a service or Redis is away: try again
                with self._lock:
                    self.refused += 1
                if time.monotonic() > until:
                    raise
                time.sleep(0.1)

    def _run(self, k: int, producers: int) -> None:
        """Producer k of `producers` submits the tasks i = k, k + producers, ..."""
        until = time.monotonic() + 80
        for i in range(k, self.total, producers):
            task_id = self.submit_one(i, until)
            with self._lock:
                self.ids.append(task_id)
            time.sleep(producers / self.rate)
