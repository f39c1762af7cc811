"""Helpers for the shop's tests: waiting on the worker, reading queue counts from the platform."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from tasktide.v1 import worker_pb2, worker_pb2_grpc


def wait_for(check: Callable[[], Any], timeout: float = 30.0, worker: subprocess.Popen[str] | None = None) -> Any:
    """Poll `check` until it returns something true; fail with the worker's log if it died or time ran out."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        log = Path(worker.log_path).read_text() if worker is not None else ""  # type: ignore[attr-defined]
        if worker is not None and worker.poll() is not None:
            pytest.fail(f"the worker exited with {worker.returncode}:\n{log}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {check}\n{log}")
        time.sleep(0.05)


def queue_stats(address: str) -> dict[str, worker_pb2.QueueStat]:
    """Ready/leased counts of every queue, read from the registry."""
    with grpc.insecure_channel(address) as ch:
        resp = worker_pb2_grpc.RegistryStub(ch).QueueStats(worker_pb2.QueueStatsRequest(), timeout=10)
    return {q.queue: q for q in resp.queues}
