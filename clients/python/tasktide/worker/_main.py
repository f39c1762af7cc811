"""Running a worker as a process's main task: until SIGTERM or SIGINT, then a drain."""

from __future__ import annotations

import asyncio
import logging
import signal

from tasktide._app import App
from tasktide._hooks import Hooks
from tasktide._settings import ClientSettings
from tasktide.worker._config import WorkerConfig
from tasktide.worker._runtime import Worker

log = logging.getLogger("tasktide.worker")


def run_worker(
    app: App, config: WorkerConfig, settings: ClientSettings | None = None, hooks: Hooks | None = None
) -> int:
    """Run a worker until SIGTERM/SIGINT, then drain. Returns the process exit code."""
    settings = settings or app.settings

    async def main() -> None:
        worker = Worker(app, config, settings, hooks)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.request_stop)
        log.info("worker %s consuming %s", config.worker_id, ",".join(config.queues))
        await worker.run()

    try:
        import uvloop  # optional: a faster event loop where it is installed
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
    return 0
