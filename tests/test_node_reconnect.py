"""A Node worker (clients/node/examples/worker.js) across a restart of the registry under it: the
task it was running keeps its lease and its outcome is recorded once, on the new session; tasks
submitted after the restart run too. The services run as separate processes on a Redis of their own."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tasktide import Client, ClientSettings
from tasktide_services.testing import spawn
from tests.processes import ROOT, SERVICES, free_port, own_redis, stop, wait_serving
from tests.test_node_client import NODE_DIR, _wait_started
from tests.test_node_client import node as node  # noqa: F401 - the fixture


def test_a_node_worker_carries_on_after_the_registry_restarts(node: str, tmp_path: Path, queue_name: str) -> None:
    addresses = {name: f"127.0.0.1:{free_port()}" for name in SERVICES}
    with own_redis(tmp_path / "redis") as redis_url:
        common = {
            "TASKTIDE_REDIS_URL": redis_url,
            "TASKTIDE_SCHEDULER_ADDRESS": addresses["scheduler"],
            "TASKTIDE_REGISTRY_ADDRESS": addresses["registry"],
            "TASKTIDE_RESULTS_ADDRESS": addresses["results"],
            "TASKTIDE_ADDRESS": addresses["scheduler"],
        }

        def start(name: str) -> subprocess.Popen[str]:
            proc = spawn(name, env={**common, "TASKTIDE_LISTEN": addresses[name]}, cwd=ROOT)
            wait_serving(addresses[name], proc)
            return proc

        services = {name: start(name) for name in SERVICES}
        worker = subprocess.Popen(
            [node, "examples/worker.js"],
            cwd=NODE_DIR,
            env={**_without_tasktide(os.environ), **common, "TASKTIDE_QUEUES": queue_name},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            with Client(settings=ClientSettings.from_env(common)) as client:
                assert client.submit("node.add", [2, 3], queue=queue_name).get(timeout=30) == 5
                running = client.submit("node.sleep", [3.0], queue=queue_name)
                assert _wait_started(client, running.id, 30), "node.sleep did not start"

                registry = services.pop("registry")
                registry.kill()  # gone without a word, as a crashed replica
                registry.wait(10)
                services["registry"] = start("registry")

                assert running.get(timeout=30) == "slept 3 on attempt 0"
                after = client.submit("node.add", [40, 2], queue=queue_name)
                assert after.get(timeout=30) == 42
            worker.send_signal(signal.SIGTERM)
            out, err = worker.communicate(timeout=30)
            assert worker.returncode == 0, out + err
            assert "reconnecting" in err
            assert "stopped after 3 tasks" in out, "node.sleep ran once: it was not delivered again"
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            stop(list(services.values()))


def _without_tasktide(env: os._Environ[str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("TASKTIDE_")}
