"""A producer that keeps submitting while a fault happens, as an application would: a refused or
failed submission is tried again with the same idempotency key, so it never makes a second task."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from tasktide import Client


class Load:
    """Submits `total` tasks `t.marked` at about `rate` per second, in a thread."""

    def __init__(self, client: Client, queue: str, marker_dir: Path, total: int, rate: float = 100.0) -> None:
        self.client, self.queue, self.marker_dir = client, queue, marker_dir
        self.total, self.rate = total, rate
        self.ids: list[str] = []
        self.refused = 0
        self.prefix = uuid.uuid4().hex[:8]
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def join(self, timeout: float = 90.0) -> list[str]:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the producer confirmed only {len(self.ids)} of {self.total} within {timeout} s")
        return self.ids

    def submit_one(self, i: int, until: float) -> str:
        while True:
            try:
                handle = self.client.submit(
                    "t.marked", [str(self.marker_dir), 0.02], queue=self.queue, idempotency_key=f"{self.prefix}-{i}"
                )
                return str(handle.id)  # waits for the confirmation: a refusal is raised here
            except Exception:  # noqa: BLE001 - refused while a service or Redis is away: try again
                self.refused += 1
                if time.monotonic() > until:
                    raise
                time.sleep(0.1)

    def _run(self) -> None:
        until = time.monotonic() + 80
        for i in range(self.total):
            self.ids.append(self.submit_one(i, until))
            time.sleep(1 / self.rate)
