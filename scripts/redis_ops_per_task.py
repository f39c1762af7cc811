"""Count the Redis commands the platform issues per task on the hot path.

Starts a real Redis, the services and one worker in this process, runs N tasks (submitted in
batches, results awaited), and prints Redis's own per-command counts divided by N.
Usage: python scripts/redis_ops_per_task.py [N]
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace

import redis

import tasktide
from tasktide_services.common.redis_server import start_redis
from tasktide_services.common.settings import ServerSettings
from tasktide_services.testing import PlatformThread, run_worker_thread

app = tasktide.App("ops")


@app.task
def noop(i: int) -> int:
    return i


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(tmp, appendonly=False)
        try:
            settings = replace(ServerSettings(), address="127.0.0.1:0", redis_url=server.url)
            platform = PlatformThread(settings).start()
            r = redis.Redis.from_url(server.url)
            client = tasktide.Client(platform.address)
            with run_worker_thread(app, platform.address, queues=("default",), concurrency=8):
                client.submit(noop.name, [0]).get(timeout=10)  # warm up: scripts loaded, session open
                r.config_resetstat()
                handles = []
                for start in range(0, n, 500):
                    handles += client.submit_many([noop.spec([i]) for i in range(start, min(n, start + 500))])
                for _event in client.watch([h.id for h in handles]):
                    pass
                stats = r.info("commandstats")
            client.close()
            platform.stop()
        finally:
            server.stop()
    per_task = {k.removeprefix("cmdstat_"): round(v["calls"] / n, 3) for k, v in stats.items()}
    per_task = dict(sorted(per_task.items(), key=lambda kv: -kv[1]))
    print(json.dumps({"tasks": n, "commands_per_task": per_task, "total_per_task": round(sum(per_task.values()), 2)}))


if __name__ == "__main__":
    main()
