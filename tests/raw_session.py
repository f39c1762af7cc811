"""A worker session driven by hand over gRPC, for tests that decide exactly what a worker reports
and when (a worker that goes silent, reports twice, or reports progress step by step)."""

from __future__ import annotations

import json
import queue
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from tasktide.v1 import task_pb2, worker_pb2, worker_pb2_grpc
from tasktide_services.testing import client_settings


class RawSession:
    """One Session stream to the registry of the platform at `address`, with `credit` to start;
    the stream ends after `timeout` seconds, so a test waiting for a message that never comes fails.
    `options` are those of its gRPC channel."""

    def __init__(
        self,
        address: str,
        queue_name: str,
        credit: int = 1,
        timeout: float = 30.0,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.channel = grpc.insecure_channel(client_settings(address).registry(), options=list(options))
        self._requests: queue.Queue[worker_pb2.WorkerMessage | None] = queue.Queue()
        self.worker_id = f"raw-{uuid.uuid4().hex[:6]}"
        hello = worker_pb2.Hello(worker_id=self.worker_id, queues=[queue_name])
        self.send(worker_pb2.WorkerMessage(hello=hello))
        self.send(worker_pb2.WorkerMessage(credit=credit))
        self.responses = worker_pb2_grpc.RegistryStub(self.channel).Session(self._messages(), timeout=timeout)

    def _messages(self) -> Iterator[worker_pb2.WorkerMessage]:
        while (m := self._requests.get()) is not None:
            yield m

    def send(self, message: worker_pb2.WorkerMessage) -> None:
        self._requests.put(message)

    def _next(self, kind: str) -> worker_pb2.RegistryMessage:
        try:
            for msg in self.responses:
                if msg.WhichOneof("kind") == kind:
                    return msg
        except grpc.RpcError as exc:
            raise AssertionError(f"the session ended ({exc.code()}) without a message {kind!r}") from None
        raise AssertionError(f"the session ended without a message {kind!r}")

    def next_assignment(self) -> worker_pb2.Assignment:
        return self._next("assignments").assignments.assignments[0]

    def next_rejection(self) -> worker_pb2.LeaseRejected:
        return self._next("rejected").rejected

    def progress(self, a: worker_pb2.Assignment, value: float, message: str) -> None:
        lease = worker_pb2.LeaseRef(task_id=a.task.id, queue=a.task.spec.queue, lease_token=a.lease_token)
        report = worker_pb2.ProgressReport(lease=lease, value=value, message=message)
        self.send(worker_pb2.WorkerMessage(progress=report))

    def succeed(self, a: worker_pb2.Assignment, value: object) -> None:
        out = task_pb2.Outcome(
            task_id=a.task.id,
            queue=a.task.spec.queue,
            lease_token=a.lease_token,
            attempt=a.task.attempt,
            kind=task_pb2.OUTCOME_KIND_SUCCESS,
            result=task_pb2.Payload(json=json.dumps(value).encode()),
        )
        self.send(worker_pb2.WorkerMessage(outcomes=worker_pb2.OutcomeBatch(outcomes=[out], credit=1)))

    def close(self) -> None:
        """The worker vanishes: no more heartbeats, the stream and the channel close."""
        self._requests.put(None)
        self.responses.cancel()
        self.channel.close()
