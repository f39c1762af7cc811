"""The Python worker runtime: one Session stream per process, running tasks of an App."""

from tasktide.worker._config import WorkerConfig
from tasktide.worker._context import TaskContext, current_task
from tasktide.worker._main import run_worker
from tasktide.worker._runtime import Worker

__all__ = ["TaskContext", "Worker", "WorkerConfig", "current_task", "run_worker"]
