"""The Node.js client's waits over Results.Follow (clients/node/src/follower.js) across a restart of
the results service: the stream breaks, the service stays down longer than a platform never reached
is tried for, the client opens new streams after a pause and names every id still awaited again,
and each wait is answered once its task is final. The results service runs as
a process of its own on a Redis of its own; tasks are made final by recording their events."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
import uuid
from pathlib import Path

import grpc

from tests.processes import lone_results
from tests.test_follow import record
from tests.test_node_client import NODE_DIR
from tests.test_node_client import node as node  # noqa: F401 - the fixture


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put("")  # the end

    threading.Thread(target=read, daemon=True).start()
    return lines


# How long the lone results service stays down: longer than a platform never reached is tried for
# (MAX_FAILURES streams refused, about 3 s).
OUTAGE_SECONDS = 4.0


def test_node_waits_are_answered_after_a_slow_restart_of_the_results_service(node: str, tmp_path: Path) -> None:
    ids = [uuid.uuid4().hex for _ in range(7)]
    with lone_results(tmp_path) as r:
        address = r.addresses["results"][0]
        client_env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTIDE_")}
        client_env["TASKTIDE_ADDRESS"] = address
        waiter = subprocess.Popen(
            [node, "test/fixtures/follow_restart.js", *ids],
            cwd=NODE_DIR,
            env=client_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines = _lines(waiter)
        try:
            # The service has accepted the stream; no result of it has come, none is final yet.
            assert lines.get(timeout=60) == "reached"
            r.kill("results", 0)
            time.sleep(OUTAGE_SECONDS)
            r.start("results", 0)
            with grpc.insecure_channel(address) as ch:
                for tid in ids[:4]:  # perhaps before the client has reopened, perhaps after
                    record(ch, tid, value=1)
                answered = [lines.get(timeout=60)]
                for tid in ids[4:]:  # after the new stream answered
                    record(ch, tid, value=2)
                answered += [lines.get(timeout=60) for _ in ids[1:]]
            assert sorted(line.split()[1] for line in answered) == sorted(ids)
            assert all(line.split()[2] == "SUCCEEDED" for line in answered)
            assert int(answered[-1].split()[3]) >= 3, "the client opened streams through the outage"
            assert lines.get(timeout=60) == ""
            assert waiter.wait(60) == 0, waiter.stderr.read() if waiter.stderr else ""
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
