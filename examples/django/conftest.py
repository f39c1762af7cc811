"""Fixtures for the example shop's tests: the tasktide platform (real Redis and gRPC services, from
tasktide_services.testing), Django set up on a SQLite file, and a real worker process started with
`manage.py tasktide_worker`, which shares that file and writes sent mail to a folder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tasktide_services.testing"]

HERE = Path(__file__).resolve().parent
WORKER_QUEUES = "shop-emails,shop-reports,shop-warehouse"

if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


@dataclass
class Shop:
    address: str
    base: Path
    env: dict[str, str]

    @property
    def mail_dir(self) -> Path:
        return Path(self.env["SHOP_MAIL_DIR"])

    def mail(self) -> list[str]:
        return [p.read_text() for p in sorted(self.mail_dir.glob("*.log"))] if self.mail_dir.exists() else []


@pytest.fixture(scope="session")
def shop(platform: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """Django set up for the shop, with its database migrated."""
    import django
    from django.conf import settings
    from django.core.management import call_command

    if settings.configured:
        pytest.fail("Django was set up before the shop fixture; the shop's tests need a process of their own")
    base = tmp_path_factory.mktemp("shop")
    env = {
        "DJANGO_SETTINGS_MODULE": "shopsite.settings",
        "SHOP_DATABASE": str(base / "shop.sqlite3"),
        "SHOP_MAIL_DIR": str(base / "mail"),
        "TASKTIDE_ADDRESS": platform.address,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # read by shopsite.settings and by TASKTIDE's defaults, at set-up
    try:
        django.setup()
        call_command("migrate", verbosity=0)
        yield Shop(platform.address, base, env)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def shop_worker(shop: Shop) -> Iterator[subprocess.Popen[str]]:
    """`manage.py tasktide_worker` in a process of its own, consuming the shop's queues."""
    log_path = shop.base / "worker.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "tasktide_worker", "--queues", WORKER_QUEUES, "--concurrency", "2"],
            cwd=HERE,
            env={**os.environ, **shop.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    proc.log_path = log_path  # type: ignore[attr-defined]
    yield proc
    proc.terminate()
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert code == 0, f"worker exited with {code}:\n{log_path.read_text()}"
