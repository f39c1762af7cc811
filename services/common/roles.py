"""Which role may call which RPC. Every method of every tasktide service is listed here once; a
method missing from the table is refused to every role but none (tests/test_auth.py fails on it),
so a new RPC has to be classified on the day it appears.

    producer  submit, read, watch and cancel tasks and workflows of its namespace
    worker    what a producer may, and a worker Session on the queues its token allows
    admin     what a producer may, and queues, dead letters, schedules, workers
    service   everything, including the calls the services make on each other
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

_PRODUCER = {
    "tasktide.v1.Scheduler": ("Submit", "SubmitBatch", "SubmitStream", "GetTask", "Cancel", "Explain"),
    "tasktide.v1.Results": ("Get", "Wait", "Follow", "Watch", "WatchBatches", "ListTasks"),
    "tasktide.v1.Workflows": ("SubmitWorkflow", "GetWorkflow"),
}
_WORKER = {
    "tasktide.v1.Registry": ("Session",),
}
_ADMIN = {
    "tasktide.v1.Scheduler": ("PutSchedule", "GetSchedule", "ListSchedules", "DeleteSchedule", "PauseSchedule"),
    "tasktide.v1.Registry": (
        "ListWorkers",
        "DrainWorker",
        "ResizeWorker",
        "QueueStats",
        "PauseQueue",
        "ListDead",
        "RequeueDead",
    ),
}
_SERVICE_ONLY = {
    "tasktide.v1.Scheduler": ("Retry",),
    "tasktide.v1.Registry": ("Enqueue", "Revoke", "Locate", "Find"),
    "tasktide.v1.Results": ("Record",),
    "tasktide.v1.Workflows": ("Completed",),
}
# Any valid token may ask the server what it serves (grpcurl and other tools).
_ANY = {
    "grpc.reflection.v1alpha.ServerReflection": ("ServerReflectionInfo",),
    "grpc.reflection.v1.ServerReflection": ("ServerReflectionInfo",),
}
# No token at all: probes, and KEDA's external scaler (services/worker/keda.py), which cannot send
# one (KEDA gives external scalers TLS settings only): it answers queue depths and nothing else. With
# tokens checked it is served only when TASKTIDE_EXTERNAL_SCALER=1; keep it to the cluster with
# mutual TLS (TASKTIDE_TLS_CLIENT_CA) or a network policy then.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/externalscaler.ExternalScaler/")


def _methods(table: Mapping[str, Iterable[str]]) -> list[str]:
    return [f"/{service}/{m}" for service, names in table.items() for m in names]


def allowed_roles() -> dict[str, frozenset[str]]:
    """Full method name (`/package.Service/Method`) -> the roles that may call it."""
    table: dict[str, frozenset[str]] = {}
    for m in _methods(_PRODUCER):
        table[m] = frozenset({"producer", "worker", "admin", "service"})
    for m in _methods(_WORKER):
        table[m] = frozenset({"worker", "service"})
    for m in _methods(_ADMIN):
        table[m] = frozenset({"admin", "service"})
    for m in _methods(_SERVICE_ONLY):
        table[m] = frozenset({"service"})
    for m in _methods(_ANY):
        table[m] = frozenset({"producer", "worker", "admin", "service"})
    return table
