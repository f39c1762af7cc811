"""`python manage.py tasktide_sync_schedules [--prune]`: put the periodic schedules declared in
TASKTIDE["SCHEDULES"] on the platform, at deploy time. Idempotent: running it again changes nothing,
an unchanged schedule keeps its next run and a schedule an operator paused stays paused."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasktide._exceptions import TasktideError
from tasktide.contrib.django import clients
from tasktide.contrib.django.conf import get_conf
from tasktide.contrib.django.schedules import describe, sync


class Command(BaseCommand):
    help = "Create or update the periodic schedules declared in TASKTIDE['SCHEDULES'] on the platform."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--prune",
            action="store_true",
            help="also delete the platform's schedules that SCHEDULES does not declare (whoever made them)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        conf = get_conf()
        try:
            synced, deleted = sync(clients.sync_client(conf.client), conf, prune=options["prune"])
        except TasktideError as exc:
            raise CommandError(f"schedules not synced: {exc}") from exc
        for item in synced:
            s = item.schedule
            paused = ", paused" if s.paused else ""
            self.stdout.write(f"{item.change:9} {s.name}: {s.task_name} {describe(s)}{paused}")
        for name in deleted:
            self.stdout.write(f"{'deleted':9} {name}")
        counts = {c: sum(1 for i in synced if i.change == c) for c in ("created", "updated", "unchanged")}
        self.stdout.write(
            f"{len(synced)} schedule(s) on {conf.client.scheduler()}: "
            + ", ".join(f"{n} {c}" for c, n in counts.items())
            + (f", {len(deleted)} deleted" if options["prune"] else "")
        )
