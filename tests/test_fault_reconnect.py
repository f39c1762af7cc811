"""Reconnection after a long outage, the way it happens: services are SIGKILLed (the others stay
up), stay down OUTAGE_SECONDS, long enough for gRPC's default reconnection backoff (1 s growing to
120 s) to pass the policy's 5 s, and are started again on the same addresses. A Python, a Go and a
Node.js client, each made once before the outage, call every service every PACE_MS throughout; the
test prints, for each client and call, how long after the service's return the first call
succeeded. The case that keeps the scheduler up measures the scheduler's channels to its peers, the
one that keeps the registry up the registry's channel to the results service (a RequeueDead of a
dead task records its reopening there). It asserts that every one recovers, never how fast: the
figures are the point (see the reconnection policy in tasktide._settings)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from tasktide import Client, ClientSettings, TaskState, TasktideError
from tasktide_services.testing import eventually
from tests.faults.cluster import Cluster, Workers, cluster
from tests.go_build import GO_DIR, build_go, go_env
from tests.processes import own_redis, stop
from tests.test_node_client import NODE_DIR
from tests.test_node_client import node as node  # noqa: F401 - the fixture

# gRPC's default waits 1, 1.6, 2.56 and 4.1 s (9.3 s in all, 11.1 s with its 20 % jitter) before
# its first wait over the policy's 5 s: an outage of 14 s reaches past that.
OUTAGE_SECONDS = 14.0
PACE_MS = 200

# Which services go down, and what each kind of call then waits for: the services on its path that
# were down (a call is timed from the last one's return), and what it measures.
CASES = {
    "scheduler+results": {
        "submit": (("scheduler", "results"), "client -> scheduler"),
        "results": (("results",), "client -> results"),
        "requeue": (("results",), "registry -> results (peer channel)"),
    },
    "registry+results": {
        "submit": (("registry", "results"), "scheduler -> registry, results (peer channels)"),
        "results": (("results",), "client -> results"),
        "registry": (("registry",), "client -> registry"),
    },
}

pytestmark = pytest.mark.timeout(300, func_only=True)


@pytest.fixture(scope="module")
def go_probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clients/go/internal/testreconnect, built once."""
    return build_go("./internal/testreconnect", tmp_path_factory.mktemp("go") / "testreconnect")


@dataclass
class Calls:
    """One client's calls, as (kind, succeeded, time.time())."""

    name: str
    seen: list[tuple[str, bool, float]] = field(default_factory=list)

    def add(self, line: str) -> None:
        kind, verdict, ms = line.split()
        self.seen.append((kind, verdict == "ok", int(ms) / 1000))

    def first(self, kind: str, ok: bool, after: float) -> float | None:
        return next((t for k, v, t in list(self.seen) if k == kind and v is ok and t >= after), None)

    def recovered(self, kind: str, killed: float) -> float | None:
        """When the first call succeeded after the calls began to fail (a call that was answered
        as the services were being killed is not a recovery)."""
        failed = self.first(kind, False, killed)
        return None if failed is None else self.first(kind, True, failed)


@contextlib.contextmanager
def program(calls: Calls, cmd: list[str], cwd: Path, env: dict[str, str]) -> Iterator[None]:
    """A Go or Node.js probe, its lines read into `calls` as they come."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    out = proc.stdout

    def read() -> None:
        for line in out:
            calls.add(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield
    finally:
        stop([proc], timeout=10)
        reader.join(5)


@contextlib.contextmanager
def python_probe(
    calls: Calls, env: dict[str, str], queue: str, done_id: str, dead_id: str
) -> Iterator[threading.Event]:
    """The Python client's calls, in a thread; RequeueDead of `dead_id` once the event is set
    (before it, the task would be requeued, run and retried while the scheduler is down)."""
    stop, requeue = threading.Event(), threading.Event()
    client = Client(settings=ClientSettings.from_env(env))
    kinds = {
        "submit": lambda: client.submit("t.add", [1, 2], queue=f"{queue}-probe"),
        "results": lambda: client.fetch([done_id]),
        "registry": client.queue_stats,
        "requeue": lambda: client.requeue_dead(queue, [dead_id]),
    }

    def run() -> None:
        while not stop.is_set():
            for kind, call in kinds.items():
                if kind == "requeue" and not requeue.is_set():
                    continue
                try:
                    call()
                    ok = True
                except TasktideError:
                    ok = False
                calls.seen.append((kind, ok, time.time()))
            stop.wait(PACE_MS / 1000)

    thread = threading.Thread(target=run, name="python-probe", daemon=True)
    thread.start()
    try:
        yield requeue
    finally:
        stop.set()
        thread.join(30)
        client.close()


# A channel that notices a service's return within tens of milliseconds: a subchannel of its own
# (not shared with the clients'), reconnecting at most every 50 ms.
WATCH = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 50),
]


def restart(c: Cluster, names: tuple[str, ...]) -> dict[str, float]:
    """Starts the services again, together, on their addresses; returns when each was first
    reachable again (time.time(), taken by gRPC's callback as the connection becomes ready)."""
    back: dict[str, float] = {}

    def watch(name: str) -> Callable[[grpc.ChannelConnectivity], None]:
        def seen(state: grpc.ChannelConnectivity) -> None:
            if state is grpc.ChannelConnectivity.READY:
                back.setdefault(name, time.time())

        return seen

    channels = {n: grpc.insecure_channel(c.addresses[n], options=WATCH) for n in names}
    try:
        for n, ch in channels.items():
            ch.subscribe(watch(n), try_to_connect=True)
        starting = [threading.Thread(target=c.start, args=(n,)) for n in names]
        for t in starting:
            t.start()
        for t in starting:
            t.join(90)
        assert all(n in c.procs for n in names), "a service did not start again"
        eventually(lambda: len(back) == len(names), 30, 0.01, "the services reachable again")
    finally:
        for ch in channels.values():
            ch.close()
    return back


def dead_task(client: Client, queue: str) -> str:
    """A task in the dead-letter set of `queue` (it failed every attempt)."""
    tid = client.submit("t.always_fails", ["on purpose"], queue=queue).id
    eventually(lambda: client.status(tid) is TaskState.DEAD, 60, 0.1, "the task dead-lettered")
    return tid


@pytest.mark.parametrize("case", list(CASES))
def test_every_client_and_peer_channel_recovers_after_a_long_outage(
    case: str, go_probe: Path, node: str, tmp_path: Path, queue_name: str
) -> None:
    down = tuple(case.split("+"))
    logs = tmp_path / "logs"
    logs.mkdir()
    with own_redis(tmp_path / "redis") as url, cluster({"TASKTIDE_REDIS_URL": url}, logs) as c:
        workers = Workers(c.env, queue_name, logs)
        workers.spawn(1)
        try:
            with Client(settings=ClientSettings.from_env(c.env)) as setup:
                done_id = setup.submit("t.add", [1, 2], queue=queue_name).id
                assert setup.result(done_id, timeout=60) == 3
                dead_id = dead_task(setup, queue_name)
            probe_env = {
                **go_env(),
                **c.env,
                "TASKTIDE_QUEUES": f"{queue_name}-probe",  # no worker: the probes' tasks only queue
                "TASKTIDE_TEST_TASK": "t.add",
                "TASKTIDE_TEST_TASK_ID": done_id,
                "TASKTIDE_TEST_PACE_MS": str(PACE_MS),
            }
            clients = {name: Calls(name) for name in ("python", "go", "node")}
            with (
                python_probe(clients["python"], c.env, queue_name, done_id, dead_id) as requeue,
                program(clients["go"], [str(go_probe)], GO_DIR, probe_env),
                program(clients["node"], [node, "test/fixtures/reconnect_probe.js"], NODE_DIR, probe_env),
            ):
                kinds = CASES[case]
                before = [(n, k) for n in clients for k in ("submit", "results", "registry")]
                eventually(lambda: all(clients[n].first(k, True, 0) for n, k in before), 60, 0.1, "every call served")
                killed = time.time()
                for name in down:
                    c.kill(name)
                requeue.set()
                time.sleep(OUTAGE_SECONDS)
                back = restart(c, down)
                measured = [(n, k) for n in clients for k in kinds if k != "requeue" or n == "python"]
                eventually(
                    lambda: all(clients[n].recovered(k, killed) for n, k in measured),
                    120,
                    0.1,
                    "every call failing in the outage, then served again",
                )
            print(f"\n{case} down {OUTAGE_SECONDS:.0f} s: seconds from the return to the first call that succeeded")
            for n, k in measured:
                services, path = kinds[k]
                returned = max(back[s] for s in services)
                failed = clients[n].first(k, False, killed)
                assert failed is not None and failed < returned, f"{n} {k}: no call failed during the outage"
                recovered = clients[n].recovered(k, killed)
                assert recovered is not None
                print(f"  {n:6} {k:8} {path:48} {recovered - returned:6.2f}")
        finally:
            workers.close()
