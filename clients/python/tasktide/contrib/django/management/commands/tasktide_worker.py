"""`python manage.py tasktide_worker --queues default,emails --concurrency 8`: a tasktide worker with
Django set up, running the project's Django tasks and the native tasks of TASKTIDE["APPS"]."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tasktide.contrib.django.conf import get_conf
from tasktide.contrib.django.runner import build_worker_app
from tasktide.worker import WorkerConfig, run_worker


class Command(BaseCommand):
    help = "Run a tasktide worker for this project's tasks. SIGTERM drains: running tasks finish."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queues", help="comma-separated queue names (default: TASKTIDE['WORKER']['QUEUES'])")
        parser.add_argument("--concurrency", type=int, help="tasks run at once (default 4)")
        parser.add_argument("--pool", choices=("threads", "asyncio"), help="threads (default) or asyncio")

    def handle(self, *args: Any, **options: Any) -> None:
        conf = get_conf()
        queues = tuple(q for q in (options["queues"] or "").split(",") if q) or conf.worker.queues
        config = WorkerConfig(
            queues=queues,
            concurrency=options["concurrency"] or conf.worker.concurrency,
            pool=options["pool"] or conf.worker.pool,
        )
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        app = build_worker_app(conf)
        self.stdout.write(
            f"tasktide worker {config.worker_id} on {conf.client.registry()}: "
            f"queues {','.join(queues)}, concurrency {config.concurrency}",
        )
        self.stdout.flush()
        run_worker(app, config, conf.client)
