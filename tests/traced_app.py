"""Tasks for the tracing tests, importable by worker subprocesses as tests.traced_app:app."""

from __future__ import annotations

import logging
from pathlib import Path

import tasktide

app = tasktide.App("traced")
log = logging.getLogger("traced")


@app.task(max_retries=2, retry_backoff=0.05, retry_jitter=False)
def fails_once(marker: str) -> str:
    """Fails on its first attempt, logging each attempt."""
    attempt = tasktide.current_task().attempt
    log.warning("attempt %d of fails_once", attempt)
    p = Path(marker)
    if not p.exists():
        p.touch()
        raise ConnectionError("first attempt fails")
    return "second attempt ok"
